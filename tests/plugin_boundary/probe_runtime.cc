// Must not compile: a plugin cannot include the runtime.
#include "runtime/session/session.h"
