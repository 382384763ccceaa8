/* FROZEN TEST COPY (tests/abi/old_headers): an older, smaller edition of the public headers,
 * version 0.0 (preview): the 0.1 headers with the last field(s) of every options and info
 * struct removed (and no MoE statistics). Used only by tests/abi/old_client_test.c to prove
 * that a client compiled against older headers runs against today's libkestrel. Never edit
 * it to follow newer headers. */
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
#include "kestrel/session.h"

#endif /* KESTREL_KESTREL_H_ */
