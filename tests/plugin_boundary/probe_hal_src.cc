// Must not compile: a plugin cannot include the host side of the HAL.
#include "hal/src/device.h"
