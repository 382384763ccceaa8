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

// Plugin log lines go to every registered sink (each runtime registers its own). Returns a handle
// for RemoveLogSink. Thread-safe.
int AddLogSink(LogSink sink);
void RemoveLogSink(int handle);

// Takes ownership of a plugin-returned status (NULL = OK) and converts it. `context` is prefixed
// to the message so errors say which plugin and slot failed.
absl::Status TakePluginStatus(kestrel_plugin_status_t* status, const std::string& context);

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_HOST_API_H_
