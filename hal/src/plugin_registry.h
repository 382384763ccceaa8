// Discovers plugins on a search path and loads each (or records why not) the first time it is
// needed, then opens its devices. Loading is lazy so that a program asking for one device pays
// for that plugin alone (a CUDA or OpenCL runtime costs hundreds of MB and a quarter second):
// FindDevice loads the plugins whose file name (libkestrel_plugin_<name>.so) matches the device's
// plugin name, DefaultDevice tries cpu then ref, ReferenceDevice ref; any lookup that finds
// nothing that way, and plugins()/devices() (listing), load every plugin found.
// Thread-safety: every member may be called from any thread; plugins() and devices() return
// vectors that no longer change once returned (everything is loaded by then). Loading holds the
// registry's lock, and plugins log while they load: the log sink must not call back into the
// registry (runtime.h tells users of the log callback not to call back into the library).
#ifndef KESTREL_HAL_SRC_PLUGIN_REGISTRY_H_
#define KESTREL_HAL_SRC_PLUGIN_REGISTRY_H_

#include <memory>
#include <mutex>
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
  // plugin files. Finds the files and loads none of them (a plugin loads on first use). Never
  // fails because of a plugin; an empty search path is fine too (no plugins). `sink` receives host
  // and plugin log lines. `options` go to every plugin when it loads: to instance_create of this
  // registry's own instance for an ABI 1.4 plugin, to init for an older one (whose process-wide
  // state keeps the options of the first registry).
  static std::unique_ptr<PluginRegistry> Create(const std::string& search_path, LogSink sink,
                                                const PluginOptions& options = {});
  ~PluginRegistry();

  // Every plugin found, in search-path order, each loaded or skipped with its reason (loads
  // the ones not tried yet).
  const std::vector<PluginRecord>& plugins() const;
  // The devices of every loaded plugin, in plugin order (loads the plugins not tried yet).
  const std::vector<std::unique_ptr<Device>>& devices() const;
  // Plugin files found on the search path, without loading any.
  size_t plugin_file_count() const { return plugins_.size(); }
  // Plugins loaded or tried so far (for logs and tests).
  size_t plugins_tried() const;

  // Device by exact name ("cuda:1"), or the first device of a plugin by plugin name ("cuda").
  // NOT_FOUND lists the available devices.
  absl::StatusOr<Device*> FindDevice(absl::string_view name) const;
  // The default device: first device of the first plugin in the order cpu, ref, then any.
  absl::StatusOr<Device*> DefaultDevice() const;
  // The reference device used for op-by-op fallback (plugin "ref"); null if not loaded.
  Device* ReferenceDevice() const;

 private:
  PluginRegistry() = default;
  // Loads plugin `index` of plugins_ unless it was tried already. Needs mu_.
  void LoadOne(size_t index) const;
  // Loads every plugin whose name guessed from its file is `name` ("" = all). Needs mu_.
  void LoadNamed(absl::string_view name) const;
  Device* FindLoaded(absl::string_view name) const;
  Device* FirstOfPlugin(absl::string_view plugin) const;

  LogSink sink_;
  int sink_handle_ = 0;
  PluginOptions options_;
  mutable std::mutex mu_;
  // One record per plugin file, tried or not; `file_names_[i]` is the name its file suggests.
  mutable std::vector<PluginRecord> plugins_;
  std::vector<std::string> file_names_;
  mutable std::vector<bool> tried_;
  mutable size_t n_tried_ = 0;
  // Kept in plugin order: device_plugin_[i] is the index into plugins_ of devices_[i]'s plugin.
  mutable std::vector<std::unique_ptr<Device>> devices_;
  mutable std::vector<size_t> device_plugin_;
};

// The plugin folder next to the shared library or executable containing this code
// (<dir of libkestrel.so>/kestrel/plugins), "" if it cannot be determined.
std::string DefaultPluginDirectory();

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_PLUGIN_REGISTRY_H_
