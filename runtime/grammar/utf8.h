// runtime/grammar/: UTF-8 decoding that keeps an incomplete trailing sequence (a token may end in
// the middle of a character; the next token completes it).
#ifndef KESTREL_RUNTIME_GRAMMAR_UTF8_H_
#define KESTREL_RUNTIME_GRAMMAR_UTF8_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kestrel {
namespace runtime {
namespace grammar {

struct Utf8Decoded {
  std::vector<uint32_t> code_points;
  std::string partial;  // 1-3 bytes of a character that the text ends inside of
  bool valid = true;    // false: a byte that no valid sequence allows (the rest is not decoded)
};

// Decodes `bytes`. Overlong forms, surrogates and values past U+10FFFF are invalid.
Utf8Decoded DecodeUtf8(absl::string_view bytes);

// The code points a partial sequence (a lead byte and fewer continuation bytes than it needs)
// can still become: [*lo, *hi].
void PartialRange(absl::string_view partial, uint32_t* lo, uint32_t* hi);

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GRAMMAR_UTF8_H_
