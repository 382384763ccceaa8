// A test plugin that claims only some ops (matmul, RMSNorm, add, SwiGLU), so the runtime must run
// the rest (embedding, RoPE, KV write, attention, logits) on the reference plugin and move data
// between the two devices. Built from the reference plugin's host-memory implementation.
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/host_plugin.h"

namespace {

bool PartialSupports(uint32_t kind) {
  return kind == KESTREL_OP_MATMUL || kind == KESTREL_OP_RMSNORM || kind == KESTREL_OP_ADD ||
         kind == KESTREL_OP_SWIGLU;
}

const kestrel::plugin_sdk::HostPluginConfig kConfig = {
    "partial", "partial", "test plugin: matmul, rmsnorm, add and swiglu only", &PartialSupports,
    "0.1.0-test"};

}  // namespace

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  return kestrel::plugin_sdk::HostPluginGetApi(&kConfig, host, host_major, host_minor, out);
}
