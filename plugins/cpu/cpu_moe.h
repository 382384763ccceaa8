// KESTREL_OP_MOE on the CPU plugin: router, top-k routing and the SwiGLU expert FFNs of one layer.
//
// Routing gives exactly the reference plugin's expert sets (plugin_sdk/src/reference_kernels.cc, Moe):
// router logits come from the f32 kernel, scores, top-k (ties to the lower id) and weights are
// computed in double with the reference's code, and a token whose K-th and (K+1)-th scores are
// closer than the f32 logits' error bound (ties included) has its logits recomputed with the
// reference's double-accumulated dot product, so a near-tie never selects differently.
// The experts then run grouped: every local expert with at least one routed token reads its
// weights once per step, for all of its tokens (GEMM, or GEMV for one token), with the plugin's
// kernels (8-bit activations for prepared Q4_0/Q8_0 experts unless OpContext::exact), and the
// weighted outputs are summed per token. Work is spread over the thread pool in two jobs per
// call: gate+up+SwiGLU row chunks of every active expert, then down row chunks; or, when the
// active experts have equally many tokens and their count is a multiple of the threads (decode:
// K experts of one token), in one job of one task per expert (its whole FFN on one thread: one
// hand-off, one linear weight stream per thread; the same per-row kernels, so the same bits).
// Buffers live in per-calling-thread scratch reused across calls (none allocated per decode step).
//
// Thread-safety: as ExecuteCpuOp.
#ifndef KESTREL_PLUGINS_CPU_CPU_MOE_H_
#define KESTREL_PLUGINS_CPU_CPU_MOE_H_

#include "kestrel/plugin_api.h"
#include "cpu_ops.h"

namespace kestrel::plugins::cpu {

// Runs a MOE op that plugin_sdk::CheckOp accepted. `in` / `out` as in ExecuteCpuOp; a prepared rank-3
// Q4_0/Q8_0 expert weight arrives as one packed view per expert (ArgData::n_packed). `out[0]`
// may alias x (it is written last); out[1] (stats) is written when op.n_outputs == 2.
Status MoeCpu(const OpContext& ctx, const kestrel_op_desc_t& op, const ArgData* in,
              void* const* out);

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_CPU_MOE_H_
