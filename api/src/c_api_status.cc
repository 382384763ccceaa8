// Status objects and version queries.
#include "api/src/c_api_internal.h"

namespace kestrel::api {

kestrel_status_t* ToC(const absl::Status& status) {
  if (status.ok()) return nullptr;
  auto* s = new (std::nothrow) kestrel_status;
  if (s == nullptr) return nullptr;  // cannot allocate even the error: nothing else to do
  s->code = static_cast<kestrel_status_code_t>(status.code());
  try {
    s->message = std::string(status.message());
  } catch (...) {
  }
  return s;
}

}  // namespace kestrel::api

extern "C" {

KESTREL_API kestrel_status_code_t kestrel_status_code(const kestrel_status_t* status) {
  return status == nullptr ? KESTREL_STATUS_OK : status->code;
}

KESTREL_API const char* kestrel_status_message(const kestrel_status_t* status) {
  return status == nullptr ? "" : status->message.c_str();
}

KESTREL_API const char* kestrel_status_code_name(kestrel_status_code_t code) {
  switch (code) {
    case KESTREL_STATUS_OK: return "OK";
    case KESTREL_STATUS_CANCELLED: return "CANCELLED";
    case KESTREL_STATUS_UNKNOWN: return "UNKNOWN";
    case KESTREL_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KESTREL_STATUS_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case KESTREL_STATUS_NOT_FOUND: return "NOT_FOUND";
    case KESTREL_STATUS_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case KESTREL_STATUS_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case KESTREL_STATUS_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case KESTREL_STATUS_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case KESTREL_STATUS_ABORTED: return "ABORTED";
    case KESTREL_STATUS_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case KESTREL_STATUS_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case KESTREL_STATUS_INTERNAL: return "INTERNAL";
    case KESTREL_STATUS_UNAVAILABLE: return "UNAVAILABLE";
    case KESTREL_STATUS_DATA_LOSS: return "DATA_LOSS";
  }
  return "UNKNOWN_CODE";
}

KESTREL_API void kestrel_status_free(kestrel_status_t* status) { delete status; }

KESTREL_API const char* kestrel_version(void) {
#define KESTREL_STR2(x) #x
#define KESTREL_STR(x) KESTREL_STR2(x)
  return KESTREL_STR(KESTREL_VERSION_MAJOR) "." KESTREL_STR(KESTREL_VERSION_MINOR) "." KESTREL_STR(
      KESTREL_VERSION_PATCH);
}

KESTREL_API uint32_t kestrel_version_number(void) { return KESTREL_VERSION_NUMBER; }

}  // extern "C"
