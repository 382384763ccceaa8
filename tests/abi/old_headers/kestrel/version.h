/* FROZEN TEST COPY (tests/abi/old_headers): an older, smaller edition of the public headers,
 * version 0.0 (preview): the 0.1 headers with the last field(s) of every options and info
 * struct removed (and no MoE statistics). Used only by tests/abi/old_client_test.c to prove
 * that a client compiled against older headers runs against today's libkestrel. Never edit
 * it to follow newer headers. */
/* Kestrel library version. */
#ifndef KESTREL_VERSION_H_
#define KESTREL_VERSION_H_

#include <stdint.h>

#include "kestrel/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KESTREL_VERSION_MAJOR 0
#define KESTREL_VERSION_MINOR 0
#define KESTREL_VERSION_PATCH 0
/* Encoded as major * 10000 + minor * 100 + patch, for compile-time comparisons. */
#define KESTREL_VERSION_NUMBER \
  (KESTREL_VERSION_MAJOR * 10000 + KESTREL_VERSION_MINOR * 100 + KESTREL_VERSION_PATCH)

/* The version of the library actually loaded, as "MAJOR.MINOR.PATCH" (static storage; never NULL).
 * Compare with the KESTREL_VERSION_* macros to detect a header/library mismatch.
 * Thread-safe. \since 0.1 */
KESTREL_API const char* kestrel_version(void);

/* The loaded library's version encoded like KESTREL_VERSION_NUMBER. Thread-safe. \since 0.1 */
KESTREL_API uint32_t kestrel_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_VERSION_H_ */
