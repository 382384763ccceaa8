// The accuracy tiers of plugin_api.h (kestrel_accuracy_tier_t) as numbers: the largest relative
// norm error, ||device - ref|| / ||ref|| over one output, that an op may show against the
// reference plugin, by the device's declared tier, the op kind and its weight dtype. The
// conformance kit (kestrel-conformance) judges every op with these; a plugin's own tests can too.
// Header-only, no state.
//
//   op                                 REFERENCE tier                INT8 tier
//   MATMUL, LOGITS, MOE, F32 weights    1e-5                          3e-2
//     F16 / BF16 weights                1e-3                          3e-2
//     Q8_0 weights                      1e-2 (8-bit activations ok)   3e-2
//     Q4_0 weights                      2e-2 (8-bit activations ok)   4e-2
//   PAGED_ATTENTION with an F16 cache   1e-3                          1e-3
//   every other op                      1e-5                          1e-5
// EMBEDDING_GATHER, KV_WRITE and KV_BLOCK_COPY move values: they are compared bit for bit.
#ifndef KESTREL_PLUGIN_SDK_ACCURACY_H_
#define KESTREL_PLUGIN_SDK_ACCURACY_H_

#include <cstdint>

#include "kestrel/plugin_api.h"

namespace kestrel::plugin_sdk {

// True for the kinds whose outputs are copies of input values (compared bit for bit).
inline bool IsExactKind(uint32_t kind) {
  return kind == KESTREL_OP_EMBEDDING_GATHER || kind == KESTREL_OP_KV_WRITE ||
         kind == KESTREL_OP_KV_BLOCK_COPY;
}

// True for the matmul-like kinds whose error depends on the weight dtype and the tier.
inline bool IsMatmulKind(uint32_t kind) {
  return kind == KESTREL_OP_MATMUL || kind == KESTREL_OP_LOGITS || kind == KESTREL_OP_MOE;
}

// The tolerance of one op (see the table above). `weight_dtype`: the dtype of the op's weight
// for matmul-like kinds, the KV cache dtype (the lower precision of K and V) for
// PAGED_ATTENTION, ignored otherwise.
inline double OpTolerance(uint32_t tier, uint32_t kind, uint32_t weight_dtype) {
  if (IsMatmulKind(kind)) {
    const bool int8 = tier == KESTREL_ACCURACY_INT8;
    switch (weight_dtype) {
      case KESTREL_DTYPE_F32: return int8 ? 3e-2 : 1e-5;
      case KESTREL_DTYPE_F16:
      case KESTREL_DTYPE_BF16: return int8 ? 3e-2 : 1e-3;
      case KESTREL_DTYPE_Q8_0: return int8 ? 3e-2 : 1e-2;
      default: return int8 ? 4e-2 : 2e-2;
    }
  }
  if (kind == KESTREL_OP_PAGED_ATTENTION && weight_dtype == KESTREL_DTYPE_F16) return 1e-3;
  return 1e-5;
}

// "REFERENCE", "INT8", "tier(<n>)".
inline const char* AccuracyTierName(uint32_t tier) {
  switch (tier) {
    case KESTREL_ACCURACY_REFERENCE: return "REFERENCE";
    case KESTREL_ACCURACY_INT8: return "INT8";
    default: return "unknown";
  }
}

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_ACCURACY_H_
