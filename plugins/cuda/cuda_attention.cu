// Paged attention kernels of the CUDA plugin (see cuda_kernels.h for the contract).
//
// Both kernels stage KV chunks through shared memory as f32 (F16 caches are widened on load), keep
// an online softmax (running max m, running sum l, rescale factor exp(m_old - m_new)) in f32 and
// accumulate P.V in f32. A position that is masked, or past the sequence's KV length, has score
// -inf and weight exactly 0; a row whose running max is still -inf contributes nothing (no
// exp(-inf - -inf) NaN). A query that sees no position at all gets 0, as in the reference.
//  - Decode (flash-decoding): grid (split, KV head, sequence). The CTA loads q of the H/Hkv query
//    heads of its KV head, walks the KV positions of its split once (so each KV block is read
//    once per KV head group, not once per query head), and writes (m, l, acc[Dh]) per query head
//    to the workspace; a combine kernel merges the splits.
//  - Prefill / general: grid (query tile, query head). Causal, full, or tree mask (ancestors via
//    `parents`, walked per score: tree masks come from speculative drafts, a few dozen tokens).
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "cuda_kernels.h"

namespace kestrel::plugins::cuda {
namespace {

constexpr int kDecodeThreads = 256;
constexpr int kDecodeChunk = 16;        // KV positions staged per step
constexpr int kDecodeMaxPerThread = 32;  // (head, dim) accumulators per thread: G * Dh <= 8192
constexpr int kPrefillThreads = 128;
constexpr int kPrefillMaxPerThread = 16;  // BQ * Dh <= 2048
constexpr size_t kMaxSharedBytes = 48 * 1024;  // the default dynamic shared memory limit

__device__ __forceinline__ float LoadKv(const void* cache, bool f16, int64_t i) {
  return f16 ? __half2float(__ushort_as_half(static_cast<const uint16_t*>(cache)[i]))
             : static_cast<const float*>(cache)[i];
}

// Element index of (position, kv head, dim 0) of a sequence through its block table.
__device__ __forceinline__ int64_t KvRow(const int32_t* table, int64_t pos, int64_t B, int64_t Hkv,
                                         int64_t g, int64_t Dh) {
  const int64_t block = table[pos / B];
  return ((block * B + pos % B) * Hkv + g) * Dh;
}

// Stages positions [c0, c0 + n) of KV head g into k_s / v_s ([chunk, Dh], zero past n).
__device__ __forceinline__ void StageKv(const AttentionArgs& a, const int32_t* table, int64_t g,
                                        int64_t c0, int64_t n, int64_t chunk, float* k_s,
                                        float* v_s) {
  const int64_t Dh = a.head_dim;
  for (int64_t i = threadIdx.x; i < chunk * Dh; i += blockDim.x) {
    const int64_t c = i / Dh, d = i % Dh;
    if (c < n) {
      const int64_t idx = KvRow(table, c0 + c, a.block_size, a.n_kv_heads, g, Dh) + d;
      k_s[i] = LoadKv(a.k_cache, a.k_f16, idx);
      v_s[i] = LoadKv(a.v_cache, a.v_f16, idx);
    } else {
      k_s[i] = 0.0f;
      v_s[i] = 0.0f;
    }
  }
}

// Online softmax step for one row of `n_cols` scores s[0..n_cols) (masked ones -inf): turns the
// scores into weights exp(s - m_new) in place and updates m, l; returns the factor by which the
// row's accumulators must be multiplied.
__device__ __forceinline__ float SoftmaxStep(float* s, int n_cols, float* m, float* l) {
  const float m_old = *m;
  float m_new = m_old;
  for (int c = 0; c < n_cols; ++c) m_new = fmaxf(m_new, s[c]);
  if (m_new == -INFINITY) {  // nothing visible yet
    for (int c = 0; c < n_cols; ++c) s[c] = 0.0f;
    return 1.0f;
  }
  const float corr = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
  float sum = 0.0f;
  for (int c = 0; c < n_cols; ++c) {
    const float p = expf(s[c] - m_new);  // exp(-inf) = 0 for masked columns
    s[c] = p;
    sum += p;
  }
  *l = *l * corr + sum;
  *m = m_new;
  return corr;
}

// ---- decode ---------------------------------------------------------------------------------------
__global__ void __launch_bounds__(kDecodeThreads)
    AttnDecodeKernel(AttentionArgs a, int64_t per_split, float* __restrict__ part_o,
                     float* __restrict__ part_ml) {
  extern __shared__ float smem[];
  const int64_t split = blockIdx.x, g = blockIdx.y, s = blockIdx.z;
  const int64_t splits = gridDim.x;
  const int64_t tok = a.query_start[s];
  if (a.query_start[s + 1] - tok == 0) return;  // no query in this sequence (uniform per CTA)
  const int64_t H = a.n_heads, Dh = a.head_dim, G = a.n_heads / a.n_kv_heads;
  const int64_t kv_len = a.kv_lens[s];
  const int64_t h0 = g * G;
  const int C = kDecodeChunk;
  float* q_s = smem;             // [G, Dh]
  float* k_s = q_s + G * Dh;     // [C, Dh]
  float* v_s = k_s + C * Dh;     // [C, Dh]
  float* s_s = v_s + C * Dh;     // [G, C]
  float* corr_s = s_s + G * C;   // [G]
  float* m_s = corr_s + G;       // [G]
  float* l_s = m_s + G;          // [G]

  // The G query heads of this KV head are contiguous in q.
  for (int64_t i = threadIdx.x; i < G * Dh; i += blockDim.x) q_s[i] = a.q[(tok * H + h0) * Dh + i];
  for (int64_t i = threadIdx.x; i < G; i += blockDim.x) {
    m_s[i] = -INFINITY;
    l_s[i] = 0.0f;
  }
  float acc[kDecodeMaxPerThread];
#pragma unroll
  for (int r = 0; r < kDecodeMaxPerThread; ++r) acc[r] = 0.0f;
  __syncthreads();

  const int32_t* table = a.block_tables + s * a.max_blocks;
  const int64_t begin = split * per_split;
  const int64_t end = min(kv_len, begin + per_split);
  for (int64_t c0 = begin; c0 < end; c0 += C) {
    const int64_t n = min(static_cast<int64_t>(C), end - c0);
    StageKv(a, table, g, c0, n, C, k_s, v_s);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < G * C; i += blockDim.x) {
      const int64_t gh = i / C, c = i % C;
      float score = -INFINITY;
      if (c < n) {
        float dot = 0.0f;
        for (int64_t d = 0; d < Dh; ++d) dot += q_s[gh * Dh + d] * k_s[c * Dh + d];
        score = dot * a.scale;
      }
      s_s[i] = score;
    }
    __syncthreads();
    for (int64_t gh = threadIdx.x; gh < G; gh += blockDim.x) {
      corr_s[gh] = SoftmaxStep(s_s + gh * C, C, &m_s[gh], &l_s[gh]);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kDecodeMaxPerThread; ++r) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(r) * blockDim.x;
      if (i < G * Dh) {
        const int64_t gh = i / Dh, d = i % Dh;
        float v = acc[r] * corr_s[gh];
        for (int64_t c = 0; c < n; ++c) v += s_s[gh * C + c] * v_s[c * Dh + d];
        acc[r] = v;
      }
    }
    __syncthreads();  // before the next chunk overwrites k_s, v_s and s_s
  }
#pragma unroll
  for (int r = 0; r < kDecodeMaxPerThread; ++r) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(r) * blockDim.x;
    if (i < G * Dh) {
      const int64_t gh = i / Dh, d = i % Dh;
      part_o[((s * H + h0 + gh) * splits + split) * Dh + d] = acc[r];
    }
  }
  for (int64_t gh = threadIdx.x; gh < G; gh += blockDim.x) {
    const int64_t p = (s * H + h0 + gh) * splits + split;
    part_ml[2 * p] = m_s[gh];
    part_ml[2 * p + 1] = l_s[gh];
  }
}

// One CTA per (sequence, query head): merges the splits' partial results.
__global__ void AttnCombineKernel(AttentionArgs a, int64_t splits,
                                  const float* __restrict__ part_o,
                                  const float* __restrict__ part_ml) {
  const int64_t H = a.n_heads, Dh = a.head_dim;
  const int64_t s = blockIdx.x / H, h = blockIdx.x % H;
  const int64_t tok = a.query_start[s];
  if (a.query_start[s + 1] - tok == 0) return;
  const float* ml = part_ml + (s * H + h) * splits * 2;
  float m = -INFINITY;
  for (int64_t i = 0; i < splits; ++i) m = fmaxf(m, ml[2 * i]);
  float* o = a.out + (tok * H + h) * Dh;
  if (m == -INFINITY) {
    for (int64_t d = threadIdx.x; d < Dh; d += blockDim.x) o[d] = 0.0f;
    return;
  }
  float l = 0.0f;
  for (int64_t i = 0; i < splits; ++i) {
    if (ml[2 * i] != -INFINITY) l += ml[2 * i + 1] * expf(ml[2 * i] - m);
  }
  const float* po = part_o + (s * H + h) * splits * Dh;
  for (int64_t d = threadIdx.x; d < Dh; d += blockDim.x) {
    float v = 0.0f;
    for (int64_t i = 0; i < splits; ++i) {
      if (ml[2 * i] != -INFINITY) v += po[i * Dh + d] * expf(ml[2 * i] - m);
    }
    o[d] = l > 0.0f ? v / l : 0.0f;
  }
}

size_t DecodeSharedBytes(int64_t G, int64_t Dh) {
  return static_cast<size_t>(G * Dh + 2 * kDecodeChunk * Dh + G * kDecodeChunk + 3 * G) *
         sizeof(float);
}

// ---- prefill / general ----------------------------------------------------------------------------
struct PrefillTile {
  int bq;  // queries per CTA
  int bk;  // KV positions staged per step
};
PrefillTile PrefillTileFor(int64_t head_dim) {
  return head_dim <= 128 ? PrefillTile{16, 32} : PrefillTile{8, 16};
}
size_t PrefillSharedBytes(int64_t Dh, const PrefillTile& t) {
  return static_cast<size_t>(t.bq * Dh + 2 * t.bk * Dh + t.bq * t.bk + 3 * t.bq) * sizeof(float);
}

// Whether query j (index within its sequence's queries) sees KV position pos.
__device__ __forceinline__ bool Visible(const AttentionArgs& a, const int32_t* parents,
                                        int64_t prefix, int64_t j, int64_t pos) {
  if (parents != nullptr) {
    if (pos < prefix) return true;
    const int64_t node = pos - prefix;
    // Ancestor-or-self walk; the host checked the parents form a forest (no cycle).
    for (int64_t x = j; x >= 0; x = parents[x]) {
      if (x == node) return true;
    }
    return false;
  }
  return !a.causal || pos <= prefix + j;
}

__global__ void __launch_bounds__(kPrefillThreads)
    AttnPrefillKernel(AttentionArgs a, const int32_t* __restrict__ tiles, int bq, int bk) {
  extern __shared__ float smem[];
  const int64_t tile = blockIdx.x, h = blockIdx.y;
  const int64_t s = tiles[2 * tile], j0 = tiles[2 * tile + 1];
  const int64_t H = a.n_heads, Dh = a.head_dim;
  const int64_t q0 = a.query_start[s];
  const int64_t q_len = a.query_start[s + 1] - q0;
  const int64_t kv_len = a.kv_lens[s];
  const int64_t prefix = kv_len - q_len;
  const int64_t nq = min(static_cast<int64_t>(bq), q_len - j0);
  const int64_t g = h / (H / a.n_kv_heads);
  const int32_t* parents = a.parents != nullptr ? a.parents + q0 : nullptr;
  float* q_s = smem;              // [bq, Dh]
  float* k_s = q_s + bq * Dh;     // [bk, Dh]
  float* v_s = k_s + bk * Dh;     // [bk, Dh]
  float* s_s = v_s + bk * Dh;     // [bq, bk]
  float* corr_s = s_s + bq * bk;  // [bq]
  float* m_s = corr_s + bq;       // [bq]
  float* l_s = m_s + bq;          // [bq]

  for (int64_t i = threadIdx.x; i < bq * Dh; i += blockDim.x) {
    const int64_t qi = i / Dh, d = i % Dh;
    q_s[i] = qi < nq ? a.q[((q0 + j0 + qi) * H + h) * Dh + d] : 0.0f;
  }
  for (int64_t i = threadIdx.x; i < bq; i += blockDim.x) {
    m_s[i] = -INFINITY;
    l_s[i] = 0.0f;
  }
  float acc[kPrefillMaxPerThread];
#pragma unroll
  for (int r = 0; r < kPrefillMaxPerThread; ++r) acc[r] = 0.0f;
  __syncthreads();

  const int32_t* table = a.block_tables + s * a.max_blocks;
  // Causal (no tree): the tile's last query sees up to position prefix + j0 + nq - 1.
  const int64_t kv_end = (parents == nullptr && a.causal) ? min(kv_len, prefix + j0 + nq) : kv_len;
  for (int64_t c0 = 0; c0 < kv_end; c0 += bk) {
    const int64_t n = min(static_cast<int64_t>(bk), kv_end - c0);
    StageKv(a, table, g, c0, n, bk, k_s, v_s);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < bq * bk; i += blockDim.x) {
      const int64_t qi = i / bk, c = i % bk;
      float score = -INFINITY;
      if (qi < nq && c < n && Visible(a, parents, prefix, j0 + qi, c0 + c)) {
        float dot = 0.0f;
        for (int64_t d = 0; d < Dh; ++d) dot += q_s[qi * Dh + d] * k_s[c * Dh + d];
        score = dot * a.scale;
      }
      s_s[i] = score;
    }
    __syncthreads();
    for (int64_t qi = threadIdx.x; qi < bq; qi += blockDim.x) {
      corr_s[qi] = SoftmaxStep(s_s + qi * bk, bk, &m_s[qi], &l_s[qi]);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kPrefillMaxPerThread; ++r) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(r) * blockDim.x;
      if (i < bq * Dh) {
        const int64_t qi = i / Dh, d = i % Dh;
        float v = acc[r] * corr_s[qi];
        for (int64_t c = 0; c < n; ++c) v += s_s[qi * bk + c] * v_s[c * Dh + d];
        acc[r] = v;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < kPrefillMaxPerThread; ++r) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(r) * blockDim.x;
    if (i < bq * Dh) {
      const int64_t qi = i / Dh, d = i % Dh;
      if (qi < nq) {
        const float l = l_s[qi];
        a.out[((q0 + j0 + qi) * H + h) * Dh + d] = l > 0.0f ? acc[r] / l : 0.0f;
      }
    }
  }
}

}  // namespace

DecodePlan PlanDecode(const AttentionArgs& a, int64_t max_kv_len) {
  DecodePlan plan;
  const int64_t B = std::max<int64_t>(a.block_size, 1);
  const int64_t kv_blocks = std::max<int64_t>((max_kv_len + B - 1) / B, 1);
  // Splits of at least ~256 positions, at most 64 per (sequence, KV head), whole KV blocks each.
  const int64_t target = std::min<int64_t>(std::max<int64_t>((max_kv_len + 255) / 256, 1), 64);
  const int64_t blocks_per_split = (kv_blocks + target - 1) / target;
  plan.positions_per_split = blocks_per_split * B;
  plan.splits = (kv_blocks + blocks_per_split - 1) / blocks_per_split;
  return plan;
}

int64_t DecodeWorkspaceFloats(const AttentionArgs& a, const DecodePlan& plan) {
  return a.n_seqs * a.n_heads * plan.splits * (a.head_dim + 2);
}

bool DecodeFits(const AttentionArgs& a) {
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0) return false;
  const int64_t G = a.n_heads / a.n_kv_heads;
  return a.head_dim <= kAttentionMaxHeadDim && G * a.head_dim <= kDecodeThreads * kDecodeMaxPerThread &&
         DecodeSharedBytes(G, a.head_dim) <= kMaxSharedBytes && a.n_kv_heads <= 65535 &&
         a.n_seqs <= 65535;
}

cudaError_t LaunchAttentionDecode(const AttentionArgs& a, const DecodePlan& plan, float* workspace,
                                  cudaStream_t stream) {
  if (a.n_seqs == 0 || a.n_heads == 0 || a.head_dim == 0) return cudaSuccess;
  if (!DecodeFits(a)) return cudaErrorInvalidValue;
  const int64_t G = a.n_heads / a.n_kv_heads;
  float* part_o = workspace;
  float* part_ml = workspace + a.n_seqs * a.n_heads * plan.splits * a.head_dim;
  const dim3 grid(static_cast<unsigned>(plan.splits), static_cast<unsigned>(a.n_kv_heads),
                  static_cast<unsigned>(a.n_seqs));
  AttnDecodeKernel<<<grid, kDecodeThreads, DecodeSharedBytes(G, a.head_dim), stream>>>(
      a, plan.positions_per_split, part_o, part_ml);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  AttnCombineKernel<<<static_cast<unsigned>(a.n_seqs * a.n_heads), 128, 0, stream>>>(
      a, plan.splits, part_o, part_ml);
  return cudaGetLastError();
}

int64_t PrefillTileQueries(int64_t head_dim) { return PrefillTileFor(head_dim).bq; }

cudaError_t LaunchAttentionPrefill(const AttentionArgs& a, const int32_t* tiles, int64_t n_tiles,
                                   cudaStream_t stream) {
  if (n_tiles == 0 || a.n_heads == 0 || a.head_dim == 0) return cudaSuccess;
  if (a.head_dim > kAttentionMaxHeadDim || a.n_heads > 65535) return cudaErrorInvalidValue;
  const PrefillTile t = PrefillTileFor(a.head_dim);
  const size_t smem = PrefillSharedBytes(a.head_dim, t);
  if (smem > kMaxSharedBytes || t.bq * a.head_dim > kPrefillThreads * kPrefillMaxPerThread) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(a.n_heads));
  AttnPrefillKernel<<<grid, kPrefillThreads, smem, stream>>>(a, tiles, t.bq, t.bk);
  return cudaGetLastError();
}

}  // namespace kestrel::plugins::cuda
