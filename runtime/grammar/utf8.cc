#include "runtime/grammar/utf8.h"

namespace kestrel {
namespace runtime {
namespace grammar {
namespace {

// Length of the sequence a lead byte starts; 0 for a byte that cannot start one.
int SequenceLength(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

}  // namespace

Utf8Decoded DecodeUtf8(absl::string_view bytes) {
  Utf8Decoded out;
  size_t i = 0;
  while (i < bytes.size()) {
    const uint8_t b = static_cast<uint8_t>(bytes[i]);
    const int len = SequenceLength(b);
    if (len == 0) {
      out.valid = false;
      return out;
    }
    if (i + len > bytes.size()) {
      for (size_t j = i + 1; j < bytes.size(); ++j) {
        if ((static_cast<uint8_t>(bytes[j]) & 0xC0) != 0x80) {
          out.valid = false;
          return out;
        }
      }
      out.partial.assign(bytes.data() + i, bytes.size() - i);
      // A partial sequence that cannot complete to a valid character is invalid already.
      uint32_t lo, hi;
      PartialRange(out.partial, &lo, &hi);
      if (lo > hi) out.valid = false;
      return out;
    }
    uint32_t c = len == 1 ? b : (b & (0xFF >> (len + 1)));
    for (int j = 1; j < len; ++j) {
      const uint8_t cb = static_cast<uint8_t>(bytes[i + j]);
      if ((cb & 0xC0) != 0x80) {
        out.valid = false;
        return out;
      }
      c = (c << 6) | (cb & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < kMin[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
      out.valid = false;
      return out;
    }
    out.code_points.push_back(c);
    i += len;
  }
  return out;
}

void PartialRange(absl::string_view partial, uint32_t* lo, uint32_t* hi) {
  const uint8_t b = static_cast<uint8_t>(partial[0]);
  const int len = SequenceLength(b);
  uint32_t l = b & (0xFF >> (len + 1)), h = l;
  for (int j = 1; j < len; ++j) {
    const bool given = j < static_cast<int>(partial.size());
    const uint32_t cb = given ? (static_cast<uint8_t>(partial[j]) & 0x3F) : 0;
    l = (l << 6) | (given ? cb : 0x00);
    h = (h << 6) | (given ? cb : 0x3F);
  }
  static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (len >= 2 && l < kMin[len]) l = kMin[len];
  if (h > 0x10FFFF) h = 0x10FFFF;
  *lo = l;
  *hi = h;
}

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel
