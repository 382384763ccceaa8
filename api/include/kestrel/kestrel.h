/* Kestrel: embeddable LLM inference. The umbrella header of the stable C ABI.
 *
 * Typical use:
 *   kestrel_runtime_t* rt;  kestrel_runtime_create(NULL, &rt);
 *   kestrel_model_t* m;     kestrel_model_load(rt, path, strlen(path), NULL, &m);
 *   kestrel_session_t* s;   kestrel_session_create(m, NULL, &s);
 *   kestrel_session_generate(s, prompt, strlen(prompt), &gen_options, &stats);
 *   kestrel_session_destroy(s); kestrel_model_release(m); kestrel_runtime_destroy(rt);
 * Every fallible call returns kestrel_status_t* (NULL on success); see status.h. */
#ifndef KESTREL_KESTREL_H_
#define KESTREL_KESTREL_H_

#include "kestrel/version.h"
#include "kestrel/status.h"
#include "kestrel/runtime.h"
#include "kestrel/model.h"
#include "kestrel/speculative.h"
#include "kestrel/session.h"
#include "kestrel/engine.h"

#endif /* KESTREL_KESTREL_H_ */
