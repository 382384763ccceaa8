// Op descriptors -> the CPU plugin's kernels.
//
// Validation is the plugin SDK's (plugin_sdk::CheckOp, which ref uses too), so both
// plugins accept and reject exactly the same descriptors. MATMUL, LOGITS, EMBEDDING_GATHER and
// PAGED_ATTENTION run on the plugin's own threaded SIMD kernels, GEGLU on a threaded float loop
// (its tanh GELU is too costly for the single-threaded reference in prefill); the cheap elementwise and
// KV-cache ops (RMSNORM, ROPE, SWIGLU, ADD, KV_WRITE, KV_BLOCK_COPY) run on the reference kernels,
// which already follow llama.cpp's float order. MOE runs grouped by expert on the same kernels
// (cpu_moe.h). Thread-safety: ExecuteCpuOp may run concurrently
// from several threads (the pool serialises the parallel parts).
#ifndef KESTREL_PLUGINS_CPU_CPU_OPS_H_
#define KESTREL_PLUGINS_CPU_CPU_OPS_H_

#include <cstdint>

#include "kestrel/plugin_api.h"
#include "kernels.h"
#include "kernels_kquants.h"
#include "thread_pool.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugins::cpu {

using plugin_sdk::Status;

struct OpContext {
  const KernelTable* kernels = nullptr;
  ThreadPool* pool = nullptr;
  // true: Q4_0/Q8_0 weights are dequantized to f32 and multiplied with f32 activations (matches
  // the reference to ~1e-6); false: activations are quantized to 8 bits per 32-block first.
  bool exact = false;
  // true: F32-weight GEMMs with at least kOneDnnMinTokens tokens use oneDNN (when built in).
  bool onednn = false;
};

inline constexpr int64_t kOneDnnMinTokens = 32;

// One tensor argument resolved to host memory: the GGUF-layout bytes, or a repacked weight.
struct ArgData {
  const void* data = nullptr;           // packed row-major bytes of the descriptor
  const QWeightView* packed = nullptr;  // set (and data NULL) for a repacked Q4_0/Q8_0 weight
  // Views at `packed`: 1 for a matrix; dims[0] for a rank-3 weight (a stack of expert matrices,
  // KESTREL_OP_MOE), each repacked on its own.
  int64_t n_packed = 0;
  // Set (and data NULL) for a repacked Q4_1/Q5_0/Q5_1/Q2_K..Q6_K matrix (kernels_kquants.h).
  const KWeightView* kpacked = nullptr;
};

// Runs `op`, which plugin_sdk::CheckOp accepted as supported. Outputs are plain host pointers.
Status ExecuteCpuOp(const OpContext& ctx, const kestrel_op_desc_t& op, const ArgData* inputs,
                    void* const* outputs);

// y [T, N] = x [T, K] w^T for a weight of `w_dtype` (raw GGUF bytes of any weight dtype, or a
// packed Q4_0/Q8_0 or KQ matrix).
// x and y must not overlap.
void MatmulCpu(const OpContext& ctx, const float* x, int64_t n_tokens, int64_t k, uint32_t w_dtype,
               const ArgData& w, int64_t n, float* y);

struct AttentionArgs {
  const float* q = nullptr;
  uint32_t k_dtype = KESTREL_DTYPE_F32, v_dtype = KESTREL_DTYPE_F32;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  int64_t n_blocks = 0, block_size = 0;
  const int32_t* block_tables = nullptr;
  int64_t n_seqs = 0, max_blocks = 0;
  const int32_t* query_start = nullptr;
  const int32_t* kv_lens = nullptr;
  const int32_t* parents = nullptr;  // nullable
  int64_t n_tokens = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  bool causal = true;
  float scale = 1.0f;
  int64_t window = 0;  // sliding window in positions (PAGED_ATTENTION v2), 0: none
  float* out = nullptr;
};

// Paged attention with online softmax over KV blocks, threaded over (sequence, KV head, query
// chunk). Validates indices exactly like plugin_sdk::PagedAttention (nothing is written on error).
Status PagedAttentionCpu(const OpContext& ctx, const AttentionArgs& a);

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_CPU_OPS_H_
