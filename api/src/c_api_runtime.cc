// Runtime creation, plugin and device listing.
#include <cstdlib>

#include "api/src/c_api_internal.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

kestrel_device_kind_t KindOf(uint32_t k) {
  switch (k) {
    case KESTREL_DEVICE_KIND_GPU: return KESTREL_DEVICE_GPU;
    case KESTREL_DEVICE_KIND_NPU: return KESTREL_DEVICE_NPU;
    case KESTREL_DEVICE_KIND_ACCELERATOR: return KESTREL_DEVICE_ACCELERATOR;
    default: return KESTREL_DEVICE_CPU;
  }
}

}  // namespace

extern "C" {

KESTREL_API void kestrel_runtime_options_init_sized(kestrel_runtime_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_runtime_options_t& o) {
    o.log_level = KESTREL_LOG_WARNING;
  });
}

KESTREL_API kestrel_status_t* kestrel_runtime_create(const kestrel_runtime_options_t* options,
                                                     kestrel_runtime_t** out_runtime) {
  return Guard("kestrel_runtime_create", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_runtime_create";
    if (out_runtime == nullptr) return NullArgument(fn, "out_runtime");
    kestrel_runtime_options_t o;
    kestrel_runtime_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options,
                                           KESTREL_RUNTIME_OPTIONS_MIN_SIZE, &o);
        !s.ok()) {
      return s;
    }
    if (o.log_level < KESTREL_LOG_DEBUG || o.log_level > KESTREL_LOG_OFF) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: options->log_level = %d is not a kestrel_log_level_t", fn, static_cast<int>(o.log_level)));
    }
    auto state = std::make_shared<RuntimeState>();
    state->log = o.log_callback;
    state->log_user_data = o.log_user_data;
    state->log_level = o.log_level;
    std::string path;
    if (o.plugin_path != nullptr) {
      path = o.plugin_path;
    } else if (const char* env = std::getenv("KESTREL_PLUGIN_PATH"); env != nullptr && *env) {
      path = env;
    } else {
      path = kestrel::hal::DefaultPluginDirectory();
    }
    std::weak_ptr<RuntimeState> weak = state;
    RuntimeState* raw = state.get();
    state->registry = kestrel::hal::PluginRegistry::Create(
        path, [raw](kestrel_plugin_log_level_t level, const std::string& m) {
          raw->Log(static_cast<kestrel_log_level_t>(level), m);
        });
    // Plugins load when a device is asked for or listed (plugin_registry.h), not here.
    state->Log(KESTREL_LOG_INFO, absl::StrFormat("plugin path '%s': %u plugin file(s)", path,
                                                 state->registry->plugin_file_count()));
    *out_runtime = new kestrel_runtime{std::move(state)};
    return absl::OkStatus();
  });
}

KESTREL_API void kestrel_runtime_destroy(kestrel_runtime_t* runtime) { delete runtime; }

KESTREL_API size_t kestrel_runtime_plugin_count(const kestrel_runtime_t* runtime) {
  return runtime == nullptr ? 0 : runtime->state->registry->plugins().size();
}

KESTREL_API kestrel_status_t* kestrel_runtime_plugin_info(const kestrel_runtime_t* runtime,
                                                          size_t index,
                                                          kestrel_plugin_info_t* out_info) {
  return Guard("kestrel_runtime_plugin_info", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_runtime_plugin_info";
    if (runtime == nullptr) return NullArgument(fn, "runtime");
    const auto& plugins = runtime->state->registry->plugins();
    if (index >= plugins.size()) {
      return absl::OutOfRangeError(
          absl::StrFormat("%s: index %u, but there are %u plugins", fn, index, plugins.size()));
    }
    const kestrel::hal::PluginRecord& p = plugins[index];
    kestrel_plugin_info_t info{};
    info.struct_size = sizeof(info);
    info.name = p.name.c_str();
    info.path = p.path.c_str();
    info.version = p.version.c_str();
    info.loaded = p.loaded;
    info.skip_reason = p.skip_reason.c_str();
    info.api_major = p.api_major;
    info.api_minor = p.api_minor;
    info.device_count = p.device_count;
    return kestrel::api::WriteInfo(fn, "out_info", info, out_info,
                                   KESTREL_PLUGIN_INFO_MIN_SIZE);
  });
}

KESTREL_API size_t kestrel_runtime_device_count(const kestrel_runtime_t* runtime) {
  return runtime == nullptr ? 0 : runtime->state->registry->devices().size();
}

KESTREL_API kestrel_status_t* kestrel_runtime_device_info(const kestrel_runtime_t* runtime,
                                                          size_t index,
                                                          kestrel_device_info_t* out_info) {
  return Guard("kestrel_runtime_device_info", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_runtime_device_info";
    if (runtime == nullptr) return NullArgument(fn, "runtime");
    const auto& devices = runtime->state->registry->devices();
    if (index >= devices.size()) {
      return absl::OutOfRangeError(
          absl::StrFormat("%s: index %u, but there are %u devices", fn, index, devices.size()));
    }
    const kestrel::hal::Device& d = *devices[index];
    kestrel_device_info_t info{};
    info.struct_size = sizeof(info);
    info.name = d.name().c_str();
    info.plugin = d.plugin_name().c_str();
    info.description = d.caps().description;
    info.kind = KindOf(d.caps().kind);
    info.memory_bytes = d.caps().memory_bytes;
    info.host_visible = d.caps().host_visible != 0;
    info.async = d.caps().async != 0;
    info.dtype_mask = d.caps().dtype_mask;
    info.weight_dtype_mask = d.caps().weight_dtype_mask;
    return kestrel::api::WriteInfo(fn, "out_info", info, out_info,
                                   KESTREL_DEVICE_INFO_MIN_SIZE);
  });
}

}  // extern "C"
