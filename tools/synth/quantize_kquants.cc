#include "tools/synth/quantize_kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/gguf/half.h"

namespace kestrel::synth {
namespace {

using runtime::F16ToF32;
using runtime::F32ToF16;
using runtime::GgmlType;

// Candidate scale factors tried around the min/max scale.
constexpr float kSearch[] = {0.88f, 0.92f, 0.96f, 1.0f, 1.04f};

void PutHalf(uint8_t* p, float f) {
  const uint16_t h = F32ToF16(f);
  std::memcpy(p, &h, 2);
}
float RoundHalf(float f) { return F16ToF32(F32ToF16(f)); }

int Clamp(int v, int lo, int hi) { return std::min(hi, std::max(lo, v)); }

// x ~= s * q - mn with q in [0, nmax], mn >= 0: the scale and offset of the candidate with the least
// squared error (mn = -min(0, min x) for all candidates).
void FitAsym(const float* x, int n, int nmax, float* s_out, float* mn_out) {
  float lo = 0.0f, hi = x[0];
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  *mn_out = -lo;
  *s_out = 0.0f;
  if (hi <= lo) return;
  double best = -1.0;
  for (float f : kSearch) {
    const float s = (hi - lo) / nmax * f;
    double err = 0.0;
    for (int i = 0; i < n; ++i) {
      const int q = Clamp(static_cast<int>(std::nearbyint((x[i] - lo) / s)), 0, nmax);
      const double e = static_cast<double>(s) * q + lo - x[i];
      err += e * e;
    }
    if (best < 0.0 || err < best) {
      best = err;
      *s_out = s;
    }
  }
}

// x ~= s * q with q in [-nneg, nneg - 1]; s carries the sign of the element of largest magnitude
// (like Q4_0's d = max / -8), so that element maps to -nneg.
float FitSym(const float* x, int n, int nneg) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0.0f) return 0.0f;
  double best = -1.0;
  float best_s = 0.0f;
  for (float f : kSearch) {
    const float s = max / -nneg * f;
    double err = 0.0;
    for (int i = 0; i < n; ++i) {
      const int q = Clamp(static_cast<int>(std::nearbyint(x[i] / s)), -nneg, nneg - 1);
      const double e = static_cast<double>(s) * q - x[i];
      err += e * e;
    }
    if (best < 0.0 || err < best) {
      best = err;
      best_s = s;
    }
  }
  return best_s;
}

int QuantAsym(float x, float s, float mn, int nmax) {
  return s == 0.0f ? 0 : Clamp(static_cast<int>(std::nearbyint((x + mn) / s)), 0, nmax);
}
int QuantSym(float x, float s, int nneg) {
  return s == 0.0f ? 0 : Clamp(static_cast<int>(std::nearbyint(x / s)), -nneg, nneg - 1);
}

// ---- blocks of 32 -------------------------------------------------------------------------------
// Q4_1 / Q5_1: f16 d, f16 m, [u32 qh], 16 nibble bytes; value = d q + m.
void BlockQx1(const float* x, int bits, uint8_t* out) {
  const int nmax = (1 << bits) - 1;
  float s, mn;
  FitAsym(x, 32, nmax, &s, &mn);
  const float d = RoundHalf(s), m = RoundHalf(-mn);
  PutHalf(out, d);
  PutHalf(out + 2, m);
  uint8_t* qs = out + (bits == 5 ? 8 : 4);
  uint32_t qh = 0;
  std::memset(qs, 0, 16);
  for (int j = 0; j < 32; ++j) {
    const int q = QuantAsym(x[j], d, -m, nmax);
    qs[j % 16] |= static_cast<uint8_t>((q & 15) << (4 * (j / 16)));
    qh |= static_cast<uint32_t>((q >> 4) & 1) << j;
  }
  if (bits == 5) std::memcpy(out + 4, &qh, 4);
}

// Q5_0: f16 d, u32 qh, 16 nibble bytes; value = d (q - 16).
void BlockQ5_0(const float* x, uint8_t* out) {
  const float d = RoundHalf(FitSym(x, 32, 16));
  PutHalf(out, d);
  uint32_t qh = 0;
  uint8_t* qs = out + 6;
  std::memset(qs, 0, 16);
  for (int j = 0; j < 32; ++j) {
    const int q = QuantSym(x[j], d, 16) + 16;
    qs[j % 16] |= static_cast<uint8_t>((q & 15) << (4 * (j / 16)));
    qh |= static_cast<uint32_t>(q >> 4) << j;
  }
  std::memcpy(out + 2, &qh, 4);
}

// ---- K-quants ------------------------------------------------------------------------------------
// Sub-block scales (and mins) of an asymmetric K-quant quantized to `levels` steps against the
// super-block's f16 d and dmin; the quants recomputed with the stored values.
struct AsymK {
  float d = 0.0f, dmin = 0.0f;
  int sc[16] = {}, m[16] = {};
  uint8_t q[256] = {};
};
void QuantizeAsymK(const float* x, int sub, int nmax, int levels, AsymK* k) {
  const int n_sub = 256 / sub;
  float s[16], mn[16], smax = 0.0f, mmax = 0.0f;
  for (int j = 0; j < n_sub; ++j) {
    FitAsym(x + j * sub, sub, nmax, &s[j], &mn[j]);
    smax = std::max(smax, s[j]);
    mmax = std::max(mmax, mn[j]);
  }
  k->d = RoundHalf(smax / levels);
  k->dmin = RoundHalf(mmax / levels);
  for (int j = 0; j < n_sub; ++j) {
    k->sc[j] = k->d == 0.0f ? 0 : Clamp(static_cast<int>(std::nearbyint(s[j] / k->d)), 0, levels);
    // Round the min up so that the block's smallest value stays reachable (q >= 0).
    k->m[j] = k->dmin == 0.0f ? 0 : Clamp(static_cast<int>(std::ceil(mn[j] / k->dmin - 1e-4f)), 0, levels);
    const float es = k->d * k->sc[j], em = k->dmin * k->m[j];
    for (int i = 0; i < sub; ++i) k->q[j * sub + i] = static_cast<uint8_t>(QuantAsym(x[j * sub + i], es, em, nmax));
  }
}

// Symmetric K-quants (Q3_K, Q6_K): signed sub-block scales against d; quants in [-nneg, nneg).
struct SymK {
  float d = 0.0f;
  int sc[16] = {};
  int q[256] = {};
};
void QuantizeSymK(const float* x, int nneg, int sc_max, SymK* k) {
  float s[16], smax = 0.0f;
  for (int j = 0; j < 16; ++j) {
    s[j] = FitSym(x + 16 * j, 16, nneg);
    smax = std::max(smax, std::fabs(s[j]));
  }
  k->d = RoundHalf(smax / sc_max);
  for (int j = 0; j < 16; ++j) {
    k->sc[j] = k->d == 0.0f ? 0
                            : Clamp(static_cast<int>(std::nearbyint(s[j] / k->d)), -sc_max - 1, sc_max);
    const float es = k->d * k->sc[j];
    for (int i = 0; i < 16; ++i) k->q[16 * j + i] = QuantSym(x[16 * j + i], es, nneg);
  }
}

// 6-bit scales and mins of Q4_K/Q5_K packed into 12 bytes.
void PackScalesK4(const int* sc, const int* m, uint8_t* s12) {
  for (int j = 0; j < 4; ++j) {
    s12[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s12[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s12[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

void BlockQ2_K(const float* x, uint8_t* out) {
  AsymK k;
  QuantizeAsymK(x, 16, 3, 15, &k);
  std::memset(out, 0, 84);
  for (int j = 0; j < 16; ++j) out[j] = static_cast<uint8_t>(k.sc[j] | (k.m[j] << 4));
  for (int e = 0; e < 256; ++e) {
    out[16 + 32 * (e / 128) + e % 32] |= static_cast<uint8_t>(k.q[e] << (2 * ((e % 128) / 32)));
  }
  PutHalf(out + 80, k.d);
  PutHalf(out + 82, k.dmin);
}

void BlockQ3_K(const float* x, uint8_t* out) {
  SymK k;
  QuantizeSymK(x, 4, 31, &k);
  std::memset(out, 0, 110);
  for (int e = 0; e < 256; ++e) {
    const int q = k.q[e] + 4;  // 0..7: low 2 bits in qs, bit 2 in hmask
    out[32 + 32 * (e / 128) + e % 32] |= static_cast<uint8_t>((q & 3) << (2 * ((e % 128) / 32)));
    out[e % 32] |= static_cast<uint8_t>((q >> 2) << (e / 32));
  }
  uint8_t* s12 = out + 96;
  for (int j = 0; j < 16; ++j) {
    const int v = k.sc[j] + 32;  // 0..63
    s12[j % 8] |= static_cast<uint8_t>((v & 15) << (4 * (j / 8)));
    s12[8 + j % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (j / 4)));
  }
  PutHalf(out + 108, k.d);
}

void BlockQ45_K(const float* x, int bits, uint8_t* out) {
  AsymK k;
  QuantizeAsymK(x, 32, (1 << bits) - 1, 63, &k);
  const size_t size = bits == 5 ? 176 : 144;
  std::memset(out, 0, size);
  PutHalf(out, k.d);
  PutHalf(out + 2, k.dmin);
  PackScalesK4(k.sc, k.m, out + 4);
  uint8_t* qs = out + (bits == 5 ? 48 : 16);
  for (int e = 0; e < 256; ++e) {
    qs[32 * (e / 64) + e % 32] |= static_cast<uint8_t>((k.q[e] & 15) << (4 * ((e % 64) / 32)));
    if (bits == 5) out[16 + e % 32] |= static_cast<uint8_t>((k.q[e] >> 4) << (e / 32));
  }
}

void BlockQ6_K(const float* x, uint8_t* out) {
  SymK k;
  QuantizeSymK(x, 32, 127, &k);
  std::memset(out, 0, 210);
  for (int e = 0; e < 256; ++e) {
    const int q = k.q[e] + 32;  // 0..63
    const int h = e / 128, r = e % 128;
    out[64 * h + r % 64] |= static_cast<uint8_t>((q & 15) << (4 * (r / 64)));
    out[128 + 32 * h + r % 32] |= static_cast<uint8_t>((q >> 4) << (2 * (r / 32)));
  }
  for (int j = 0; j < 16; ++j) out[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(k.sc[j]));
  PutHalf(out + 208, k.d);
}

}  // namespace

bool IsExtraQuantType(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

size_t QuantizeExtra(GgmlType type, const float* src, size_t n, uint8_t* dst) {
  if (!IsExtraQuantType(type)) return 0;
  const runtime::GgmlTypeTraits t = runtime::GgmlTypeTraitsOf(type);
  const size_t blocks = n / t.block_elems;
  for (size_t b = 0; b < blocks; ++b) {
    const float* x = src + b * t.block_elems;
    uint8_t* out = dst + b * t.block_bytes;
    switch (type) {
      case GgmlType::Q4_1: BlockQx1(x, 4, out); break;
      case GgmlType::Q5_0: BlockQ5_0(x, out); break;
      case GgmlType::Q5_1: BlockQx1(x, 5, out); break;
      case GgmlType::Q2_K: BlockQ2_K(x, out); break;
      case GgmlType::Q3_K: BlockQ3_K(x, out); break;
      case GgmlType::Q4_K: BlockQ45_K(x, 4, out); break;
      case GgmlType::Q5_K: BlockQ45_K(x, 5, out); break;
      case GgmlType::Q6_K: BlockQ6_K(x, out); break;
      default: break;
    }
  }
  return blocks * t.block_bytes;
}

}  // namespace kestrel::synth
