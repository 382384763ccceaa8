// Status: the error type of the reference plugin's internals.
//
// The plugins stay independent of the runtime (and of Abseil), so they carry this small
// code + message pair and convert it to a kestrel_plugin_status_t exactly once, at the ABI
// boundary (plugin_glue.h HostRef::ToStatus). Codes are the plugin ABI's canonical codes.
#ifndef KESTREL_PLUGIN_SDK_STATUS_H_
#define KESTREL_PLUGIN_SDK_STATUS_H_

#include <sstream>
#include <string>
#include <utility>

#include "kestrel/plugin_api.h"

namespace kestrel::plugin_sdk {

class Status {
 public:
  Status() = default;  // OK
  Status(kestrel_plugin_status_code_t code, std::string message)
      : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == KESTREL_PLUGIN_OK; }
  kestrel_plugin_status_code_t code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  kestrel_plugin_status_code_t code_ = KESTREL_PLUGIN_OK;
  std::string message_;
};

// Concatenates anything streamable; used to build messages that name the bad field and value.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename... Args>
Status InvalidArgument(const Args&... args) {
  return Status(KESTREL_PLUGIN_INVALID_ARGUMENT, StrCat(args...));
}
template <typename... Args>
Status OutOfRange(const Args&... args) {
  return Status(KESTREL_PLUGIN_OUT_OF_RANGE, StrCat(args...));
}
template <typename... Args>
Status Unimplemented(const Args&... args) {
  return Status(KESTREL_PLUGIN_UNIMPLEMENTED, StrCat(args...));
}
template <typename... Args>
Status ResourceExhausted(const Args&... args) {
  return Status(KESTREL_PLUGIN_RESOURCE_EXHAUSTED, StrCat(args...));
}
template <typename... Args>
Status FailedPrecondition(const Args&... args) {
  return Status(KESTREL_PLUGIN_FAILED_PRECONDITION, StrCat(args...));
}
template <typename... Args>
Status Internal(const Args&... args) {
  return Status(KESTREL_PLUGIN_INTERNAL, StrCat(args...));
}

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define KESTREL_SDK_RETURN_IF_ERROR(expr)                     \
  do {                                                        \
    ::kestrel::plugin_sdk::Status kestrel_sdk_status_ = (expr); \
    if (!kestrel_sdk_status_.ok()) return kestrel_sdk_status_;  \
  } while (0)

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_STATUS_H_
