// runtime/arch/phi3/: the phi3 architecture (Phi-3, Phi-3.5, Phi-4 mini): NEOX RoPE, fused
// attn_qkv and gate+up (ffn_up [2F, D]) tensors, split by row range into separate weights, and
// the long-context RoPE factors: rope_factors_short up to rope.scaling.original_context_length,
// rope_factors_long beyond (picked per plan from the context it runs at), with the
// rope.scaling.attn_factor folded into the attention scale. The sliding_window key is ignored, as
// llama.cpp ignores it for phi3 (it disables Phi's sliding window).
#ifndef KESTREL_RUNTIME_ARCH_PHI3_PHI3_ARCHITECTURE_H_
#define KESTREL_RUNTIME_ARCH_PHI3_PHI3_ARCHITECTURE_H_

#include "runtime/arch/architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& Phi3Architecture();

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_PHI3_PHI3_ARCHITECTURE_H_
