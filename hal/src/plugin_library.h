// One dlopen()ed plugin: its function table, checked against the ABI rules, and the state of its
// one process-wide instance for plugins without the ABI 1.4 instance slots (PluginInstance makes
// the per-runtime instances of those that have them). Every way a plugin can be unusable (missing
// file or symbol, other major version, NULL required slot, failing init, no devices) becomes a
// skip reason, never a crash.
#ifndef KESTREL_HAL_SRC_PLUGIN_LIBRARY_H_
#define KESTREL_HAL_SRC_PLUGIN_LIBRARY_H_

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/include/kestrel/plugin_api.h"

namespace kestrel::hal {

using PluginOptions = std::vector<std::pair<std::string, std::string>>;

class PluginLibrary {
 public:
  // Loads `path`, resolves the entry symbol (called with the process-wide host table) and
  // validates the table. On failure the status message is the skip reason (and names the plugin
  // file). A library already loaded in this process (same file) is shared; shutdown runs once,
  // when its last user is gone, if init ran or an instance was made.
  static absl::StatusOr<std::shared_ptr<PluginLibrary>> Load(const std::string& path);
  ~PluginLibrary();
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  // The first plugin ABI minor with instance slots and caps.accuracy_tier.
  static constexpr uint16_t kInstancesMinor = 4;

  const kestrel_plugin_api_t& api() const { return *api_; }
  const std::string& path() const { return path_; }
  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  uint32_t device_count() const { return device_count_; }
  // Why the plugin has no devices ("" when it has some).
  const std::string& no_device_reason() const { return no_device_reason_; }

  // True if the plugin's table says minor >= 4 and has all five ABI 1.4 instance slots: the host
  // then makes one instance per user (PluginInstance) and never calls init / device_count /
  // device_get_caps / device_open. A table of an older minor is never read past its own slots.
  bool has_instances() const;
  // Plugins without instances: the first call runs init(options) and device_count; later calls
  // return at once (the options of the first user win: the plugin's state is process-wide). A
  // failed init is reported and retried by the next call. Thread-safe.
  absl::Status InitShared(const PluginOptions& options);
  // Records that an instance was created (shutdown must then run at the end). Thread-safe.
  void NoteInstanceCreated();
  // True if the table the plugin returned contains `member` and it is set (optional slots).
  template <typename Fn>
  bool Has(Fn kestrel_plugin_api_t::*member, size_t offset) const {
    return api_->struct_size >= offset + sizeof(Fn) && (api_->*member) != nullptr;
  }

 private:
  PluginLibrary() = default;
  static absl::StatusOr<std::shared_ptr<PluginLibrary>> LoadNew(const std::string& path);
  void* handle_ = nullptr;
  const kestrel_plugin_api_t* api_ = nullptr;
  std::mutex init_mu_;
  bool initialized_ = false;  // init ran (the 1.1 path)
  bool instances_used_ = false;
  std::string path_, name_, version_, no_device_reason_;
  uint32_t device_count_ = 0;
};

// Presence check for an optional slot: KESTREL_HAL_HAS_SLOT(lib, stream_create).
#define KESTREL_HAL_HAS_SLOT(lib, slot) \
  ((lib).Has(&kestrel_plugin_api_t::slot, offsetof(kestrel_plugin_api_t, slot)))

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_PLUGIN_LIBRARY_H_
