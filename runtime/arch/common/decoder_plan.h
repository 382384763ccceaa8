// runtime/arch/common/decoder_plan.h: the plan of a llama-like decoder, which every supported
// family composes: embed, then per layer RMSNorm, Q/K/V matmuls (optional biases), optional
// per-head Q/K RMSNorm, RoPE (optional frequency factors), KV write, paged attention, output
// matmul (optional post-norm), residual add, RMSNorm, FFN (SwiGLU, or one fused MOE op),
// (optional post-norm), residual add; then the output RMSNorm and the logits. What varies is read
// from the config (per-layer RoPE base and window, head dim, scales, activation) and from which
// weights the table holds (biases, norms, tied output), so an architecture passes its config and
// table through.
#ifndef KESTREL_RUNTIME_ARCH_COMMON_DECODER_PLAN_H_
#define KESTREL_RUNTIME_ARCH_COMMON_DECODER_PLAN_H_

#include "absl/status/statusor.h"
#include "runtime/arch/model_config.h"
#include "runtime/arch/weight_table.h"
#include "runtime/plan/execution_plan.h"
#include "runtime/plan/plan_options.h"

namespace kestrel {
namespace runtime {

// INVALID_ARGUMENT for options.n_layers beyond the model; UNIMPLEMENTED for what the op set
// cannot express yet (GeGLU experts). An embedding scale other than 1 is EMBEDDING_GATHER's
// version-2 form, a sliding window PAGED_ATTENTION's; with options.window_kv_blocks the windowed
// layers get KV groups of their own (ExecutionPlan::kv_groups).
absl::StatusOr<ExecutionPlan> BuildDecoderPlan(const ModelConfig& config, const WeightTable& weights,
                                               const PlanOptions& options);

// The RoPE frequency-factor weight a plan at `context_length` tokens uses (llama.cpp's rule):
// rope_freqs when present; otherwise rope_factors_long beyond the original context
// (rope_original_context, else the trained context) and rope_factors_short up to it; -1: none.
int RopeFactorsFor(const ModelConfig& config, const WeightTable& weights, uint32_t context_length);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_COMMON_DECODER_PLAN_H_
