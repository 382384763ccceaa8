// runtime/tokenizer/bpe/: byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, Llama 3, Qwen 2,
// SmolLM, DeepSeek, Phi-2, ...), llama.cpp-exact. It takes plain vocab data and knows nothing
// about GGUF files (tokenizer_loader reads them), model weights, sessions or devices.
#ifndef KESTREL_RUNTIME_TOKENIZER_BPE_BPE_TOKENIZER_H_
#define KESTREL_RUNTIME_TOKENIZER_BPE_BPE_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/tokenizer/bpe/pre_tokenizer.h"
#include "runtime/tokenizer/vocab_tokenizer.h"

namespace kestrel::runtime {

// A byte-level BPE vocab as a GGUF file stores it (the fields mirror the `tokenizer.ggml.*` keys,
// which the error messages name). Ids that are absent are -1.
struct BpeVocab {
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens: byte-level spellings (byte_level.h)
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type; empty means all NORMAL
  std::vector<std::string> merges;   // tokenizer.ggml.merges: "LEFT RIGHT", rank = index
  std::string pre;                   // tokenizer.ggml.pre ("" when absent: "default")
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  int32_t eot_id = -1;  // -1: found by text (<|im_end|>, <|eot_id|>, ...)
  int32_t eom_id = -1;
  std::optional<bool> add_bos;  // tokenizer.ggml.add_bos_token; absent: the pre-tokenizer's default
  bool add_eos = false;         // tokenizer.ggml.add_eos_token
  bool phi3_rstrip = false;     // general.name names Phi-3 (see SpecialIds)
};

// llama_tokenize / llama_token_to_piece for a byte-level BPE vocab (llama.cpp's
// llm_tokenizer_bpe_session): special tokens are cut out first (special_tokens.h); the pre-tokenizer
// splits each remaining run into words; each word's bytes become byte-level symbols, and the
// adjacent pair with the lowest merge rank (leftmost on ties) is merged until no pair has a rank.
// With the pre-tokenizer's ignore_merges (Llama 3), a word that is a vocab token is taken whole. A
// final symbol that is not a vocab token is emitted byte by byte where a single-character token
// exists, as llama.cpp does.
//
// Text is read as llama.cpp reads it (CanonicalUtf8 in byte_level.h): each byte that does not
// start a well-formed sequence becomes U+FFFD, so ids equal llama.cpp's for any byte string, and
// Decode(Encode(s)) == s for UTF-8 text whose bytes the vocab can spell (a vocab may lack some: the
// SmolLM2 one has no symbol for the bytes 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xF1, 0xF2 among
// others, which llama.cpp drops too). Decode does not apply clean_up_tokenization_spaces (it
// would break that round trip).
//
// Thread-safety: immutable after Create; every method is const and safe to call concurrently.
class BpeTokenizer final : public VocabTokenizer {
 public:
  // Validates and indexes `vocab`. UNIMPLEMENTED naming tokenizer.ggml.pre for an unknown
  // pre-tokenizer; INVALID_ARGUMENT naming the key (and entry) for: no tokens; token_types of
  // another size or with a value outside 0..6; a merges entry that is not "LEFT RIGHT" with both
  // sides non-empty; an id key outside the vocab; add_bos/add_eos without the id.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(BpeVocab vocab);

  absl::string_view kind() const override { return "bpe"; }
  absl::string_view pre_tokenizer() const override { return pre_->name(); }
  std::vector<int32_t> Encode(absl::string_view text, bool add_special, bool parse_special) const override;
  // Pieces: NORMAL -> the bytes its byte-level spelling stands for; USER_DEFINED -> its text;
  // CONTROL and UNKNOWN -> "" (with special: their text); UNUSED, UNDEFINED -> "". BPE adds no
  // space prefix, so Decode's remove_leading_space has nothing to remove.
  size_t n_merges() const { return merges_.size(); }

 private:
  // What merging two adjacent symbols gives: its rank and the resulting symbol.
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  BpeTokenizer() = default;
  // A symbol id for `text`: its token id, or a symbol past the vocab for a text that is no token.
  int32_t SymbolFor(const std::string& text);
  // One pre-tokenized word: merges its byte symbols and appends the ids.
  void EncodeWord(absl::string_view word, std::vector<int32_t>& out) const;
  static constexpr size_t kShortWord = 64;  // words up to this many bytes merge on the stack
  void EncodeShortWord(absl::string_view word, std::vector<int32_t>& out) const;
  void EmitSymbol(int32_t symbol, std::vector<int32_t>& out) const;

  std::vector<std::string> extra_symbols_;  // texts of symbols >= vocab_size (not tokens)
  absl::flat_hash_map<std::string, int32_t> extra_to_symbol_;  // while Create runs
  absl::flat_hash_map<uint64_t, Merge> merges_;  // (left symbol << 32 | right symbol)
  std::array<int32_t, 256> byte_symbol_{};
  std::unique_ptr<PreTokenizer> pre_;
};

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_BPE_BPE_TOKENIZER_H_
