// runtime/tokenizer/bpe/byte_level.h: GPT-2's byte <-> Unicode mapping of byte-level BPE. Every
// byte is shown as one printable code point (bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF as
// themselves, the other 68 as U+0100.. in byte order), so vocab texts and merges are printable
// strings and any byte sequence has a spelling.
#ifndef KESTREL_RUNTIME_TOKENIZER_BPE_BYTE_LEVEL_H_
#define KESTREL_RUNTIME_TOKENIZER_BPE_BYTE_LEVEL_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace kestrel::runtime {

// The UTF-8 spelling of `byte` (1 or 2 bytes).
absl::string_view ByteLevelChar(uint8_t byte);

// Appends the byte-level spelling of `bytes` to `out`.
void ByteLevelEncode(absl::string_view bytes, std::string* out);

// `text` as llama.cpp's unicode_cpts_from_utf8 + unicode_cpt_to_utf8 turn it before tokenizing:
// each byte that does not start a sequence of the right number of continuation bytes becomes
// U+FFFD, and overlong sequences are re-encoded in their shortest form. Returns `text` itself
// when nothing changes, else a view of *storage.
absl::string_view CanonicalUtf8(absl::string_view text, std::string* storage);

// Appends the UTF-8 encoding of code point `cp` (1 to 4 bytes; no range check).
void AppendUtf8(uint32_t cp, std::string* out);

// The bytes a byte-level vocab text stands for. A code point outside the mapping (not produced by
// ByteLevelEncode, e.g. in a hand-made vocab) is kept as its own UTF-8 bytes; text that is not
// valid UTF-8 is kept byte for byte.
std::string ByteLevelDecode(absl::string_view text);

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_BPE_BYTE_LEVEL_H_
