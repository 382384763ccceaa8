#include "hal/src/plugin_library.h"

#include <dlfcn.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <climits>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hal/src/host_api.h"

namespace kestrel::hal {
namespace {

// The slots a plugin must provide (ABI v1). Checked by offset so a short table is caught too.
struct RequiredSlot {
  const char* name;
  size_t offset;
};
#define KESTREL_REQUIRED(slot) RequiredSlot{#slot, offsetof(kestrel_plugin_api_t, slot)}
constexpr RequiredSlot kRequiredSlots[] = {
    KESTREL_REQUIRED(init),          KESTREL_REQUIRED(device_count),
    KESTREL_REQUIRED(device_get_caps), KESTREL_REQUIRED(device_open),
    KESTREL_REQUIRED(device_close),  KESTREL_REQUIRED(buffer_alloc),
    KESTREL_REQUIRED(buffer_free),   KESTREL_REQUIRED(buffer_write),
    KESTREL_REQUIRED(buffer_read),   KESTREL_REQUIRED(buffer_copy),
    KESTREL_REQUIRED(weight_prepare), KESTREL_REQUIRED(weight_release),
    KESTREL_REQUIRED(op_query),      KESTREL_REQUIRED(op_execute),
};
#undef KESTREL_REQUIRED

}  // namespace

namespace {

// Libraries loaded in this process, by canonical path. Entries expire with their last user.
struct LoadedLibraries {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<PluginLibrary>> by_path;
};
LoadedLibraries& Loaded() {
  static LoadedLibraries* loaded = new LoadedLibraries();
  return *loaded;
}

std::string CanonicalPath(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

}  // namespace

absl::StatusOr<std::shared_ptr<PluginLibrary>> PluginLibrary::Load(const std::string& path) {
  const std::string key = CanonicalPath(path);
  LoadedLibraries& loaded = Loaded();
  // Held across the whole load so two runtimes created at once cannot both load the plugin.
  std::lock_guard<std::mutex> lock(loaded.mu);
  if (auto it = loaded.by_path.find(key); it != loaded.by_path.end()) {
    if (std::shared_ptr<PluginLibrary> existing = it->second.lock()) return existing;
  }
  absl::StatusOr<std::shared_ptr<PluginLibrary>> lib = LoadNew(path);
  if (lib.ok()) loaded.by_path[key] = *lib;
  return lib;
}

absl::StatusOr<std::shared_ptr<PluginLibrary>> PluginLibrary::LoadNew(const std::string& path) {
  const kestrel_host_api_t* host = ProcessHostApi();
  std::shared_ptr<PluginLibrary> lib(new PluginLibrary());
  lib->path_ = path;
  // RTLD_LOCAL keeps each plugin's symbols to itself, so two plugins can use different versions
  // of the same dependency.
  lib->handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib->handle_ == nullptr) {
    const char* err = dlerror();
    return absl::NotFoundError(absl::StrCat("cannot load plugin '", path, "': ", err ? err : "dlopen failed"));
  }
  dlerror();
  void* sym = dlsym(lib->handle_, KESTREL_PLUGIN_ENTRY_SYMBOL);
  if (sym == nullptr) {
    return absl::NotFoundError(absl::StrCat("plugin '", path, "' does not export ",
                                            KESTREL_PLUGIN_ENTRY_SYMBOL));
  }
  auto get_api = reinterpret_cast<kestrel_plugin_get_api_fn>(sym);
  const kestrel_plugin_api_t* api = nullptr;
  absl::Status st = TakePluginStatus(
      get_api(host, KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR, &api),
      absl::StrCat("plugin '", path, "': ", KESTREL_PLUGIN_ENTRY_SYMBOL));
  if (!st.ok()) return st;
  if (api == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin '", path, "': ", KESTREL_PLUGIN_ENTRY_SYMBOL, " returned no function table"));
  }
  // The first 8 bytes (size + versions) are readable in every version of the table.
  if (api->struct_size < 8) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "plugin '%s': function table struct_size %u is too small", path, api->struct_size));
  }
  if (api->major != KESTREL_PLUGIN_API_MAJOR) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "plugin '%s' implements plugin ABI %u.%u but this host implements %u.%u (the major "
        "versions must match)",
        path, api->major, api->minor, KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR));
  }
  lib->api_ = api;
  for (const RequiredSlot& slot : kRequiredSlots) {
    const bool inside = api->struct_size >= slot.offset + sizeof(void*);
    void* value = nullptr;
    if (inside) std::memcpy(&value, reinterpret_cast<const char*>(api) + slot.offset, sizeof(void*));
    if (!inside || value == nullptr) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "plugin '%s': required slot '%s' is %s", path, slot.name,
          inside ? "NULL" : "missing (function table too short)"));
    }
  }
  if (api->struct_size < offsetof(kestrel_plugin_api_t, version) + sizeof(void*) ||
      api->name == nullptr || api->name[0] == '\0') {
    return absl::FailedPreconditionError(absl::StrCat("plugin '", path, "' has no name"));
  }
  lib->name_ = api->name;
  lib->version_ = api->version ? api->version : "";
  return lib;
}

bool PluginLibrary::has_instances() const {
  return api().minor >= kInstancesMinor && KESTREL_HAL_HAS_SLOT(*this, instance_create) &&
         KESTREL_HAL_HAS_SLOT(*this, instance_destroy) &&
         KESTREL_HAL_HAS_SLOT(*this, instance_device_count) &&
         KESTREL_HAL_HAS_SLOT(*this, instance_device_get_caps) &&
         KESTREL_HAL_HAS_SLOT(*this, instance_device_open);
}

absl::Status PluginLibrary::InitShared(const PluginOptions& options) {
  std::lock_guard<std::mutex> lock(init_mu_);
  if (initialized_) return absl::OkStatus();
  std::vector<kestrel_plugin_option_t> opts;
  opts.reserve(options.size());
  for (const auto& [k, v] : options) opts.push_back({k.c_str(), v.c_str()});
  absl::Status st = TakePluginStatus(api_->init(opts.data(), opts.size()),
                                     absl::StrCat("plugin '", name_, "' (", path_, "): init failed"));
  if (!st.ok()) return st;
  initialized_ = true;
  char reason[512] = {0};
  device_count_ = api_->device_count(reason, sizeof(reason));
  reason[sizeof(reason) - 1] = '\0';
  if (device_count_ == 0) no_device_reason_ = reason[0] ? reason : "the plugin reports no devices";
  return absl::OkStatus();
}

void PluginLibrary::NoteInstanceCreated() {
  std::lock_guard<std::mutex> lock(init_mu_);
  instances_used_ = true;
}

PluginLibrary::~PluginLibrary() {
  if ((initialized_ || instances_used_) && KESTREL_HAL_HAS_SLOT(*this, shutdown)) api_->shutdown();
  // Plugins are not dlclose()d: a plugin's threads or atexit handlers (CUDA, OpenCL ICDs) may
  // still reference its code, and unloading buys nothing for a process-lifetime registry.
}

}  // namespace kestrel::hal
