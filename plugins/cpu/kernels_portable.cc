// Portable kernels (plain C++17, any architecture) and the ISA dispatch (x86 or aarch64 levels).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kestrel/plugin_api.h"
#include "kernels.h"
#include "kestrel/plugin_sdk/half.h"

namespace kestrel::plugins::cpu {
namespace {

using plugin_sdk::HalfToFloat;

void QuantizeRowAct(const float* x, int64_t k, int64_t n_groups, int32_t offset, int8_t* qs,
                    int32_t* bias, float* d) {
  std::memset(qs, 0, static_cast<size_t>(n_groups * kActGroupBytes));
  std::memset(bias, 0, static_cast<size_t>(n_groups * 16) * sizeof(int32_t));
  for (int64_t g = 0; g < n_groups; ++g) {
    for (int64_t b = 0; b < kGroupBlocks; ++b) {
      const int64_t e0 = (g * kGroupBlocks + b) * kBlock;
      float* db = d + g * kGroupBlocks + b;
      if (e0 >= k) {
        *db = 0.0f;
        continue;
      }
      const float* xb = x + e0;
      float amax = 0.0f;
      for (int64_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
      const float scale = amax / 127.0f;
      const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
      int32_t sum = 0;
      int8_t* q = qs + g * kActGroupBytes;
      for (int64_t j = 0; j < kBlock; ++j) {
        const int v = std::clamp(static_cast<int>(std::nearbyint(xb[j] * inv)), -127, 127);
        sum += v;
        q[(j < 16 ? 0 : 64) + b * 16 + (j & 15)] = static_cast<int8_t>(v);
      }
      *db = scale;
      bias[g * 16 + 4 * b] = -offset * sum;
    }
  }
}

// Signed weight value of element j (0..31) of block b of group `grp` (group_bytes bytes).
inline int WeightAt(const QWeightView& w, const uint8_t* grp, int64_t b, int64_t j) {
  if (w.dtype == KESTREL_DTYPE_Q4_0) {
    const uint8_t byte = grp[b * 16 + (j & 15)];
    return (j < 16 ? (byte & 0x0F) : (byte >> 4)) - 8;
  }
  return static_cast<int>(grp[(j < 16 ? 0 : 64) + b * 16 + (j & 15)]) - 128;
}

void GemmQ(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
           float* y, int64_t ldy) {
  const int64_t G = w.n_groups;
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* wq = w.qs + j * G * w.group_bytes;
    const uint16_t* wd = w.d + j * G * kGroupBlocks;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int8_t* xq = a.qs + t * G * kActGroupBytes;
      const float* xd = a.d + t * G * kGroupBlocks;
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        const uint8_t* grp = wq + g * w.group_bytes;
        const int8_t* xg = xq + g * kActGroupBytes;
        for (int64_t b = 0; b < kGroupBlocks; ++b) {
          int32_t isum = 0;
          for (int64_t e = 0; e < kBlock; ++e) {
            isum += WeightAt(w, grp, b, e) * xg[(e < 16 ? 0 : 64) + b * 16 + (e & 15)];
          }
          acc += static_cast<float>(isum) * (HalfToFloat(wd[g * 4 + b]) * xd[g * 4 + b]);
        }
      }
      y[t * ldy + j] = acc;
    }
  }
}

template <typename W>
inline float LoadW(const W* p, int64_t i);
template <>
inline float LoadW<float>(const float* p, int64_t i) { return p[i]; }
template <>
inline float LoadW<uint16_t>(const uint16_t* p, int64_t i) { return HalfToFloat(p[i]); }

template <typename W>
void GemmFloat(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t n_tokens,
               int64_t n0, int64_t n1, float* y, int64_t ldy) {
  for (int64_t j = n0; j < n1; ++j) {
    const W* wr = w + j * ldw;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xr = x + t * ldx;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= k; i += 8) {
        for (int l = 0; l < 8; ++l) acc[l] += LoadW(wr, i + l) * xr[i + l];
      }
      for (int l = 0; i < k; ++i, ++l) acc[l] += LoadW(wr, i) * xr[i];
      y[t * ldy + j] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
  }
}

void GemmF32(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t n_tokens,
             int64_t n0, int64_t n1, float* y, int64_t ldy) {
  GemmFloat(w, ldw, x, ldx, k, n_tokens, n0, n1, y, ldy);
}
void GemmF16(const uint16_t* w, int64_t ldw, const float* x, int64_t ldx, int64_t k,
             int64_t n_tokens, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  GemmFloat(w, ldw, x, ldx, k, n_tokens, n0, n1, y, ldy);
}

void DequantQRows(const QWeightView& w, int64_t n0, int64_t n1, float* out, int64_t ldo) {
  const int64_t G = w.n_groups;
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* wq = w.qs + j * G * w.group_bytes;
    const uint16_t* wd = w.d + j * G * kGroupBlocks;
    float* o = out + (j - n0) * ldo;
    for (int64_t blk = 0; blk < w.k / kBlock; ++blk) {
      const int64_t g = blk / kGroupBlocks, b = blk % kGroupBlocks;
      const float d = HalfToFloat(wd[blk]);
      for (int64_t e = 0; e < kBlock; ++e) {
        o[blk * kBlock + e] = static_cast<float>(WeightAt(w, wq + g * w.group_bytes, b, e)) * d;
      }
    }
  }
}

float DotF32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void AxpyF32(float a, const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += a * x[i];
}

void F16ToF32(const uint16_t* h, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(h[i]);
}

}  // namespace

const KernelTable& PortableKernels() {
  static const KernelTable table = [] {
    KernelTable t;
    t.level = IsaLevel::kPortable;
    t.quantize_row_act = &QuantizeRowAct;
    t.gemm_q = &GemmQ;
    t.gemm_f32 = &GemmF32;
    t.gemm_f16 = &GemmF16;
    t.dequant_q_rows = &DequantQRows;
    t.dot_f32 = &DotF32;
    t.axpy_f32 = &AxpyF32;
    t.f16_to_f32 = &F16ToF32;
    return t;
  }();
  return table;
}

const KernelTable& GetKernels(IsaLevel level) {
#if defined(KESTREL_CPU_HAVE_X86_KERNELS)
  switch (level) {
    case IsaLevel::kAmx:
#if defined(KESTREL_CPU_HAVE_AMX)
      return AmxKernels();
#else
      return VnniKernels();
#endif
    case IsaLevel::kVnni: return VnniKernels();
    case IsaLevel::kAvx512: return Avx512Kernels();
    case IsaLevel::kAvx2: return Avx2Kernels();
    case IsaLevel::kPortable: break;
    default: break;
  }
#elif defined(KESTREL_CPU_HAVE_NEON_KERNELS)
  if (level == IsaLevel::kDotprod) return DotprodKernels();
  if (level == IsaLevel::kNeon) return NeonKernels();
#else
  (void)level;
#endif
  return PortableKernels();
}

}  // namespace kestrel::plugins::cpu
