// One user's (one registry's, i.e. one runtime's) use of a loaded plugin library. For a plugin
// with the ABI 1.4 instance slots it is an instance of its own: its own host table (so plugin log
// lines reach only this user's sink), its own options and its own devices. For an older plugin it
// stands for the library's one process-wide instance (init once, with the options of the first
// user; log lines go to every registered sink).
//
// Devices keep their PluginInstance alive; the instance is destroyed (instance_destroy) when the
// last device of it is closed and the registry lets go of it. Thread-safe after Create.
#ifndef KESTREL_HAL_SRC_PLUGIN_INSTANCE_H_
#define KESTREL_HAL_SRC_PLUGIN_INSTANCE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hal/include/kestrel/plugin_api.h"
#include "hal/src/host_api.h"
#include "hal/src/plugin_library.h"

namespace kestrel::hal {

class PluginInstance {
 public:
  // Makes the instance: instance_create with a host table of its own that logs to `sink` (1.4
  // plugins), or the library's shared init (older plugins). Then counts the devices. The error
  // message is the skip reason and names the plugin.
  static absl::StatusOr<std::shared_ptr<PluginInstance>> Create(
      std::shared_ptr<PluginLibrary> library, LogSink sink, const PluginOptions& options);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  const PluginLibrary& library() const { return *library_; }
  // True when this is an ABI 1.4 instance of its own (not the shared 1.1 one).
  bool own_instance() const { return instance_ != nullptr; }
  uint32_t device_count() const { return device_count_; }
  // Why there is no device ("" when there are some).
  const std::string& no_device_reason() const { return no_device_reason_; }

  // device_get_caps / device_open of this instance. `context` prefixes error messages.
  absl::Status GetCaps(uint32_t index, kestrel_device_caps_t* caps,
                       const std::string& context) const;
  absl::Status Open(uint32_t index, kestrel_plugin_device_t** out,
                    const std::string& context) const;

 private:
  PluginInstance() = default;
  std::shared_ptr<PluginLibrary> library_;
  std::unique_ptr<InstanceHost> host_;             // outlives instance_ (destroyed after it)
  kestrel_plugin_instance_t* instance_ = nullptr;  // NULL: the shared 1.1 instance
  uint32_t device_count_ = 0;
  std::string no_device_reason_;
};

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_PLUGIN_INSTANCE_H_
