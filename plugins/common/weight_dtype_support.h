// Which weight dtypes a device plugin computes with, as op_query sees it: a plugin whose kernels
// know only some of the GGUF block formats (opencl, cuda: F32/F16/BF16/Q8_0/Q4_0) reports every op
// that reads another one (Q4_1, Q5_0, Q5_1, the K-quants) UNSUPPORTED, so the runtime runs that op
// on its fallback device (op-by-op fallback) while the rest of the model stays on the device.
// Header-only and internal; depends on ref's dtype helpers (kestrel_ref_core).
#ifndef KESTREL_PLUGINS_COMMON_WEIGHT_DTYPE_SUPPORT_H_
#define KESTREL_PLUGINS_COMMON_WEIGHT_DTYPE_SUPPORT_H_

#include <cstdint>
#include <string>

#include "kestrel/plugin_api.h"
#include "plugins/ref/ref_kernels.h"
#include "plugins/ref/ref_status.h"

namespace kestrel::plugins {

// "" when every input of `op` has a dtype in `weight_mask` or is not a weight dtype (activations,
// indices); else a reason naming the first input whose weight dtype the device lacks.
inline std::string UnsupportedWeightDtypeReason(const kestrel_op_desc_t& op, uint64_t weight_mask) {
  for (uint32_t i = 0; i < op.n_inputs; ++i) {
    const uint32_t dt = op.inputs[i].desc.dtype;
    if (!ref::IsWeightDtype(dt) || dt >= 64) continue;
    if ((weight_mask & KESTREL_DTYPE_BIT(dt)) == 0) {
      return ref::StrCat("input ", i, " has weight dtype ", ref::DtypeName(dt),
                         ", which this device does not compute with");
    }
  }
  return "";
}

}  // namespace kestrel::plugins

#endif  // KESTREL_PLUGINS_COMMON_WEIGHT_DTYPE_SUPPORT_H_
