// Which weight dtypes a device plugin computes with, as op_query sees it: a plugin whose kernels
// know only some of the GGUF block formats (opencl, cuda: F32/F16/BF16/Q8_0/Q4_0) reports every op
// that reads another one (Q4_1, Q5_0, Q5_1, the K-quants) UNSUPPORTED, so the runtime runs that op
// on its fallback device (op-by-op fallback) while the rest of the model stays on the device.
// Header-only; depends on the SDK's dtype helpers.
#ifndef KESTREL_PLUGIN_SDK_WEIGHT_DTYPE_SUPPORT_H_
#define KESTREL_PLUGIN_SDK_WEIGHT_DTYPE_SUPPORT_H_

#include <cstdint>
#include <string>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugin_sdk {

// "" when every input of `op` has a dtype in `weight_mask` or is not a weight dtype (activations,
// indices); else a reason naming the first input whose weight dtype the device lacks.
inline std::string UnsupportedWeightDtypeReason(const kestrel_op_desc_t& op, uint64_t weight_mask) {
  for (uint32_t i = 0; i < op.n_inputs; ++i) {
    const uint32_t dt = op.inputs[i].desc.dtype;
    if (!IsWeightDtype(dt) || dt >= 64) continue;
    if ((weight_mask & KESTREL_DTYPE_BIT(dt)) == 0) {
      return StrCat("input ", i, " has weight dtype ", DtypeName(dt),
                    ", which this device does not compute with");
    }
  }
  return "";
}

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_WEIGHT_DTYPE_SUPPORT_H_
