// CUDA kernels of the plugin except attention (cuda_attention.cu): layout conversions, element-wise
// and per-row ops, embedding gather, KV write and the decode GEMV. Written for correctness by
// construction: 64-bit index math everywhere, grid-stride loops (any size fits any grid), no
// assumption on alignment beyond the dtype's own except where a comment says so. Where the
// reference plugin follows llama.cpp's float operation order (RMSNorm, RoPE) the kernels use the
// non-contracting intrinsics (__fmul_rn, __fadd_rn) so nvcc cannot fuse them into FMAs.
#include <cuda_fp16.h>

#include "cuda_kernels.h"

namespace kestrel::plugins::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items (at least 1, at most 2^20: the loops cover the rest).
unsigned GridFor(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  if (blocks > (int64_t{1} << 20)) blocks = int64_t{1} << 20;
  return static_cast<unsigned>(blocks);
}

__device__ __forceinline__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GlobalStride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float HalfBits(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Element k of row `row` of weight w ([N, K]) as f32: exactly the reference's dequantised value
// (f16 -> f32 is exact; a quant times its f32 scale is one rounding, as in the reference).
__device__ __forceinline__ float LoadWeight(const WeightPtrs& w, int64_t row, int64_t k,
                                            int64_t K) {
  switch (w.format) {
    case WFormat::kF32:
      return static_cast<const float*>(w.data)[row * K + k];
    case WFormat::kF16:
      return HalfBits(static_cast<const uint16_t*>(w.data)[row * K + k]);
    case WFormat::kQ8: {
      const int64_t block = row * (K / 32) + k / 32;
      const float d = HalfBits(w.scales[block]);
      const int8_t q = static_cast<const int8_t*>(w.data)[block * 32 + (k & 31)];
      return static_cast<float>(q) * d;
    }
    case WFormat::kQ4:
    default: {
      const int64_t block = row * (K / 32) + k / 32;
      const float d = HalfBits(w.scales[block]);
      const int j = static_cast<int>(k & 31);
      const uint8_t byte = static_cast<const uint8_t*>(w.data)[block * 16 + (j & 15)];
      const int nibble = j < 16 ? (byte & 0x0F) : (byte >> 4);
      return static_cast<float>(nibble - 8) * d;
    }
  }
}

// ---- layout conversions ---------------------------------------------------------------------------
__global__ void RepackKernel(const uint8_t* __restrict__ src, int64_t n_blocks, int block_bytes,
                             int quant_bytes, uint16_t* __restrict__ scales,
                             uint8_t* __restrict__ quants) {
  for (int64_t b = GlobalThread(); b < n_blocks; b += GlobalStride()) {
    const uint8_t* p = src + b * block_bytes;
    scales[b] = static_cast<uint16_t>(p[0] | (p[1] << 8));  // GGUF is little-endian
    for (int j = 0; j < quant_bytes; ++j) quants[b * quant_bytes + j] = p[2 + j];
  }
}

__global__ void Bf16ToF32Kernel(const uint16_t* __restrict__ src, int64_t n,
                                float* __restrict__ dst) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    dst[i] = __uint_as_float(static_cast<uint32_t>(src[i]) << 16);
  }
}

__global__ void DequantRowsKernel(WeightPtrs w, int64_t K, int64_t row0, int64_t rows,
                                  float* __restrict__ out) {
  const int64_t n = rows * K;
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    out[i] = LoadWeight(w, row0 + i / K, i % K, K);
  }
}

// ---- element-wise -----------------------------------------------------------------------------------
// No __restrict__: out may alias an input (each element is read before it is written, by the
// same thread).
__global__ void AddKernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) out[i] = a[i] + b[i];
}

__global__ void SwigluKernel(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    const float g = gate[i];
    const float u = up[i];
    out[i] = __fmul_rn(g / (1.0f + expf(-g)), u);
  }
}

// ---- RMSNorm: one CTA per row --------------------------------------------------------------------
__device__ __forceinline__ double WarpSum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void RmsNormKernel(const float* x, const float* __restrict__ w, float* out, int64_t D,
                              float eps) {
  __shared__ double partial[kThreads / 32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * D;
  float* yr = out + row * D;
  // llama.cpp: squares in float, summed in double.
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = xr[i];
    sum += static_cast<double>(__fmul_rn(v, v));
  }
  sum = WarpSum(sum);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    double total = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0;
    total = WarpSum(total);
    if (lane == 0) partial[0] = total;
  }
  __syncthreads();
  const float mean = static_cast<float>(partial[0] / static_cast<double>(D));
  const float scale = 1.0f / sqrtf(__fadd_rn(mean, eps));  // IEEE div and sqrt (no fast-math)
  // Each thread rewrites exactly the elements it read above, so out may alias x.
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    yr[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
  }
}

// ---- RoPE: one thread per rotated pair or passed-through element ----------------------------------
__global__ void RopeKernel(const float* x, const int32_t* __restrict__ positions, float* out,
                           int64_t T, int64_t H, int64_t Dh, int64_t n_rot, bool neox,
                           float theta_scale, float freq_scale) {
  const int64_t half_rot = n_rot / 2;
  const int64_t per_head = half_rot + (Dh - n_rot);
  const int64_t n = T * H * per_head;
  for (int64_t idx = GlobalThread(); idx < n; idx += GlobalStride()) {
    const int64_t row = idx / per_head;  // t * H + h
    const int64_t j = idx % per_head;
    const float* xr = x + row * Dh;
    float* yr = out + row * Dh;
    if (j < half_rot) {
      // The reference's rope cache: theta = pos, multiplied by theta_scale once per pair, in float.
      float theta = static_cast<float>(positions[row / H]);
      for (int64_t m = 0; m < j; ++m) theta = __fmul_rn(theta, theta_scale);
      const float angle = __fmul_rn(freq_scale, theta);
      const float c = cosf(angle), s = sinf(angle);
      const int64_t i0 = neox ? j : 2 * j;
      const int64_t i1 = neox ? j + half_rot : 2 * j + 1;
      const float x0 = xr[i0], x1 = xr[i1];
      yr[i0] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
      yr[i1] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
    } else {
      const int64_t d = n_rot + (j - half_rot);
      yr[d] = xr[d];
    }
  }
}

// ---- gathers -------------------------------------------------------------------------------------------
__global__ void EmbeddingKernel(WeightPtrs table, int64_t D, const int32_t* __restrict__ ids,
                                int64_t T, float* __restrict__ out) {
  const int64_t n = T * D;
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    out[i] = LoadWeight(table, ids[i / D], i % D, D);
  }
}

__global__ void GatherRowsKernel(const float* __restrict__ x, int64_t K,
                                 const int32_t* __restrict__ rows, int64_t R,
                                 float* __restrict__ out) {
  const int64_t n = R * K;
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    out[i] = x[static_cast<int64_t>(rows[i / K]) * K + i % K];
  }
}

__global__ void KvWriteKernel(const float* __restrict__ src, const int32_t* __restrict__ slots,
                              int64_t T, int64_t row, void* __restrict__ cache, bool f16) {
  const int64_t n = T * row;
  for (int64_t i = GlobalThread(); i < n; i += GlobalStride()) {
    const int64_t dst = static_cast<int64_t>(slots[i / row]) * row + i % row;
    if (f16) {
      static_cast<uint16_t*>(cache)[dst] = __half_as_ushort(__float2half_rn(src[i]));
    } else {
      static_cast<float*>(cache)[dst] = src[i];
    }
  }
}

// ---- decode GEMV: one warp per output row, all T (<= kGemvMaxTokens) tokens per pass ------------
__device__ __forceinline__ float WarpSumF(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int kFormat>
__global__ void __launch_bounds__(kThreads)
    GemvKernel(const float* __restrict__ x, int T, int64_t K, const void* __restrict__ wdata,
               const uint16_t* __restrict__ scales, int64_t N, float* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (n >= N) return;  // the whole warp leaves together (n is per warp)
  float acc[kGemvMaxTokens];
#pragma unroll
  for (int t = 0; t < kGemvMaxTokens; ++t) acc[t] = 0.0f;

  if constexpr (kFormat == static_cast<int>(WFormat::kF32) ||
                kFormat == static_cast<int>(WFormat::kF16)) {
    // Any K: lanes stride over the row's elements (coalesced weight reads).
    for (int64_t k = lane; k < K; k += 32) {
      float wv;
      if constexpr (kFormat == static_cast<int>(WFormat::kF32)) {
        wv = static_cast<const float*>(wdata)[n * K + k];
      } else {
        wv = HalfBits(static_cast<const uint16_t*>(wdata)[n * K + k]);
      }
#pragma unroll
      for (int t = 0; t < kGemvMaxTokens; ++t) {
        if (t < T) acc[t] += wv * x[t * K + k];
      }
    }
  } else {
    // K % 32 == 0: lanes stride over the row's blocks; one 16-byte (Q4_0) or two (Q8_0) loads per
    // block, dequantised in registers.
    const int64_t nb = K / 32;
    for (int64_t b = lane; b < nb; b += 32) {
      const int64_t block = n * nb + b;
      const float d = HalfBits(scales[block]);
      float wq[32];
      if constexpr (kFormat == static_cast<int>(WFormat::kQ8)) {
        const uint4* p = reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(wdata) +
                                                        block * 32);
        const uint4 v0 = p[0], v1 = p[1];
        const uint32_t words[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
        for (int j = 0; j < 32; ++j) {
          wq[j] = static_cast<float>(static_cast<int8_t>((words[j >> 2] >> ((j & 3) * 8)) & 0xFF));
        }
      } else {
        const uint4 v = *reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(wdata) +
                                                        block * 16);
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          const uint32_t byte = (words[j >> 2] >> ((j & 3) * 8)) & 0xFF;
          wq[j] = static_cast<float>(static_cast<int>(byte & 0x0F) - 8);
          wq[j + 16] = static_cast<float>(static_cast<int>(byte >> 4) - 8);
        }
      }
#pragma unroll
      for (int t = 0; t < kGemvMaxTokens; ++t) {
        if (t < T) {
          const float* xb = x + t * K + b * 32;
          float s = 0.0f;
#pragma unroll
          for (int j = 0; j < 32; ++j) s += wq[j] * xb[j];
          acc[t] += s * d;
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kGemvMaxTokens; ++t) {
    if (t < T) {  // T is uniform across the warp, so every lane joins each shuffle
      const float v = WarpSumF(acc[t]);
      if (lane == 0) out[t * N + n] = v;
    }
  }
}

}  // namespace

// ---- launchers ---------------------------------------------------------------------------------------
cudaError_t LaunchRepackQ8(const uint8_t* src, int64_t n_blocks, uint16_t* scales, uint8_t* quants,
                           cudaStream_t stream) {
  if (n_blocks == 0) return cudaSuccess;
  RepackKernel<<<GridFor(n_blocks), kThreads, 0, stream>>>(src, n_blocks, 34, 32, scales, quants);
  return cudaGetLastError();
}

cudaError_t LaunchRepackQ4(const uint8_t* src, int64_t n_blocks, uint16_t* scales, uint8_t* quants,
                           cudaStream_t stream) {
  if (n_blocks == 0) return cudaSuccess;
  RepackKernel<<<GridFor(n_blocks), kThreads, 0, stream>>>(src, n_blocks, 18, 16, scales, quants);
  return cudaGetLastError();
}

cudaError_t LaunchBf16ToF32(const uint16_t* src, int64_t n, float* dst, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  Bf16ToF32Kernel<<<GridFor(n), kThreads, 0, stream>>>(src, n, dst);
  return cudaGetLastError();
}

cudaError_t LaunchDequantRows(const WeightPtrs& w, int64_t k, int64_t row0, int64_t rows,
                              float* out, cudaStream_t stream) {
  if (rows == 0 || k == 0) return cudaSuccess;
  DequantRowsKernel<<<GridFor(rows * k), kThreads, 0, stream>>>(w, k, row0, rows, out);
  return cudaGetLastError();
}

cudaError_t LaunchAdd(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  AddKernel<<<GridFor(n), kThreads, 0, stream>>>(a, b, out, n);
  return cudaGetLastError();
}

cudaError_t LaunchSwiglu(const float* gate, const float* up, float* out, int64_t n,
                         cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SwigluKernel<<<GridFor(n), kThreads, 0, stream>>>(gate, up, out, n);
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(const float* x, const float* w, float* out, int64_t t, int64_t d,
                          float eps, cudaStream_t stream) {
  if (t == 0 || d == 0) return cudaSuccess;
  RmsNormKernel<<<static_cast<unsigned>(t), kThreads, 0, stream>>>(x, w, out, d, eps);
  return cudaGetLastError();
}

cudaError_t LaunchRope(const float* x, const int32_t* positions, float* out, int64_t t, int64_t h,
                       int64_t dh, int64_t n_rot, bool neox, float theta_scale, float freq_scale,
                       cudaStream_t stream) {
  const int64_t n = t * h * (n_rot / 2 + (dh - n_rot));
  if (n == 0) return cudaSuccess;
  RopeKernel<<<GridFor(n), kThreads, 0, stream>>>(x, positions, out, t, h, dh, n_rot, neox,
                                                  theta_scale, freq_scale);
  return cudaGetLastError();
}

cudaError_t LaunchEmbedding(const WeightPtrs& table, int64_t d, const int32_t* ids, int64_t t,
                            float* out, cudaStream_t stream) {
  if (t == 0 || d == 0) return cudaSuccess;
  EmbeddingKernel<<<GridFor(t * d), kThreads, 0, stream>>>(table, d, ids, t, out);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const float* x, int64_t k, const int32_t* rows, int64_t n_rows,
                             float* out, cudaStream_t stream) {
  if (n_rows == 0 || k == 0) return cudaSuccess;
  GatherRowsKernel<<<GridFor(n_rows * k), kThreads, 0, stream>>>(x, k, rows, n_rows, out);
  return cudaGetLastError();
}

cudaError_t LaunchGemv(const float* x, int64_t t, int64_t k, const WeightPtrs& w, int64_t n,
                       float* out, cudaStream_t stream) {
  if (t == 0 || n == 0) return cudaSuccess;
  if (t > kGemvMaxTokens) return cudaErrorInvalidValue;
  const int64_t rows_per_block = kThreads / 32;
  const unsigned grid = static_cast<unsigned>((n + rows_per_block - 1) / rows_per_block);
  const int tt = static_cast<int>(t);
  switch (w.format) {
    case WFormat::kF32:
      GemvKernel<0><<<grid, kThreads, 0, stream>>>(x, tt, k, w.data, w.scales, n, out);
      break;
    case WFormat::kF16:
      GemvKernel<1><<<grid, kThreads, 0, stream>>>(x, tt, k, w.data, w.scales, n, out);
      break;
    case WFormat::kQ8:
      GemvKernel<2><<<grid, kThreads, 0, stream>>>(x, tt, k, w.data, w.scales, n, out);
      break;
    case WFormat::kQ4:
      GemvKernel<3><<<grid, kThreads, 0, stream>>>(x, tt, k, w.data, w.scales, n, out);
      break;
  }
  return cudaGetLastError();
}

cudaError_t LaunchKvWrite(const float* src, const int32_t* slots, int64_t t, int64_t row,
                          void* cache, bool cache_f16, cudaStream_t stream) {
  if (t == 0 || row == 0) return cudaSuccess;
  KvWriteKernel<<<GridFor(t * row), kThreads, 0, stream>>>(src, slots, t, row, cache, cache_f16);
  return cudaGetLastError();
}

}  // namespace kestrel::plugins::cuda
