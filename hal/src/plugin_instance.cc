#include "hal/src/plugin_instance.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kestrel::hal {

absl::StatusOr<std::shared_ptr<PluginInstance>> PluginInstance::Create(
    std::shared_ptr<PluginLibrary> library, LogSink sink, const PluginOptions& options) {
  std::shared_ptr<PluginInstance> inst(new PluginInstance());
  inst->library_ = std::move(library);
  const PluginLibrary& lib = *inst->library_;
  const kestrel_plugin_api_t& api = lib.api();
  if (!lib.has_instances()) {
    absl::Status st = inst->library_->InitShared(options);
    if (!st.ok()) return st;
    inst->device_count_ = lib.device_count();
    inst->no_device_reason_ = lib.no_device_reason();
    return inst;
  }
  inst->host_ = std::make_unique<InstanceHost>(std::move(sink));
  std::vector<kestrel_plugin_option_t> opts;
  opts.reserve(options.size());
  for (const auto& [k, v] : options) opts.push_back({k.c_str(), v.c_str()});
  absl::Status st = TakePluginStatus(
      api.instance_create(inst->host_->api(), opts.data(), opts.size(), &inst->instance_),
      absl::StrCat("plugin '", lib.name(), "' (", lib.path(), "): instance_create failed"));
  if (!st.ok()) return st;
  if (inst->instance_ == nullptr) {
    return absl::InternalError(absl::StrCat("plugin '", lib.name(), "' (", lib.path(),
                                            "): instance_create returned no instance"));
  }
  inst->library_->NoteInstanceCreated();
  char reason[512] = {0};
  inst->device_count_ = api.instance_device_count(inst->instance_, reason, sizeof(reason));
  reason[sizeof(reason) - 1] = '\0';
  if (inst->device_count_ == 0) {
    inst->no_device_reason_ = reason[0] ? reason : "the plugin reports no devices";
  }
  return inst;
}

PluginInstance::~PluginInstance() {
  if (instance_ != nullptr) library_->api().instance_destroy(instance_);
}

absl::Status PluginInstance::GetCaps(uint32_t index, kestrel_device_caps_t* caps,
                                     const std::string& context) const {
  const kestrel_plugin_api_t& api = library_->api();
  kestrel_plugin_status_t* s = instance_ != nullptr
                                   ? api.instance_device_get_caps(instance_, index, caps)
                                   : api.device_get_caps(index, caps);
  // accuracy_tier is a 1.4 field: an older plugin's table says nothing about it (REFERENCE).
  if (s == nullptr && api.minor < PluginLibrary::kInstancesMinor &&
      KESTREL_PLUGIN_HAS_SLOT(caps, kestrel_device_caps_t, accuracy_tier)) {
    caps->accuracy_tier = KESTREL_ACCURACY_REFERENCE;
  }
  return TakePluginStatus(s, context + ": device_get_caps");
}

absl::Status PluginInstance::Open(uint32_t index, kestrel_plugin_device_t** out,
                                  const std::string& context) const {
  const kestrel_plugin_api_t& api = library_->api();
  kestrel_plugin_status_t* s = instance_ != nullptr ? api.instance_device_open(instance_, index, out)
                                                    : api.device_open(index, out);
  return TakePluginStatus(s, context + ": device_open");
}

}  // namespace kestrel::hal
