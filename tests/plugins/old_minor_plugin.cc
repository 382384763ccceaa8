// A test plugin that behaves like one built against plugin ABI 1.1: its table says minor 1 and its
// op_query rejects the 1.2 optional inputs (ROPE freq_factors, MATMUL bias) as malformed, as an
// older plugin's argument-count check would. The host must never show it such a descriptor (it
// answers UNSUPPORTED itself and runs the op on the reference plugin). Otherwise the reference
// plugin's host-memory implementation.
#include <cstring>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/host_plugin.h"

namespace {

const kestrel::plugin_sdk::HostPluginConfig kConfig = {
    "old_minor", "old_minor", "test plugin: ABI 1.1 (no optional op inputs)", nullptr,
    "0.1.0-test"};

const kestrel_host_api_t* g_host = nullptr;
kestrel_plugin_api_t g_table;
kestrel_plugin_status_t* (*g_query)(kestrel_plugin_device_t*, const kestrel_op_desc_t*,
                                    kestrel_op_support_t*) = nullptr;

kestrel_plugin_status_t* OldQuery(kestrel_plugin_device_t* device, const kestrel_op_desc_t* op,
                                  kestrel_op_support_t* out) {
  // Nor GEGLU or the version-2 forms of plugin ABI 1.3: an older plugin that ignored op_version
  // would run them without their scale or window.
  if (op != nullptr && (op->kind == KESTREL_OP_GEGLU || op->op_version != 1)) {
    static const char kMessage[] = "old_minor: an ABI 1.1 plugin was shown a 1.3 op";
    return g_host->status_create(g_host->host_ctx, KESTREL_PLUGIN_INTERNAL, kMessage,
                                 sizeof kMessage - 1);
  }
  if (op != nullptr && (op->kind == KESTREL_OP_ROPE || op->kind == KESTREL_OP_MATMUL) &&
      op->n_inputs != 2) {
    static const char kMessage[] = "old_minor: n_inputs != 2 (an ABI 1.1 plugin)";
    return g_host->status_create(g_host->host_ctx, KESTREL_PLUGIN_INVALID_ARGUMENT, kMessage,
                                 sizeof kMessage - 1);
  }
  return g_query(device, op, out);
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
  g_host = host;
  std::memcpy(&g_table, table, sizeof g_table);
  g_table.minor = 1;
  g_query = table->op_query;
  g_table.op_query = &OldQuery;
  *out = &g_table;
  return nullptr;
}
