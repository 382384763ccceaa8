// Portable KQ kernels (plain C++17, any architecture), the activation quantizer every level
// shares, and the KQ ISA dispatch.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kestrel/plugin_api.h"
#include "kernels_kquants.h"
#include "kestrel/plugin_sdk/half.h"

namespace kestrel::plugins::cpu {
namespace {

using plugin_sdk::HalfToFloat;

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}

// Quantization is O(T K) against the GEMM's O(T K N), so one portable version serves every level.
void QuantizeAct(const float* x, int64_t k, int64_t n_sb, int8_t* qs, float* ds) {
  int8_t tmp[kSuperElems];
  for (int64_t sb = 0; sb < n_sb; ++sb) {
    float* dx16 = ds + sb * kActSuperFloats;
    float* xb16 = dx16 + 16;
    for (int b = 0; b < 8; ++b) {
      const int64_t e0 = sb * kSuperElems + 32 * b;
      const int64_t n = std::clamp<int64_t>(k - e0, 0, 32);
      float amax = 0.0f;
      for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[e0 + i]));
      const float scale = amax / 127.0f;
      const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
      int32_t sum[2] = {0, 0};
      for (int64_t i = 0; i < 32; ++i) {
        const int v = i < n ? std::clamp(static_cast<int>(std::nearbyint(x[e0 + i] * inv)), -127, 127) : 0;
        tmp[32 * b + i] = static_cast<int8_t>(v);
        sum[i / 16] += v;
      }
      for (int h = 0; h < 2; ++h) {
        dx16[2 * b + h] = scale;
        xb16[2 * b + h] = scale * static_cast<float>(sum[h]);
      }
    }
    // Element order -> the kernels' order: the 4-element run r of sub-block l goes to dword
    // 16 r + l.
    int8_t* q = qs + sb * kActSuperBytes;
    for (int l = 0; l < 16; ++l) {
      for (int r = 0; r < 4; ++r) std::memcpy(q + 64 * r + 4 * l, tmp + 16 * l + 4 * r, 4);
    }
  }
}

// A[l], B[l] of the 16 sub-blocks of one super-block (kernels_kquants.h, scale records).
void ExpandScales(const KqFormat& f, const uint8_t* rec, float* A, float* B) {
  switch (f.dtype) {
    case KESTREL_DTYPE_Q4_K:
    case KESTREL_DTYPE_Q5_K: {
      const float d = HalfAt(rec), dmin = HalfAt(rec + 2);
      for (int l = 0; l < 16; ++l) {
        A[l] = d * static_cast<float>(rec[4 + l / 2]);
        B[l] = -dmin * static_cast<float>(rec[12 + l / 2]);
      }
      return;
    }
    case KESTREL_DTYPE_Q2_K: {
      const float d = HalfAt(rec), dmin = HalfAt(rec + 2);
      for (int l = 0; l < 16; ++l) {
        A[l] = d * static_cast<float>(rec[4 + l] & 15);
        B[l] = -dmin * static_cast<float>(rec[4 + l] >> 4);
      }
      return;
    }
    case KESTREL_DTYPE_Q3_K:
    case KESTREL_DTYPE_Q6_K: {
      const float d = HalfAt(rec);
      const float off = f.dtype == KESTREL_DTYPE_Q3_K ? -4.0f : -32.0f;
      for (int l = 0; l < 16; ++l) {
        A[l] = d * static_cast<float>(static_cast<int8_t>(rec[4 + l]));
        B[l] = off * A[l];
      }
      return;
    }
    default: {  // blocks of 32: f16 d[8] (and m[8])
      for (int l = 0; l < 16; ++l) {
        A[l] = HalfAt(rec + 2 * (l / 2));
        B[l] = f.dtype == KESTREL_DTYPE_Q5_0 ? -16.0f * A[l] : HalfAt(rec + 16 + 2 * (l / 2));
      }
      return;
    }
  }
}

// The 256 quants of a super-block in the kernels' order p.
void UnpackQuants(const KqFormat& f, const uint8_t* planes, uint8_t* q) {
  for (int p = 0; p < kSuperElems; ++p) q[p] = static_cast<uint8_t>(KqQuantAt(f, planes, p));
}

void Gemm(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
          float* y, int64_t ldy) {
  const KqFormat& f = w.fmt;
  uint8_t q[kSuperElems], tail_buf[kSuperElems];
  float A[16], B[16];
  for (int64_t j = n0; j < n1; ++j) {
    for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + j] = 0.0f;
    for (int64_t sb = 0; sb < w.n_sb; ++sb) {
      UnpackQuants(f, KqPlanes(w, j, sb, tail_buf), q);
      ExpandScales(f, w.sc + (j * w.n_sb + sb) * f.s_bytes, A, B);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const int8_t* xq = a.qs + (t * a.n_sb + sb) * kActSuperBytes;
        const float* dx = a.ds + (t * a.n_sb + sb) * kActSuperFloats;
        float acc = 0.0f;
        for (int l = 0; l < 16; ++l) {
          int32_t isum = 0;
          for (int r = 0; r < 4; ++r) {
            for (int i = 0; i < 4; ++i) isum += q[64 * r + 4 * l + i] * xq[64 * r + 4 * l + i];
          }
          acc += static_cast<float>(isum) * (A[l] * dx[l]) + B[l] * dx[16 + l];
        }
        y[t * ldy + j] += acc;
      }
    }
  }
}

}  // namespace

void ExpandKqScales(const KqFormat& f, const uint8_t* rec, float* A, float* B) {
  ExpandScales(f, rec, A, B);
}

const KQuantKernels& PortableKQuantKernels() {
  static const KQuantKernels table = [] {
    KQuantKernels t;
    t.level = IsaLevel::kPortable;
    t.quantize_act = &QuantizeAct;
    t.gemm = &Gemm;
    return t;
  }();
  return table;
}

const KQuantKernels& GetKQuantKernels(IsaLevel level) {
#if defined(KESTREL_CPU_HAVE_X86_KERNELS)
  switch (level) {
    case IsaLevel::kAmx:
    case IsaLevel::kVnni: return VnniKQuantKernels();
    case IsaLevel::kAvx512: return Avx512KQuantKernels();
    case IsaLevel::kAvx2: return Avx2KQuantKernels();
    case IsaLevel::kPortable: break;
    default: break;
  }
#elif defined(KESTREL_CPU_HAVE_NEON_KERNELS)
  if (level == IsaLevel::kDotprod) return DotprodKQuantKernels();
  if (level == IsaLevel::kNeon) return NeonKQuantKernels();
#else
  (void)level;
#endif
  return PortableKQuantKernels();
}

}  // namespace kestrel::plugins::cpu
