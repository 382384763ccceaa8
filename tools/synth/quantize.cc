#include "tools/synth/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/gguf/half.h"

namespace kestrel::synth {

using runtime::F16ToF32;
using runtime::F32ToF16;

void QuantizeQ8_0(const float* src, size_t n, uint8_t* dst) {
  for (size_t b = 0; b < n / kQuantBlockElems; ++b, dst += kQ8_0BlockBytes) {
    const float* x = src + b * kQuantBlockElems;
    float amax = 0.0f;
    for (size_t j = 0; j < kQuantBlockElems; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = F32ToF16(d);
    std::memcpy(dst, &dh, sizeof dh);  // GGUF is little-endian, as is every host we build for
    for (size_t j = 0; j < kQuantBlockElems; ++j) {
      const int8_t q = static_cast<int8_t>(std::roundf(x[j] * id));
      std::memcpy(dst + 2 + j, &q, 1);
    }
  }
}

void QuantizeQ4_0(const float* src, size_t n, uint8_t* dst) {
  constexpr size_t kHalf = kQuantBlockElems / 2;
  for (size_t b = 0; b < n / kQuantBlockElems; ++b, dst += kQ4_0BlockBytes) {
    const float* x = src + b * kQuantBlockElems;
    float amax = 0.0f;
    float max = 0.0f;  // the element of largest magnitude, sign kept (the first one on ties)
    for (size_t j = 0; j < kQuantBlockElems; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = F32ToF16(d);
    std::memcpy(dst, &dh, sizeof dh);
    for (size_t j = 0; j < kHalf; ++j) {
      // x * id lies in [-8, 8]; +8.5 then truncation rounds half up into [0, 16], 16 clamps to 15.
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + kHalf] * id + 8.5f)));
      dst[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void DequantizeQ8_0(const uint8_t* src, size_t n, float* out) {
  for (size_t b = 0; b < n / kQuantBlockElems; ++b, src += kQ8_0BlockBytes) {
    uint16_t dh;
    std::memcpy(&dh, src, sizeof dh);
    const float d = F16ToF32(dh);
    for (size_t j = 0; j < kQuantBlockElems; ++j) {
      int8_t q;
      std::memcpy(&q, src + 2 + j, 1);
      out[b * kQuantBlockElems + j] = static_cast<float>(q) * d;
    }
  }
}

void DequantizeQ4_0(const uint8_t* src, size_t n, float* out) {
  constexpr size_t kHalf = kQuantBlockElems / 2;
  for (size_t b = 0; b < n / kQuantBlockElems; ++b, src += kQ4_0BlockBytes) {
    uint16_t dh;
    std::memcpy(&dh, src, sizeof dh);
    const float d = F16ToF32(dh);
    for (size_t j = 0; j < kHalf; ++j) {
      out[b * kQuantBlockElems + j] = static_cast<float>((src[2 + j] & 0x0f) - 8) * d;
      out[b * kQuantBlockElems + j + kHalf] = static_cast<float>((src[2 + j] >> 4) - 8) * d;
    }
  }
}

}  // namespace kestrel::synth
