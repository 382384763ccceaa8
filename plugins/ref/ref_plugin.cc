// The reference plugin ("ref"): the plugin SDK's host-memory plugin over the SDK's reference ops,
// the oracle every other plugin is tested against and the runtime's op-by-op fallback. Exports
// only kestrel_plugin_get_api (see hal/plugin.map).
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/host_plugin.h"

namespace kestrel::plugins::ref {

using plugin_sdk::HostPluginConfig;
namespace {

bool RefSupportsKind(uint32_t kind) {
  switch (kind) {
    case KESTREL_OP_EMBEDDING_GATHER:
    case KESTREL_OP_RMSNORM:
    case KESTREL_OP_ROPE:
    case KESTREL_OP_MATMUL:
    case KESTREL_OP_SWIGLU:
    case KESTREL_OP_ADD:
    case KESTREL_OP_KV_WRITE:
    case KESTREL_OP_KV_BLOCK_COPY:
    case KESTREL_OP_PAGED_ATTENTION:
    case KESTREL_OP_LOGITS:
    case KESTREL_OP_MOE:
    case KESTREL_OP_GEGLU:
      return true;
    default:  // vendor kinds
      return false;
  }
}

const HostPluginConfig kRefConfig = {
    "ref",
    "ref",
    "Kestrel CPU reference (portable C++17, single-threaded, float64 accumulation)",
    &RefSupportsKind,
    "0.1.0",
};

}  // namespace
}  // namespace kestrel::plugins::ref

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  return kestrel::plugin_sdk::HostPluginGetApi(&kestrel::plugins::ref::kRefConfig, host,
                                                 host_major, host_minor, out);
}
