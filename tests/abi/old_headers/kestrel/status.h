/* FROZEN TEST COPY (tests/abi/old_headers): an older, smaller edition of the public headers,
 * version 0.0 (preview): the 0.1 headers with the last field(s) of every options and info
 * struct removed (and no MoE statistics). Used only by tests/abi/old_client_test.c to prove
 * that a client compiled against older headers runs against today's libkestrel. Never edit
 * it to follow newer headers. */
/* Status objects: how every fallible Kestrel call reports failure.
 *
 * A fallible call returns kestrel_status_t*. NULL means success. A non-NULL status is owned by the
 * caller, who must free it with kestrel_status_free. A status is immutable and may be read from any
 * thread. */
#ifndef KESTREL_STATUS_H_
#define KESTREL_STATUS_H_

#include "kestrel/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kestrel_status kestrel_status_t;

/* Canonical codes (the same numbering as absl::StatusCode / gRPC). Values are never reused. */
typedef enum kestrel_status_code {
  KESTREL_STATUS_OK = 0,
  KESTREL_STATUS_CANCELLED = 1,
  KESTREL_STATUS_UNKNOWN = 2,
  KESTREL_STATUS_INVALID_ARGUMENT = 3,
  KESTREL_STATUS_DEADLINE_EXCEEDED = 4,
  KESTREL_STATUS_NOT_FOUND = 5,
  KESTREL_STATUS_ALREADY_EXISTS = 6,
  KESTREL_STATUS_PERMISSION_DENIED = 7,
  KESTREL_STATUS_RESOURCE_EXHAUSTED = 8,
  KESTREL_STATUS_FAILED_PRECONDITION = 9,
  KESTREL_STATUS_ABORTED = 10,
  KESTREL_STATUS_OUT_OF_RANGE = 11,
  KESTREL_STATUS_UNIMPLEMENTED = 12,
  KESTREL_STATUS_INTERNAL = 13,
  KESTREL_STATUS_UNAVAILABLE = 14,
  KESTREL_STATUS_DATA_LOSS = 15
} kestrel_status_code_t;

/* The status's code; KESTREL_STATUS_OK for NULL. \since 0.1 */
KESTREL_API kestrel_status_code_t kestrel_status_code(const kestrel_status_t* status);

/* The status's message, NUL-terminated, valid until the status is freed; "" for NULL. The message
 * names the bad input (the argument, field, file offset or value that caused the failure). \since 0.1 */
KESTREL_API const char* kestrel_status_message(const kestrel_status_t* status);

/* A static name for a code, e.g. "INVALID_ARGUMENT"; "UNKNOWN_CODE" for values outside the enum.
 * \since 0.1 */
KESTREL_API const char* kestrel_status_code_name(kestrel_status_code_t code);

/* Frees a status. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_status_free(kestrel_status_t* status);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_STATUS_H_ */
