// Reference kernels: plain, single-threaded C++ on host pointers.
//
// This file owns the numerics of the reference ("oracle") plugin: every other plugin is compared
// against these functions. They favour clarity and determinism over speed. Activations are f32;
// weights may be F32/F16/BF16/Q8_0/Q4_0 or one of the formats of quants.h (GGUF block
// layouts: Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) and are dequantized row by row to f32;
// dot products and reductions accumulate in double, so the result does not depend on loop order.
// Where the model quality depends on bit-level agreement with llama.cpp (RMSNorm, RoPE) the kernels
// follow llama.cpp's float operation order; see each comment.
//
// The kernels do not validate shapes (op_contract.h does that against the op descriptor); they do
// validate every index they read from an I32 tensor (token ids, slots, block ids, rows, query
// starts, kv lengths, tree parents) and return OUT_OF_RANGE / INVALID_ARGUMENT instead of touching
// memory out of bounds. Pointers never alias unless a comment says so. Thread-safe (no state).
#ifndef KESTREL_PLUGIN_SDK_REFERENCE_KERNELS_H_
#define KESTREL_PLUGIN_SDK_REFERENCE_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugin_sdk {

// out[t, :] = dequantized table row ids[t], for t < n_tokens. table is [vocab, dim] of `dtype`.
// OUT_OF_RANGE if an id is outside [0, vocab).
// With scale != 1 each element is then multiplied by scale in float (EMBEDDING_GATHER v2).
Status EmbeddingGather(uint32_t dtype, const void* table, int64_t vocab, int64_t dim,
                       const int32_t* ids, int64_t n_tokens, float* out, float scale = 1.0f);

// out[t, :] = (x[t, :] * (1 / sqrtf(mean + eps))) * weight, with mean = sum(x^2) / dim as
// llama.cpp computes it (squares in float, summed in double, mean rounded to float). `out` may
// alias `x`.
void RmsNorm(const float* x, const float* weight, int64_t n_tokens, int64_t dim, float eps,
             float* out);

struct RopeParams {
  uint32_t style = KESTREL_ROPE_STYLE_NORM;  // kestrel_rope_style_t
  int64_t n_rot = 0;                         // even, <= head_dim
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  // [n_rot / 2] divisors of each pair's angle (llama.cpp rope_ext freq_factors), or nullptr.
  const float* freq_factors = nullptr;
};

// Rotary position embedding of x [n_tokens, n_heads, head_dim] (positions [n_tokens]) into out
// (which may alias x). Follows llama.cpp's rope cache: theta starts at (float)pos, is multiplied by
// theta_scale = powf(freq_base, -2.0f / n_rot) once per pair, and the angle is freq_scale * theta;
// cosf/sinf in float. NORM rotates (2i, 2i+1); NEOX rotates (i, i + n_rot/2); dims >= n_rot pass
// through unchanged. With freq_factors the angle of pair i is freq_scale * (theta / factor[i]).
void Rope(const float* x, const int32_t* positions, int64_t n_tokens, int64_t n_heads,
          int64_t head_dim, const RopeParams& params, float* out);

// y[t, n] = sum_k x[t, k] * w[n, k] for x [T, K] (f32), w [N, K] of `w_dtype`, y [T, N].
// Each weight row is dequantized to f32 once; products and sums in double, the result rounded to
// float once. y must not alias x.
void Matmul(const float* x, int64_t n_tokens, int64_t k, uint32_t w_dtype, const void* w,
            int64_t n, float* y);

// y[t, n] += bias[n] for y [n_tokens, n] (float additions, like llama.cpp's bias add).
void AddBias(const float* bias, int64_t n_tokens, int64_t n, float* y);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + expf(-g)). out may alias gate or up.
void Swiglu(const float* gate, const float* up, int64_t n, float* out);

// GELU with the tanh approximation as PyTorch's gelu(approximate="tanh") and llama.cpp's
// ggml_gelu define it: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))), evaluated in double.
float GeluTanh(float g);

// out[i] = GeluTanh(gate[i]) * up[i] (GeGLU). out may alias gate or up.
void Geglu(const float* gate, const float* up, int64_t n, float* out);

// out[i] = a[i] + b[i]. out may alias a or b.
void Add(const float* a, const float* b, int64_t n, float* out);

// A paged KV cache: [n_blocks, block_size, n_kv_heads, head_dim] of F32 or F16.
struct KvCacheView {
  uint32_t dtype = KESTREL_DTYPE_F32;
  void* data = nullptr;
  int64_t n_blocks = 0;
  int64_t block_size = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
};

// Writes k[t], v[t] ([n_tokens, n_kv_heads, head_dim], f32) into slot slots[t] of the caches
// (slot = block * block_size + offset; F16 caches round to nearest even). Both caches share the
// geometry of `k_cache`. OUT_OF_RANGE if a slot is outside [0, n_blocks * block_size); nothing is
// written in that case.
Status KvWrite(const float* k, const float* v, const int32_t* slots, int64_t n_tokens,
               const KvCacheView& k_cache, const KvCacheView& v_cache);

// For each pair p (in order): block pairs[2p+1] of both caches = block pairs[2p]. OUT_OF_RANGE if
// a block index is outside [0, n_blocks); nothing is copied in that case.
Status KvBlockCopy(const int32_t* pairs, int64_t n_pairs, const KvCacheView& k_cache,
                   const KvCacheView& v_cache);

struct AttentionParams {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  bool causal = true;
  float scale = 1.0f;
  int64_t window = 0;  // sliding window in positions, 0: none (PAGED_ATTENTION v2)
};

// Varlen paged attention (see KESTREL_OP_PAGED_ATTENTION in plugin_api.h).
// q, out: [n_tokens, n_heads, head_dim]. block_tables [n_seqs, max_blocks], query_start
// [n_seqs + 1] (0 = query_start[0] <= ... <= query_start[n_seqs] = n_tokens), kv_lens [n_seqs]
// (q_len(s) <= kv_lens[s] <= max_blocks * block_size). `parents` (nullable, [n_tokens]) is the tree
// mask: the index of each query's parent among its sequence's queries, -1 for a root; then a query
// attends the committed prefix (kv_len - q_len positions) plus its ancestors and itself, and
// `causal` is ignored. A window W > 0 further hides KV positions p <= P - W from a query at
// sequence position P (a chain query's own position; prefix + depth for a tree node, whose
// ancestors count at prefix + their depth); block-table entries of blocks wholly before the first
// position visible to any query of a sequence are not read. Scores are float (dot in double, rounded, times scale); softmax subtracts the
// max, exponentiates with expf and sums in double. Query head h reads KV head h / (H / Hkv).
// INVALID_ARGUMENT / OUT_OF_RANGE for inconsistent query_start / kv_lens / parents (or a cycle),
// OUT_OF_RANGE for a block id outside [0, n_blocks) among the blocks a sequence uses.
Status PagedAttention(const float* q, const KvCacheView& k_cache, const KvCacheView& v_cache,
                      const int32_t* block_tables, int64_t n_seqs, int64_t max_blocks,
                      const int32_t* query_start, const int32_t* kv_lens, const int32_t* parents,
                      int64_t n_tokens, const AttentionParams& params, float* out);

// out[r, :] = Matmul(x[rows[r], :], w) for r < n_rows; x [n_tokens, dim], w [vocab, dim].
// OUT_OF_RANGE if a row is outside [0, n_tokens).
Status Logits(const float* x, int64_t n_tokens, int64_t dim, uint32_t w_dtype, const void* w,
              int64_t vocab, const int32_t* rows, int64_t n_rows, float* out);

// One stacked expert weight: n_local matrices of [rows, cols] of `dtype`, packed one after the
// other (GGUF's ffn_*_exps layout), matrix i belonging to expert first_expert + i.
struct ExpertWeights {
  uint32_t dtype = KESTREL_DTYPE_F32;
  const void* data = nullptr;
};

struct MoeParams {
  int64_t n_experts = 0;        // E: router rows
  int64_t top_k = 0;            // K in [1, E]
  uint32_t routing = KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM;  // kestrel_moe_routing_t
  int64_t first_expert = 0;     // the expert weights hold [first_expert, first_expert + n_local)
  int64_t n_local_experts = 0;
};

// Mixture-of-experts FFN (see KESTREL_OP_MOE in plugin_api.h) for x [n_tokens, dim]:
// router [E, dim] of router_dtype; gate/up [n_local, ff, dim]; down [n_local, dim, ff];
// out [n_tokens, dim]; stats [E] (nullable) receives the tokens routed to each of the E experts.
// Numerics: router logits as Matmul (double dot, rounded to float); softmax / sigmoid, top-k and
// renormalisation in double; top-k ranks by score, ties to the lower expert id. Each local
// expert runs over the tokens routed to it: gate and up as Matmul, silu(g) * u as Swiglu, down
// as Matmul; out[t] = sum over the token's local experts of w * y, accumulated in double and
// rounded once (0 for a token with no local expert). `out` may alias `x` (it is written last).
void Moe(const float* x, int64_t n_tokens, int64_t dim, int64_t ff, uint32_t router_dtype,
         const void* router, const ExpertWeights& gate, const ExpertWeights& up,
         const ExpertWeights& down, const MoeParams& params, float* out, int32_t* stats);

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_REFERENCE_KERNELS_H_
