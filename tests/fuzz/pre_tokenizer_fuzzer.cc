// Fuzz target: the byte-level BPE pre-tokenizers (runtime/tokenizer/bpe/pre_tokenizer.h), every
// tokenizer.ggml.pre name this build knows, on arbitrary bytes (invalid UTF-8 included).
//
// Input: byte 0 picks the pre-tokenizer (modulo the count of known names; "" = llama.cpp's
// default is one of them); the rest is the text.
// Invariants: the words are non-empty views into the text, in order, together covering every
// byte exactly once.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/tokenizer/bpe/pre_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using kestrel::runtime::PreTokenizer;

std::vector<std::unique_ptr<PreTokenizer>>& All() {
  static auto* v = new std::vector<std::unique_ptr<PreTokenizer>>;
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::vector<std::string> names = PreTokenizer::KnownNames();
  names.insert(names.begin(), "");
  for (const std::string& name : names) {
    auto p = PreTokenizer::Create(name);
    KESTREL_FUZZ_CHECK(p.ok(), "known pre-tokenizer '%s' refused: %s", name.c_str(),
                       p.status().ToString().c_str());
    All().push_back(std::move(*p));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const PreTokenizer& p = *All()[data[0] % All().size()];
  const absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<absl::string_view> words;
  p.Split(text, &words);
  const char* at = text.data();
  for (absl::string_view w : words) {
    KESTREL_FUZZ_CHECK(!w.empty(), "%s: an empty word", p.name().c_str());
    KESTREL_FUZZ_CHECK(w.data() == at, "%s: word at offset %td, expected %td", p.name().c_str(),
                       w.data() - text.data(), at - text.data());
    at += w.size();
  }
  KESTREL_FUZZ_CHECK(at == text.data() + text.size(), "%s: words cover %td of %zu bytes",
                     p.name().c_str(), at - text.data(), text.size());
  return 0;
}
