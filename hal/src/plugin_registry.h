// Discovers plugins on a search path, loads each (or records why not) and opens their devices.
// Thread-safety: immutable after Create; safe to read from any thread.
#ifndef KESTREL_HAL_SRC_PLUGIN_REGISTRY_H_
#define KESTREL_HAL_SRC_PLUGIN_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hal/src/device.h"
#include "hal/src/host_api.h"
#include "hal/src/plugin_library.h"

namespace kestrel::hal {

struct PluginRecord {
  std::string path;
  std::string name;     // plugin name, or the file name when it could not be asked
  std::string version;
  bool loaded = false;
  std::string skip_reason;
  uint16_t api_major = 0, api_minor = 0;
  uint32_t device_count = 0;
  bool own_instance = false;  // an ABI 1.4 instance of this registry's own (else the shared one)
};

class PluginRegistry {
 public:
  // `search_path`: ':'-separated folders (every libkestrel_plugin_*.so inside, sorted) and/or
  // plugin files. Never fails because of a plugin; only an empty search path element list is
  // fine too (no plugins). `sink` receives host and plugin log lines. `options` go to every
  // plugin: to instance_create of this registry's own instance for an ABI 1.4 plugin, to init for
  // an older one (whose process-wide state keeps the options of the first registry).
  static std::unique_ptr<PluginRegistry> Create(const std::string& search_path, LogSink sink,
                                                const PluginOptions& options = {});
  ~PluginRegistry();

  const std::vector<PluginRecord>& plugins() const { return plugins_; }
  const std::vector<std::unique_ptr<Device>>& devices() const { return devices_; }

  // Device by exact name ("cuda:1"), or the first device of a plugin by plugin name ("cuda").
  // NOT_FOUND lists the available devices.
  absl::StatusOr<Device*> FindDevice(absl::string_view name) const;
  // The default device: first device of the first plugin in the order cpu, ref, then any.
  absl::StatusOr<Device*> DefaultDevice() const;
  // The reference device used for op-by-op fallback (plugin "ref"); null if not loaded.
  Device* ReferenceDevice() const;

 private:
  PluginRegistry() = default;
  void LoadOne(const std::string& path, const PluginOptions& options);

  LogSink sink_;
  int sink_handle_ = 0;
  std::vector<PluginRecord> plugins_;
  std::vector<std::unique_ptr<Device>> devices_;
};

// The plugin folder next to the shared library or executable containing this code
// (<dir of libkestrel.so>/kestrel/plugins), "" if it cannot be determined.
std::string DefaultPluginDirectory();

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_PLUGIN_REGISTRY_H_
