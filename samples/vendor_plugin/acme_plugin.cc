// The "acme" plugin (device "acme"): a vendor's first plugin, built on the Kestrel plugin SDK.
//
// The SDK's host-memory plugin (kestrel/plugin_sdk/host_plugin.h) provides the whole ABI table:
// plugin instances (ABI 1.4) and the 1.1 slots for older hosts, devices, buffers, prepared
// weights, the op contract checks (every descriptor judged exactly as the reference plugin judges
// it) and the exception / status glue. The vendor supplies only which op kinds the device runs and
// how: four of them here (ADD, SWIGLU, RMSNORM, MATMUL with any weight dtype); everything else is
// UNSUPPORTED and Kestrel runs it on its reference plugin (op-by-op fallback).
//
// Next steps for a real device: replace acme_kernels.cc with calls into the driver; when the
// device has its own memory, streams or a weight layout, move from HostPluginGetApi to
// MakeDeviceTable (kestrel/plugin_sdk/device_table.h) with objects of your own, as Kestrel's
// plugins/npu_stub does. docs/VENDOR_GUIDE.md walks through both and through kestrel-conformance.
#include <cstring>

#include "acme_kernels.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/host_plugin.h"
#include "kestrel/plugin_sdk/status.h"

namespace {

using kestrel::plugin_sdk::Status;

bool AcmeRuns(uint32_t kind) {
  return kind == KESTREL_OP_ADD || kind == KESTREL_OP_SWIGLU || kind == KESTREL_OP_RMSNORM ||
         kind == KESTREL_OP_MATMUL;
}

int64_t Elements(const kestrel_tensor_desc_t& d) {
  int64_t n = 1;
  for (uint32_t i = 0; i < d.rank; ++i) n *= d.dims[i];
  return n;
}

// Called only for descriptors that the op contract accepted and AcmeRuns allowed: shapes,
// dtypes and params are already checked, every pointer holds its tensor's packed bytes.
Status AcmeExecute(const kestrel_op_desc_t& op, const void* const* in, void* const* out) {
  const auto f32 = [&](int i) { return static_cast<const float*>(in[i]); };
  float* y = static_cast<float*>(out[0]);
  const kestrel_tensor_desc_t& x = op.inputs[0].desc;
  switch (op.kind) {
    case KESTREL_OP_ADD:
      acme::Add(f32(0), f32(1), Elements(x), y);
      return Status();
    case KESTREL_OP_SWIGLU:
      acme::Swiglu(f32(0), f32(1), Elements(x), y);
      return Status();
    case KESTREL_OP_RMSNORM: {
      kestrel_op_rmsnorm_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      acme::RmsNorm(f32(0), f32(1), x.dims[0], x.dims[1], p.eps, y);
      return Status();
    }
    case KESTREL_OP_MATMUL: {
      const kestrel_tensor_desc_t& w = op.inputs[1].desc;
      // The optional bias input (plugin ABI 1.2) is a third input when present.
      acme::Matmul(f32(0), x.dims[0], x.dims[1], w.dtype, in[1], w.dims[0],
                   op.n_inputs > 2 ? f32(2) : nullptr, y);
      return Status();
    }
    default:
      return kestrel::plugin_sdk::Unimplemented("acme: op kind ", op.kind, " is not implemented");
  }
}

kestrel::plugin_sdk::HostPluginConfig MakeConfig() {
  kestrel::plugin_sdk::HostPluginConfig c;
  c.plugin_name = "acme";
  c.device_name = "acme";
  c.description = "Acme sample accelerator (Kestrel plugin SDK sample)";
  c.supports_kind = &AcmeRuns;
  c.plugin_version = "0.1.0";
  c.execute = &AcmeExecute;
  c.support_level = KESTREL_OP_PREFERRED;  // the ops it runs should run here, not on the fallback
  return c;
}

const kestrel::plugin_sdk::HostPluginConfig kConfig = MakeConfig();

}  // namespace

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  return kestrel::plugin_sdk::HostPluginGetApi(&kConfig, host, host_major, host_minor, out);
}
