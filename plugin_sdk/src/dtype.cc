#include "kestrel/plugin_sdk/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/quants.h"

namespace kestrel::plugin_sdk {
namespace {

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

bool IsWeightDtype(uint32_t dtype) {
  switch (dtype) {
    case KESTREL_DTYPE_F32:
    case KESTREL_DTYPE_F16:
    case KESTREL_DTYPE_BF16:
    case KESTREL_DTYPE_Q8_0:
    case KESTREL_DTYPE_Q4_0:
      return true;
    default:
      return IsExtraQuant(dtype);
  }
}

bool IsBlockQuantized(uint32_t dtype) {
  return dtype == KESTREL_DTYPE_Q8_0 || dtype == KESTREL_DTYPE_Q4_0 || IsExtraQuant(dtype);
}

int64_t DtypeBlockElements(uint32_t dtype) {
  if (IsExtraQuant(dtype)) return ExtraQuantBlockElements(dtype);
  if (IsBlockQuantized(dtype)) return kQuantBlock;
  return DtypeBlockBytes(dtype) == 0 ? 0 : 1;
}

size_t DtypeBlockBytes(uint32_t dtype) {
  switch (dtype) {
    case KESTREL_DTYPE_F32:
    case KESTREL_DTYPE_I32:
      return 4;
    case KESTREL_DTYPE_F16:
    case KESTREL_DTYPE_BF16:
      return 2;
    case KESTREL_DTYPE_I8:
      return 1;
    case KESTREL_DTYPE_Q8_0:
      return kQ8_0BlockBytes;
    case KESTREL_DTYPE_Q4_0:
      return kQ4_0BlockBytes;
    default:
      return ExtraQuantBlockBytes(dtype);
  }
}

const char* DtypeName(uint32_t dtype) {
  switch (dtype) {
    case KESTREL_DTYPE_F32: return "F32";
    case KESTREL_DTYPE_F16: return "F16";
    case KESTREL_DTYPE_BF16: return "BF16";
    case KESTREL_DTYPE_I32: return "I32";
    case KESTREL_DTYPE_I8: return "I8";
    case KESTREL_DTYPE_Q8_0: return "Q8_0";
    case KESTREL_DTYPE_Q4_0: return "Q4_0";
    default: return IsExtraQuant(dtype) ? ExtraQuantName(dtype) : "unknown dtype";
  }
}

uint64_t RowBytes(uint32_t dtype, int64_t n) {
  const int64_t block = DtypeBlockElements(dtype);
  if (block == 0) return 0;
  return static_cast<uint64_t>(n / block) * DtypeBlockBytes(dtype);
}

void DequantizeRow(uint32_t dtype, const void* src, int64_t n, float* out) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  switch (dtype) {
    case KESTREL_DTYPE_F32:
      std::memcpy(out, p, n * sizeof(float));
      return;
    case KESTREL_DTYPE_F16:
      for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(LoadU16(p + 2 * i));
      return;
    case KESTREL_DTYPE_BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(LoadU16(p + 2 * i));
      return;
    case KESTREL_DTYPE_Q8_0:
      for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ8_0BlockBytes) {
        const float d = HalfToFloat(LoadU16(p));
        const int8_t* qs = reinterpret_cast<const int8_t*>(p + 2);
        for (int64_t j = 0; j < kQuantBlock; ++j) out[b * kQuantBlock + j] = qs[j] * d;
      }
      return;
    case KESTREL_DTYPE_Q4_0:
      for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ4_0BlockBytes) {
        const float d = HalfToFloat(LoadU16(p));
        const uint8_t* qs = p + 2;
        for (int64_t j = 0; j < kQuantBlock / 2; ++j) {
          out[b * kQuantBlock + j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
          out[b * kQuantBlock + j + kQuantBlock / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
        }
      }
      return;
    default:
      if (IsExtraQuant(dtype)) {
        DequantizeExtraRow(dtype, src, n, out);
        return;
      }
      // Unreachable under the documented precondition; poison rather than leave garbage.
      std::fill(out, out + n, std::numeric_limits<float>::quiet_NaN());
      return;
  }
}

void QuantizeRowQ8_0(const float* src, int64_t n, void* dst) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ8_0BlockBytes) {
    const float* x = src + b * kQuantBlock;
    float amax = 0.0f;
    for (int64_t j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = FloatToHalf(d);
    std::memcpy(p, &dh, sizeof dh);
    for (int64_t j = 0; j < kQuantBlock; ++j) {
      const int8_t q = static_cast<int8_t>(std::lround(x[j] * id));  // roundf: half away from zero
      std::memcpy(p + 2 + j, &q, 1);
    }
  }
}

void QuantizeRowQ4_0(const float* src, int64_t n, void* dst) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ4_0BlockBytes) {
    const float* x = src + b * kQuantBlock;
    float amax = 0.0f;
    float max = 0.0f;  // the signed value with the largest magnitude
    for (int64_t j = 0; j < kQuantBlock; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = FloatToHalf(d);
    std::memcpy(p, &dh, sizeof dh);
    for (int64_t j = 0; j < kQuantBlock / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[j + kQuantBlock / 2] * id;
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f)));
      p[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

}  // namespace kestrel::plugin_sdk
