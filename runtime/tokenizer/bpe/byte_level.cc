#include "runtime/tokenizer/bpe/byte_level.h"

#include <array>

namespace kestrel::runtime {
namespace {

bool MapsToItself(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct Tables {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 0x144> cp_to_byte;  // code points 0..0x143; -1 where unmapped
  Tables() {
    cp_to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = MapsToItself(b) ? static_cast<uint32_t>(b) : 0x100u + next++;
      AppendUtf8(cp, &byte_to_utf8[b]);
      cp_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& T() {
  static const Tables* const t = new Tables();
  return *t;
}

// llama.cpp's decoding of one sequence at text[i]: its code point and length, or -1 when the
// lead byte or its continuation bytes are wrong (then one byte is consumed).
int32_t DecodeAt(absl::string_view text, size_t i, size_t* len) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(text[i + k]); };
  const auto cont = [&](size_t k) { return i + k < text.size() && (b(k) & 0xC0) == 0x80; };
  const uint8_t c = b(0);
  *len = 1;
  if (c < 0x80) return c;
  if (!(c & 0x40)) return -1;
  if (!(c & 0x20)) {
    if (!cont(1)) return -1;
    *len = 2;
    return ((c & 0x1F) << 6) | (b(1) & 0x3F);
  }
  if (!(c & 0x10)) {
    if (!cont(1) || !cont(2)) return -1;
    *len = 3;
    return ((c & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  }
  if (!(c & 0x08)) {
    if (!cont(1) || !cont(2) || !cont(3)) return -1;
    *len = 4;
    return ((c & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
  return -1;
}

}  // namespace

absl::string_view CanonicalUtf8(absl::string_view text, std::string* storage) {
  // Fast path: ASCII and well-formed shortest sequences stay as they are.
  size_t i = 0;
  std::string probe;
  for (size_t len = 0; i < text.size(); i += len) {
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      len = 1;
      continue;
    }
    const int32_t cp = DecodeAt(text, i, &len);
    if (cp < 0) break;
    probe.clear();
    AppendUtf8(static_cast<uint32_t>(cp), &probe);
    if (probe.size() != len) break;  // overlong
  }
  if (i >= text.size()) return text;
  storage->assign(text.data(), i);
  for (size_t len = 0; i < text.size(); i += len) {
    const int32_t cp = DecodeAt(text, i, &len);
    AppendUtf8(cp < 0 ? 0xFFFDu : static_cast<uint32_t>(cp), storage);
  }
  return *storage;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

absl::string_view ByteLevelChar(uint8_t byte) { return T().byte_to_utf8[byte]; }

void ByteLevelEncode(absl::string_view bytes, std::string* out) {
  const Tables& t = T();
  for (const char c : bytes) out->append(t.byte_to_utf8[static_cast<uint8_t>(c)]);
}

std::string ByteLevelDecode(absl::string_view text) {
  const Tables& t = T();
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const uint8_t c = static_cast<uint8_t>(text[i]);
    uint32_t cp = 0;
    size_t len = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < text.size() && (static_cast<uint8_t>(text[i + 1]) & 0xC0) == 0x80) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<uint8_t>(text[i + 1]) & 0x3Fu);
      len = 2;
    } else {
      cp = 0xFFFFFFFF;  // longer or broken sequences are outside the mapping
      if ((c & 0xF0) == 0xE0) len = 3;
      if ((c & 0xF8) == 0xF0) len = 4;
      if (i + len > text.size()) len = 1;
    }
    if (cp < t.cp_to_byte.size() && t.cp_to_byte[cp] >= 0) {
      out.push_back(static_cast<char>(t.cp_to_byte[cp]));
    } else {
      out.append(text.data() + i, len);
    }
    i += len;
  }
  return out;
}

}  // namespace kestrel::runtime
