// Host-callable launchers of the CUDA plugin's kernels (cuda_kernels.cu, cuda_attention.cu).
//
// This header is the seam between the plugin body (cuda_plugin.cc, plain C++ compiled by the host
// compiler) and the device code (compiled by nvcc). Each launcher enqueues its kernel(s) on
// `stream` and returns cudaGetLastError() of the launch (never synchronises); the caller turns a
// non-success into a Status naming the op and the kernel. Preconditions the launchers rely on,
// checked by the caller first: descriptors valid (plugin_sdk::CheckOp), every index (token id, slot,
// block id, row, query start, kv length, parent) already range-checked on the host, all pointers
// device pointers with at least the documented extents, and F32/I32 data 4-byte aligned.
// Activations are f32 and every accumulation is f32 (RMSNorm's sum of squares: f64).
#ifndef KESTREL_PLUGINS_CUDA_CUDA_KERNELS_H_
#define KESTREL_PLUGINS_CUDA_CUDA_KERNELS_H_

#include <cstdint>

#include <cuda_runtime_api.h>

namespace kestrel::plugins::cuda {

// How a matmul/embedding weight sits in device memory.
//  kF32: f32 [N, K] row-major.   kF16: IEEE f16 [N, K] row-major.
//  kQ8 / kQ4 (repacked GGUF Q8_0 / Q4_0): `scales` holds the f16 scale of block b of row n at
//  [n * K/32 + b]; `data` holds the bare quants of that block at byte (n * K/32 + b) * 32 (Q8_0:
//  32 int8) or * 16 (Q4_0: 16 bytes, element j in the low nibble of byte j, element j + 16 in the
//  high nibble, value (nibble - 8) * scale). Each block's quants are 16-byte aligned when `data`
//  is (cudaMalloc'd), which the GEMV kernel's 16-byte loads need.
enum class WFormat : int { kF32 = 0, kF16 = 1, kQ8 = 2, kQ4 = 3 };

struct WeightPtrs {
  WFormat format = WFormat::kF32;
  const void* data = nullptr;
  const uint16_t* scales = nullptr;  // kQ8 / kQ4 only
};

// Decode GEMV handles at most this many tokens (rows of x) in one pass over the weights.
inline constexpr int64_t kGemvMaxTokens = 8;

// ---- layout conversions (weight_prepare and weights passed as plain buffers) -----------------
// GGUF Q8_0 / Q4_0 blocks (34 / 18 bytes, 2-byte aligned) at `src` -> repacked scales + quants.
cudaError_t LaunchRepackQ8(const uint8_t* src, int64_t n_blocks, uint16_t* scales, uint8_t* quants,
                           cudaStream_t stream);
cudaError_t LaunchRepackQ4(const uint8_t* src, int64_t n_blocks, uint16_t* scales, uint8_t* quants,
                           cudaStream_t stream);
// bf16 -> f32 (exact).
cudaError_t LaunchBf16ToF32(const uint16_t* src, int64_t n, float* dst, cudaStream_t stream);
// Rows [row0, row0 + rows) of weight `w` ([N, K]) dequantised to f32 into out [rows, K].
cudaError_t LaunchDequantRows(const WeightPtrs& w, int64_t k, int64_t row0, int64_t rows,
                              float* out, cudaStream_t stream);

// ---- element-wise and per-row ops ------------------------------------------------------------
// out[i] = a[i] + b[i]; out may alias a or b.
cudaError_t LaunchAdd(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream);
// out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
cudaError_t LaunchSwiglu(const float* gate, const float* up, float* out, int64_t n,
                         cudaStream_t stream);
// RMSNorm over rows of x [T, D] (out may alias x), the reference's operation order.
cudaError_t LaunchRmsNorm(const float* x, const float* w, float* out, int64_t t, int64_t d,
                          float eps, cudaStream_t stream);
// RoPE of x [T, H, Dh] (out may alias x). theta_scale = powf(freq_base, -2 / n_rot) computed on
// the host exactly as the reference does.
cudaError_t LaunchRope(const float* x, const int32_t* positions, float* out, int64_t t, int64_t h,
                       int64_t dh, int64_t n_rot, bool neox, float theta_scale, float freq_scale,
                       cudaStream_t stream);
// out[t, :] = row ids[t] of table [V, D] dequantised (ids range-checked by the caller).
cudaError_t LaunchEmbedding(const WeightPtrs& table, int64_t d, const int32_t* ids, int64_t t,
                            float* out, cudaStream_t stream);
// out[r, :] = x[rows[r], :] for r < n_rows (rows range-checked by the caller).
cudaError_t LaunchGatherRows(const float* x, int64_t k, const int32_t* rows, int64_t n_rows,
                             float* out, cudaStream_t stream);
// Decode GEMV: out [T, N] = x [T, K] w^T for T <= kGemvMaxTokens, the weights dequantised in
// registers, one warp per output row, f32 accumulation.
cudaError_t LaunchGemv(const float* x, int64_t t, int64_t k, const WeightPtrs& w, int64_t n,
                       float* out, cudaStream_t stream);
// KV_WRITE: cache row slots[i] = src row i, for T rows of `row` elements; F16 caches round to
// nearest even. (slots range-checked by the caller.)
cudaError_t LaunchKvWrite(const float* src, const int32_t* slots, int64_t t, int64_t row,
                          void* cache, bool cache_f16, cudaStream_t stream);

// ---- paged attention (cuda_attention.cu) -----------------------------------------------------
struct AttentionArgs {
  const float* q = nullptr;          // [T, H, Dh]
  const void* k_cache = nullptr;     // [NB, B, Hkv, Dh], f32 or f16
  const void* v_cache = nullptr;
  bool k_f16 = false;
  bool v_f16 = false;
  const int32_t* block_tables = nullptr;  // [S, MB]
  const int32_t* query_start = nullptr;   // [S + 1]
  const int32_t* kv_lens = nullptr;       // [S]
  const int32_t* parents = nullptr;       // [T] or nullptr (tree mask)
  float* out = nullptr;                   // [T, H, Dh]
  int64_t n_seqs = 0;
  int64_t max_blocks = 0;  // MB
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;  // B
  bool causal = true;
  float scale = 1.0f;
};

// Largest head_dim the attention kernels run.
inline constexpr int64_t kAttentionMaxHeadDim = 256;

// Decode (every sequence has q_len <= 1, no tree mask): flash-decoding. Grid (splits, Hkv, S):
// each CTA reads the KV blocks of its split once for all H/Hkv query heads of its KV head, keeps
// an online softmax in f32 and writes a partial result; a second kernel combines the splits.
// `workspace` holds DecodeWorkspaceFloats(...) floats.
struct DecodePlan {
  int64_t splits = 1;            // grid.x
  int64_t positions_per_split = 0;  // a multiple of block_size
};
DecodePlan PlanDecode(const AttentionArgs& a, int64_t max_kv_len);
int64_t DecodeWorkspaceFloats(const AttentionArgs& a, const DecodePlan& plan);
// Whether the decode kernel can run this shape (shared memory and register budget).
bool DecodeFits(const AttentionArgs& a);
cudaError_t LaunchAttentionDecode(const AttentionArgs& a, const DecodePlan& plan, float* workspace,
                                  cudaStream_t stream);

// General varlen kernel (prefill, mixed steps, tree masks): one CTA per (tile of up to
// PrefillTileQueries() queries of one sequence, query head); KV in chunks through shared memory
// with an online softmax. `tiles` is a device array of (sequence, first query of the tile within
// the sequence) pairs, n_tiles of them, built on the host.
int64_t PrefillTileQueries(int64_t head_dim);
cudaError_t LaunchAttentionPrefill(const AttentionArgs& a, const int32_t* tiles, int64_t n_tiles,
                                   cudaStream_t stream);

}  // namespace kestrel::plugins::cuda

#endif  // KESTREL_PLUGINS_CUDA_CUDA_KERNELS_H_
