// runtime/plan/plan_options.h: what a caller asks of a plan beyond the model itself: the KV cache
// geometry and element type, the context it will run at, and the speculative-decoding variants
// (a self-draft that runs only the first layers, the final hidden state read back).
#ifndef KESTREL_RUNTIME_PLAN_PLAN_OPTIONS_H_
#define KESTREL_RUNTIME_PLAN_PLAN_OPTIONS_H_

#include <cstdint>

#include "hal/include/kestrel/plugin_api.h"

namespace kestrel {
namespace runtime {

// Which activation ExecutionPlan::hidden names (read back with Executor::ReadHidden).
enum class HiddenState : uint8_t {
  kNone,
  // The residual stream after the last layer run, BEFORE the output norm: [T, n_embd] for every
  // token of the step (not only the logit rows). What EAGLE-style draft heads take as features.
  kPreNorm,
  // The same after the output RMSNorm, i.e. exactly what the output head multiplies ([T, n_embd]).
  kPostNorm,
};

struct PlanOptions {
  uint32_t block_size = 16;  // KV block size in tokens
  uint32_t n_blocks = 1;     // KV blocks in the pool
  uint32_t kv_dtype = KESTREL_DTYPE_F32;
  // The context the plan runs at (tokens per sequence); 0: the model's trained context. Phi-3
  // picks its short or long RoPE factors from it.
  uint32_t context_length = 0;
  // Self-draft: run only the first n_layers decoder layers, then the output norm and head (0: all
  // layers). The plan's KV cache then has n_layers layers.
  uint32_t n_layers = 0;
  HiddenState hidden = HiddenState::kNone;
  // Sliding-window layers: 0 keeps their KV in group 0's full-context pool (the attention op
  // still applies the window; nothing is freed). Otherwise each distinct window gets a KV group
  // of its own with a pool of this many blocks (ExecutionPlan::kv_groups), which the caller
  // fills through its own block tables and trims to the window.
  uint32_t window_kv_blocks = 0;
  // One matmul for Q/K/V and one for gate/up (split by columns after) where the model has the
  // fused matrices (runtime/arch/fused_weights.h); false: one matmul per part, as before.
  bool fuse_matmuls = true;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PLAN_PLAN_OPTIONS_H_
