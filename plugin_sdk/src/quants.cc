#include "kestrel/plugin_sdk/quants.h"

#include <cstring>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/half.h"

namespace kestrel::plugin_sdk {
namespace {

float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return HalfToFloat(h);
}

struct Format {
  uint32_t dtype;
  const char* name;
  int64_t elems;
  size_t bytes;
  int bits;
  int sub;
  // Offsets of the f16 fields (-1: none) and how large "moderate" random scales may be.
  int d_off, dmin_off;
  float d_max, dmin_max;
};

constexpr Format kFormats[] = {
    {KESTREL_DTYPE_Q4_1, "Q4_1", 32, 20, 4, 32, 0, 2, 2.0f / 15, 1.0f},
    {KESTREL_DTYPE_Q5_0, "Q5_0", 32, 22, 5, 32, 0, -1, 2.0f / 16, 0.0f},
    {KESTREL_DTYPE_Q5_1, "Q5_1", 32, 24, 5, 32, 0, 2, 2.0f / 31, 1.0f},
    {KESTREL_DTYPE_Q2_K, "Q2_K", 256, 84, 2, 16, 80, 82, 2.0f / 45, 1.0f / 15},
    {KESTREL_DTYPE_Q3_K, "Q3_K", 256, 110, 3, 16, 108, -1, 2.0f / 128, 0.0f},
    {KESTREL_DTYPE_Q4_K, "Q4_K", 256, 144, 4, 32, 0, 2, 2.0f / (63 * 15), 1.0f / 63},
    {KESTREL_DTYPE_Q5_K, "Q5_K", 256, 176, 5, 32, 0, 2, 2.0f / (63 * 31), 1.0f / 63},
    {KESTREL_DTYPE_Q6_K, "Q6_K", 256, 210, 6, 16, 208, -1, 2.0f / 4096, 0.0f},
};

const Format* Find(uint32_t dtype) {
  for (const Format& f : kFormats) {
    if (f.dtype == dtype) return &f;
  }
  return nullptr;
}

// Elements j and j + 16 of a 32-block from 16 nibble bytes (Q4_0 order).
void Nibbles32(const uint8_t* qs, uint8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 0x0F;
    q[j + 16] = qs[j] >> 4;
  }
}

// q[e] |= bit i of h[l] << shift for element e = 32i + l (hmask / qh of the K-quants).
void AddHighBits256(const uint8_t* h, int shift, uint8_t* q) {
  for (int i = 0; i < 8; ++i) {
    for (int l = 0; l < 32; ++l) q[32 * i + l] |= static_cast<uint8_t>(((h[l] >> i) & 1) << shift);
  }
}

// Q2_K / Q3_K low 2 bits: element 128h + 32i + l is (qs[32h + l] >> 2i) & 3.
void Crumbs256(const uint8_t* qs, uint8_t* q) {
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 4; ++i) {
      for (int l = 0; l < 32; ++l) q[128 * h + 32 * i + l] = (qs[32 * h + l] >> (2 * i)) & 3;
    }
  }
}

// Q4_K / Q5_K 6-bit scale and min of sub-block s from the 12 packed bytes.
void ScaleMinK4(const uint8_t* s12, int s, int32_t* sc, int32_t* m) {
  if (s < 4) {
    *sc = s12[s] & 63;
    *m = s12[s + 4] & 63;
  } else {
    *sc = (s12[s + 4] & 0x0F) | ((s12[s - 4] >> 6) << 4);
    *m = (s12[s + 4] >> 4) | ((s12[s] >> 6) << 4);
  }
}

}  // namespace

bool IsExtraQuant(uint32_t dtype) { return Find(dtype) != nullptr; }

bool IsKQuant(uint32_t dtype) {
  const Format* f = Find(dtype);
  return f != nullptr && f->elems == kSuperBlock;
}

int64_t ExtraQuantBlockElements(uint32_t dtype) {
  const Format* f = Find(dtype);
  return f ? f->elems : 0;
}

size_t ExtraQuantBlockBytes(uint32_t dtype) {
  const Format* f = Find(dtype);
  return f ? f->bytes : 0;
}

const char* ExtraQuantName(uint32_t dtype) {
  const Format* f = Find(dtype);
  return f ? f->name : nullptr;
}

void UnpackBlock(uint32_t dtype, const uint8_t* b, UnpackedBlock* out) {
  const Format* f = Find(dtype);
  out->bits = f->bits;
  out->sub = f->sub;
  out->d = out->dmin = out->a32 = out->b32 = 0.0f;
  std::memset(out->sc, 0, sizeof out->sc);
  std::memset(out->m, 0, sizeof out->m);
  uint8_t* q = out->q;
  switch (dtype) {
    case KESTREL_DTYPE_Q4_1:
      out->a32 = LoadHalf(b);
      out->b32 = LoadHalf(b + 2);
      Nibbles32(b + 4, q);
      return;
    case KESTREL_DTYPE_Q5_0:
    case KESTREL_DTYPE_Q5_1: {
      const bool q51 = dtype == KESTREL_DTYPE_Q5_1;
      out->a32 = LoadHalf(b);
      out->b32 = q51 ? LoadHalf(b + 2) : -16.0f * out->a32;
      const uint8_t* qh = b + (q51 ? 4 : 2);
      uint32_t h;
      std::memcpy(&h, qh, 4);
      Nibbles32(qh + 4, q);
      for (int j = 0; j < 32; ++j) q[j] |= static_cast<uint8_t>(((h >> j) & 1) << 4);
      return;
    }
    case KESTREL_DTYPE_Q2_K:
      Crumbs256(b + 16, q);
      for (int s = 0; s < 16; ++s) {
        out->sc[s] = b[s] & 0x0F;
        out->m[s] = b[s] >> 4;
      }
      out->d = LoadHalf(b + 80);
      out->dmin = LoadHalf(b + 82);
      return;
    case KESTREL_DTYPE_Q3_K: {
      const uint8_t* s12 = b + 96;
      Crumbs256(b + 32, q);
      AddHighBits256(b, 2, q);
      for (int s = 0; s < 16; ++s) {
        const int lo = (s12[s % 8] >> (4 * (s / 8))) & 0x0F;
        const int hi = (s12[8 + s % 4] >> (2 * (s / 4))) & 3;
        out->sc[s] = (lo | (hi << 4)) - 32;
        out->m[s] = 4 * out->sc[s];
      }
      out->d = out->dmin = LoadHalf(b + 108);
      return;
    }
    case KESTREL_DTYPE_Q4_K:
    case KESTREL_DTYPE_Q5_K: {
      const bool q5 = dtype == KESTREL_DTYPE_Q5_K;
      const uint8_t* qs = b + (q5 ? 48 : 16);
      for (int c = 0; c < 4; ++c) {  // element 64c + 32j + l: nibble j of qs[32c + l]
        for (int l = 0; l < 32; ++l) {
          q[64 * c + l] = qs[32 * c + l] & 0x0F;
          q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        }
      }
      if (q5) AddHighBits256(b + 16, 4, q);
      for (int s = 0; s < 8; ++s) ScaleMinK4(b + 4, s, &out->sc[s], &out->m[s]);
      out->d = LoadHalf(b);
      out->dmin = LoadHalf(b + 2);
      return;
    }
    case KESTREL_DTYPE_Q6_K: {
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      for (int h = 0; h < 2; ++h) {  // element 128h + r
        for (int l = 0; l < 64; ++l) {
          q[128 * h + l] = ql[64 * h + l] & 0x0F;
          q[128 * h + 64 + l] = ql[64 * h + l] >> 4;
        }
        for (int l = 0; l < 32; ++l) {
          const uint8_t v = qh[32 * h + l];
          q[128 * h + l] |= static_cast<uint8_t>((v & 3) << 4);
          q[128 * h + 32 + l] |= static_cast<uint8_t>(((v >> 2) & 3) << 4);
          q[128 * h + 64 + l] |= static_cast<uint8_t>(((v >> 4) & 3) << 4);
          q[128 * h + 96 + l] |= static_cast<uint8_t>(((v >> 6) & 3) << 4);
        }
      }
      for (int s = 0; s < 16; ++s) {
        out->sc[s] = static_cast<int8_t>(b[192 + s]);
        out->m[s] = out->sc[s];
      }
      out->d = LoadHalf(b + 208);
      out->dmin = 32.0f * out->d;
      return;
    }
    default:
      return;
  }
}

void DequantizeUnpacked(uint32_t dtype, const UnpackedBlock& u, float* o) {
  // Each expression mirrors gguf-py's NumPy code, f32 operation by f32 operation.
  switch (dtype) {
    case KESTREL_DTYPE_Q4_1:
    case KESTREL_DTYPE_Q5_1:  // (d * q) + m
      for (int e = 0; e < 32; ++e) o[e] = (u.a32 * static_cast<float>(u.q[e])) + u.b32;
      break;
    case KESTREL_DTYPE_Q5_0:  // d * (q - 16)
      for (int e = 0; e < 32; ++e) o[e] = u.a32 * static_cast<float>(u.q[e] - 16);
      break;
    case KESTREL_DTYPE_Q2_K:
    case KESTREL_DTYPE_Q4_K:
    case KESTREL_DTYPE_Q5_K:  // (d * sc) * q - (dmin * m)
      for (int e = 0; e < 256; ++e) {
        const int s = e / u.sub;
        const float dl = u.d * static_cast<float>(u.sc[s]);
        const float ml = u.dmin * static_cast<float>(u.m[s]);
        o[e] = dl * static_cast<float>(u.q[e]) - ml;
      }
      break;
    case KESTREL_DTYPE_Q3_K:  // (d * (sc - 32)) * (q - 4)
      for (int e = 0; e < 256; ++e) {
        o[e] = (u.d * static_cast<float>(u.sc[e / 16])) * static_cast<float>(u.q[e] - 4);
      }
      break;
    case KESTREL_DTYPE_Q6_K:  // (d * sc) * (q - 32)
      for (int e = 0; e < 256; ++e) {
        o[e] = (u.d * static_cast<float>(u.sc[e / 16])) * static_cast<float>(u.q[e] - 32);
      }
      break;
    default:
      break;
  }
}

void DequantizeExtraRow(uint32_t dtype, const void* src, int64_t n, float* out) {
  const Format* f = Find(dtype);
  const uint8_t* p = static_cast<const uint8_t*>(src);
  UnpackedBlock u;
  for (int64_t blk = 0; blk < n / f->elems; ++blk, p += f->bytes) {
    UnpackBlock(dtype, p, &u);
    DequantizeUnpacked(dtype, u, out + blk * f->elems);
  }
}

void RandomExtraBlocks(uint32_t dtype, int64_t n_blocks, bool moderate, std::mt19937_64& rng,
                       uint8_t* dst) {
  const Format* f = Find(dtype);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  auto any_finite_half = [&]() -> uint16_t {
    for (;;) {
      const uint16_t h = static_cast<uint16_t>(byte(rng) | (byte(rng) << 8));
      if (((h >> 10) & 0x1F) != 0x1F) return h;
    }
  };
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* p = dst + b * f->bytes;
    for (size_t i = 0; i < f->bytes; ++i) p[i] = static_cast<uint8_t>(byte(rng));
    uint16_t d, dmin;
    if (moderate) {
      const bool k = f->elems == kSuperBlock;
      // K-quants keep d > 0 as llama.cpp's quantizers write it; blocks of 32 take either sign.
      float dv = f->d_max * (0.05f + 0.95f * unit(rng));
      if (!k && unit(rng) < 0.5f) dv = -dv;
      d = FloatToHalf(dv);
      // Q4_1 / Q5_1 store the block minimum m (added), the K-quants dmin (subtracted).
      const float mv = f->dmin_max * unit(rng);
      dmin = FloatToHalf(k ? mv : -mv);
    } else {
      d = any_finite_half();
      dmin = any_finite_half();
    }
    std::memcpy(p + f->d_off, &d, 2);
    if (f->dmin_off >= 0) std::memcpy(p + f->dmin_off, &dmin, 2);
  }
}

}  // namespace kestrel::plugin_sdk
