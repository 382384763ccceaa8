// runtime/tokenizer/bpe/pre_tokenizer.h: the pre-tokenizer of a byte-level BPE vocab, chosen by
// `tokenizer.ggml.pre`. It splits text into words that BPE merges never cross, with the regex
// sequence llama.cpp uses for that name (llama-vocab.cpp: facts, not code), run by PCRE2 in UTF +
// UCP mode so \p{L}, \p{N} are Unicode-correct. Like llama.cpp's unicode_regex_split, each regex
// of the sequence splits every piece the previous ones left into its matches and the text
// between them; `\s` is llama.cpp's whitespace set (which includes U+0085 and U+3000).
//
// Thread-safety: immutable after Create; Split is const and safe to call concurrently.
#ifndef KESTREL_RUNTIME_TOKENIZER_BPE_PRE_TOKENIZER_H_
#define KESTREL_RUNTIME_TOKENIZER_BPE_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kestrel::runtime {

class PreTokenizer {
 public:
  // The names this build knows (tokenizer.ggml.pre values), for messages and `kestrel info`.
  static std::vector<std::string> KnownNames();

  // `name` is the value of tokenizer.ggml.pre ("" when the key is absent: llama.cpp's "default").
  // UNIMPLEMENTED naming the key and the value for a name this build does not know.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(absl::string_view name);
  ~PreTokenizer();

  // Appends the words of `text` (views into it, in order, together covering every byte). Bytes
  // that are not valid UTF-8 never match a regex; each run of them ends up a word of its own.
  void Split(absl::string_view text, std::vector<absl::string_view>* words) const;

  const std::string& name() const { return name_; }
  // llama.cpp's per-name vocab defaults: a word that is itself a vocab token is taken whole,
  // without merges (Llama 3, Tekken); BOS is added unless the GGUF says otherwise.
  bool ignore_merges() const { return ignore_merges_; }
  bool add_bos_default() const { return add_bos_default_; }

 private:
  struct Regex;
  PreTokenizer() = default;

  std::string name_;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
  bool add_bos_default_ = false;
};

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_BPE_PRE_TOKENIZER_H_
