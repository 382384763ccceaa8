/* Kestrel library version. */
#ifndef KESTREL_VERSION_H_
#define KESTREL_VERSION_H_

#include <stdint.h>

#include "kestrel/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KESTREL_VERSION_MAJOR 0
#define KESTREL_VERSION_MINOR 2
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
