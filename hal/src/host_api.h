// The host table handed to every plugin, and the conversion between plugin statuses and
// absl::Status. A plugin status is always created here, so the host can free and convert it.
#ifndef KESTREL_HAL_SRC_HOST_API_H_
#define KESTREL_HAL_SRC_HOST_API_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "hal/include/kestrel/plugin_api.h"

namespace kestrel::hal {

// Log sink shared by every plugin: level + message. Set by the runtime; may be empty.
using LogSink = std::function<void(kestrel_plugin_log_level_t, const std::string&)>;

// The process-wide host table. A plugin library is loaded and initialised once per process and
// shared by every registry (runtime) that uses it, so the table it was given must outlive all of
// them: it has static storage and is never destroyed.
const kestrel_host_api_t* ProcessHostApi();

// A host table of its own, for one plugin instance (plugin ABI 1.4 instance_create): its log lines
// go to `sink` only, so two runtimes never see each other's plugin logs. Statuses and memory work
// as in the process-wide table. Must outlive the instance it was given to. Thread-safe.
class InstanceHost {
 public:
  explicit InstanceHost(LogSink sink);
  InstanceHost(const InstanceHost&) = delete;
  InstanceHost& operator=(const InstanceHost&) = delete;
  const kestrel_host_api_t* api() const { return &api_; }

 private:
  static void Log(void* ctx, kestrel_plugin_log_level_t level, const char* message, size_t length);
  LogSink sink_;
  kestrel_host_api_t api_;
};

// Plugin log lines of plugins without instances (ABI 1.0/1.1) go to every registered sink (each runtime registers its own). Returns a handle
// for RemoveLogSink. Thread-safe.
int AddLogSink(LogSink sink);
void RemoveLogSink(int handle);

// Takes ownership of a plugin-returned status (NULL = OK) and converts it. `context` is prefixed
// to the message so errors say which plugin and slot failed.
absl::Status TakePluginStatus(kestrel_plugin_status_t* status, const std::string& context);

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_HOST_API_H_
