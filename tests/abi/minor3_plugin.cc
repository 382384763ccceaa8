// A plugin whose table says plugin ABI minor 3 but still holds the 1.4 instance slots (the SDK's
// host-memory table) and writes caps.accuracy_tier = INT8: what a plugin looks like whose table
// and minor disagree. A 1.4 host must take the minor at its word: no instance slot is called and
// the device's tier reads REFERENCE. The caps description counts the instance_create calls.
#include <cstdio>
#include <cstring>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/host_plugin.h"

namespace {

const kestrel::plugin_sdk::HostPluginConfig kConfig = {
    "minor3", "minor3", "test plugin: minor 3 with 1.4 slots", nullptr, "0.1.0-test"};

kestrel_plugin_api_t g_table;
const kestrel_plugin_api_t* g_inner = nullptr;
int g_instance_creates = 0;

kestrel_plugin_status_t* CountingInstanceCreate(const kestrel_host_api_t* host,
                                                const kestrel_plugin_option_t* options,
                                                size_t n_options,
                                                kestrel_plugin_instance_t** out) {
  ++g_instance_creates;
  return g_inner->instance_create(host, options, n_options, out);
}

void Describe(kestrel_device_caps_t* caps) {
  if (KESTREL_PLUGIN_HAS_SLOT(caps, kestrel_device_caps_t, accuracy_tier)) {
    caps->accuracy_tier = KESTREL_ACCURACY_INT8;
  }
  if (KESTREL_PLUGIN_HAS_SLOT(caps, kestrel_device_caps_t, description)) {
    std::snprintf(caps->description, sizeof caps->description,
                  "minor3 test plugin, instance_create called %d time(s)", g_instance_creates);
  }
}

kestrel_plugin_status_t* GetCaps(uint32_t index, kestrel_device_caps_t* caps) {
  kestrel_plugin_status_t* s = g_inner->device_get_caps(index, caps);
  if (s == nullptr && caps != nullptr) Describe(caps);
  return s;
}

kestrel_plugin_status_t* InstanceGetCaps(kestrel_plugin_instance_t* instance, uint32_t index,
                                         kestrel_device_caps_t* caps) {
  kestrel_plugin_status_t* s = g_inner->instance_device_get_caps(instance, index, caps);
  if (s == nullptr && caps != nullptr) Describe(caps);
  return s;
}

}  // namespace

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  const kestrel_plugin_api_t* table = nullptr;
  kestrel_plugin_status_t* s =
      kestrel::plugin_sdk::HostPluginGetApi(&kConfig, host, host_major, host_minor, &table);
  if (s != nullptr || table == nullptr) {
    if (out != nullptr) *out = nullptr;
    return s;
  }
  g_inner = table;
  std::memcpy(&g_table, table, sizeof g_table);
  g_table.minor = 3;
  g_table.device_get_caps = &GetCaps;
  g_table.instance_create = &CountingInstanceCreate;
  g_table.instance_device_get_caps = &InstanceGetCaps;
  *out = &g_table;
  return nullptr;
}
