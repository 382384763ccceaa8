// Fuzz target: every tokenizer, through the Tokenizer interface, with vocabularies loaded by
// LoadTokenizer (runtime/tokenizer/tokenizer_loader.h) from the test models: stories260K,
// llama-2-tiny-random and tiny-moe-f32 (../shared/models), SmolLM2 and Gemma 3
// (scripts/fetch_models.sh's cache) when present. Whatever implementation the loader picks for a
// vocab (SPM for the llama vocabs and Gemma 3, byte-level BPE for SmolLM2) is fuzzed without a
// change here; a vocab the loader refuses is listed at start-up and left out.
//
// Input: byte 0 picks the vocab (low 4 bits, modulo their count) and the mode (bits 4-7); the
// rest is the payload.
//   modes 0-3  Encode(payload, add_special = bit 4, parse_special = bit 5), then Decode.
//              Every id lies in the vocab. Round trip (defined for plain text): without special
//              handling, for valid UTF-8 without U+2581 (the SPM space marker), without an UNK id
//              in the result and (byte-level BPE) with every byte's symbol in the vocab,
//              Decode(Encode(s), remove_leading_space) == s. (A BPE vocab may lack some byte
//              symbols, SmolLM2 lacks U+0104 for byte 0x04: llama.cpp drops such bytes, so does
//              Kestrel; tests/fuzz/regressions/tokenizer_fuzzer/bpe-byte-without-symbol.)
//   modes 4-15 the payload as int32 ids (any value, out of range included): Decode both ways,
//              PieceView, TokenType, TokenText, IsEndOfGeneration; TextToToken(payload).
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/tokenizer/bpe/byte_level.h"
#include "runtime/tokenizer/tokenizer_loader.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using kestrel::runtime::GgufFile;
using kestrel::runtime::Tokenizer;

struct Vocab {
  std::string name;
  std::unique_ptr<GgufFile> file;  // the tokenizer may point into it
  std::unique_ptr<Tokenizer> tok;
};

std::vector<Vocab>& Vocabs() {
  static auto* v = new std::vector<Vocab>;
  return *v;
}

void Load(const std::string& path) {
  auto f = GgufFile::Open(path);
  if (!f.ok()) {
    std::fprintf(stderr, "tokenizer_fuzzer: skipping %s: %s\n", path.c_str(),
                 f.status().ToString().c_str());
    return;
  }
  auto t = kestrel::runtime::LoadTokenizer(**f);
  if (!t.ok()) {
    std::fprintf(stderr, "tokenizer_fuzzer: skipping %s: %s\n", path.c_str(),
                 t.status().ToString().c_str());
    return;
  }
  std::fprintf(stderr, "tokenizer_fuzzer: vocab %zu: %s (%s, %d tokens)\n", Vocabs().size(),
               path.c_str(), std::string((*t)->kind()).c_str(), (*t)->vocab_size());
  Vocabs().push_back({path, std::move(*f), std::move(*t)});
}

bool ValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c >> 5) == 6) {
      n = 1, cp = c & 0x1F;
    } else if ((c >> 4) == 14) {
      n = 2, cp = c & 0x0F;
    } else if ((c >> 3) == 30) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const uint8_t cc = static_cast<uint8_t>(s[i + k]);
      if ((cc >> 6) != 2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// Byte-level BPE spells each byte with one symbol; a byte whose symbol is not in the vocab is
// dropped by the encoder (as in llama.cpp), so the round trip is not defined for it.
bool EveryByteHasSymbol(const Tokenizer& t, absl::string_view text) {
  if (t.kind() != "bpe") return true;
  bool have[256] = {};
  bool known[256] = {};
  for (char c : text) {
    const uint8_t b = static_cast<uint8_t>(c);
    if (!known[b]) {
      have[b] = t.TextToToken(std::string(kestrel::runtime::ByteLevelChar(b))) >= 0;
      known[b] = true;
    }
    if (!have[b]) return false;
  }
  return true;
}

void EncodeDecode(const Vocab& v, absl::string_view text, bool add_special, bool parse_special) {
  const Tokenizer& t = *v.tok;
  const std::vector<int32_t> ids = t.Encode(text, add_special, parse_special);
  bool unk = false;
  for (int32_t id : ids) {
    KESTREL_FUZZ_CHECK(id >= 0 && id < t.vocab_size(), "%s: id %d outside the vocab of %d",
                       v.name.c_str(), id, t.vocab_size());
    unk |= id == t.unk_id();
  }
  const std::string back = t.Decode(ids, true);
  (void)t.Decode(ids, false);
  if (add_special || parse_special || unk || !ValidUtf8(text) ||
      text.find("\xE2\x96\x81") != absl::string_view::npos || !EveryByteHasSymbol(t, text)) {
    return;
  }
  KESTREL_FUZZ_CHECK(back == text, "%s: round trip of %zu bytes gave %zu bytes",
                     v.name.c_str(), text.size(), back.size());
}

void Ids(const Vocab& v, absl::string_view payload) {
  const Tokenizer& t = *v.tok;
  std::vector<int32_t> ids(payload.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), payload.data(), ids.size() * 4);
  (void)t.Decode(ids, true);
  (void)t.Decode(ids, false);
  for (int32_t id : ids) {
    (void)t.PieceView(id);
    (void)t.TokenType(id);
    (void)t.TokenText(id).size();
    (void)t.IsEndOfGeneration(id);
  }
  const int32_t found = t.TextToToken(payload);
  KESTREL_FUZZ_CHECK(found >= -1 && found < t.vocab_size(), "TextToToken gave %d", found);
  if (found >= 0) {
    KESTREL_FUZZ_CHECK(t.TokenText(found) == payload, "TextToToken/TokenText disagree");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string shared = kestrel::fuzz::ModelsDir();
  const std::string cache = kestrel::fuzz::ModelCacheDir();
  for (const std::string& p :
       {shared + "/stories260K.gguf", shared + "/llama-2-tiny-random.gguf",
        shared + "/tiny-moe-f32.gguf", cache + "/SmolLM2-135M-Instruct.Q4_1.gguf",
        cache + "/gemma-3-270m-q4_k_m.gguf"}) {
    Load(p);
  }
  KESTREL_FUZZ_CHECK(!Vocabs().empty(), "no vocab loaded (KESTREL_MODELS_DIR=%s)", shared.c_str());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Vocab& v = Vocabs()[(data[0] & 0x0F) % Vocabs().size()];
  const uint32_t mode = data[0] >> 4;
  const absl::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode < 4) {
    EncodeDecode(v, payload, (mode & 1) != 0, (mode & 2) != 0);
  } else {
    Ids(v, payload);
  }
  return 0;
}
