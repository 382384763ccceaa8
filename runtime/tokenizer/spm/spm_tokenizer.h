// runtime/tokenizer/spm/: the SentencePiece-style tokenizer of llama.cpp (`tokenizer.ggml.model =
// "llama"`: Llama 1/2, Mistral, Gemma, Phi-3 ...). It takes plain vocab data and knows nothing about
// GGUF files (tokenizer_loader reads them), model weights, sessions or devices.

#ifndef KESTREL_RUNTIME_TOKENIZER_SPM_TOKENIZER_H_
#define KESTREL_RUNTIME_TOKENIZER_SPM_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/tokenizer/vocab_tokenizer.h"

namespace kestrel::runtime {

using SpmTokenType = VocabTokenType;

// The vocab of a SentencePiece-style tokenizer, as a GGUF file with `tokenizer.ggml.model = "llama"`
// stores it. Ids that are absent are -1 (a GGUF loader must map a uint32 0xFFFFFFFF to -1).
struct SpmVocab {
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens (UTF-8, U+2581 '▁' stands for a space)
  std::vector<float> scores;         // tokenizer.ggml.scores; empty means all 0
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (SpmTokenType); empty means all NORMAL
  int32_t bos_id = 1;
  int32_t eos_id = 2;
  int32_t unk_id = 0;
  int32_t pad_id = -1;
  int32_t eot_id = -1;  // tokenizer.ggml.eot_token_id (-1: found by text, e.g. <end_of_turn>)
  int32_t eom_id = -1;  // tokenizer.ggml.eom_token_id (-1: found by text, <|eom_id|>)
  bool phi3_rstrip = false;  // general.name names Phi-3: whitespace after special tokens is dropped
  bool add_bos = true;  // tokenizer.ggml.add_bos_token (SPM default: true)
  bool add_eos = false;  // tokenizer.ggml.add_eos_token (SPM default: false)
  bool add_space_prefix = true;  // tokenizer.ggml.add_space_prefix (SPM default: true)
};

// Reproduces llama.cpp's SPM tokenizer (snapshot b4747, the one the golden files come from) bit for
// bit: llama_tokenize(add_special, parse_special) and llama_token_to_piece(special).
//
// Encoding: special tokens are cut out of the text first (SpecialTokens::Split: USER_DEFINED ones
// always, CONTROL and UNKNOWN ones with parse_special, longest first). Each remaining text run gets a
// leading space if add_space_prefix and it is the first run or follows a user-defined token; spaces
// become U+2581; the run is split into UTF-8 characters by lead byte only (no validation, exactly like
// llama.cpp: a lead byte takes the next 1-3 bytes whatever they are, a stray continuation byte stands
// alone); then the adjacent pair whose concatenation is a vocab token with the highest score is merged,
// leftmost first on ties, until no pair is a token. Symbols that are not tokens become byte tokens
// <0xXX> (or, failing that, the token whose text is the single byte, or unk_id).
//
// End of generation and token types follow llama.cpp's text-based fix-ups (special_tokens.h). Not
// reproduced: the LSTRIP attribute llama.cpp gives <mask> of jina/nomic-bert vocabs.
//
// Thread-safety: immutable after Create; every method is const and safe to call concurrently.
class SpmTokenizer final : public VocabTokenizer {
 public:
  // Validates and indexes `vocab`. InvalidArgument, naming the field and value, when: tokens is empty
  // or has more than INT32_MAX entries; scores or token_types is non-empty with a size other than
  // tokens'; a score is NaN; a token type is outside 0..6; a BYTE token's text is not <0xXX>; bos_id,
  // eos_id, unk_id, pad_id or eot_id is neither -1 nor a valid id; add_bos (add_eos) is set without a
  // bos_id (eos_id); some byte has no fallback at all (no <0xXX> token, no single-byte token) and
  // unk_id is -1. An empty token text is renamed "[EMPTY_<id>]" and a duplicated text maps to its last
  // id, as in llama.cpp.
  static absl::StatusOr<std::unique_ptr<SpmTokenizer>> Create(SpmVocab vocab);

  // Text (UTF-8, need not be valid) to ids: llama_tokenize(add_special, parse_special). With
  // add_special, BOS is prepended if the vocab's add_bos is set and EOS appended if its add_eos is
  // set. Empty text gives only those. O(n log n) in the text length; the text must be shorter than
  // 2 GiB (symbol indices are 32-bit).
  std::vector<int32_t> Encode(absl::string_view text, bool add_special,
                              bool parse_special) const override;
  std::vector<int32_t> Encode(absl::string_view text, bool add_special) const {
    return Encode(text, add_special, /*parse_special=*/false);
  }
  absl::string_view kind() const override { return "spm"; }

  // Pieces (llama_token_to_piece): NORMAL -> text with U+2581 replaced by ' '; USER_DEFINED -> its
  // text unchanged; BYTE <0xAB> -> the single byte 0xAB; CONTROL and UNKNOWN -> "" (with special:
  // their text); UNUSED, UNDEFINED -> "" (VocabTokenizer::PieceView, Decode).

  bool add_space_prefix() const { return add_space_prefix_; }
  float TokenScore(int32_t id) const;
  // Bytes 0x00..0xFF that have no <0xXX> token, in increasing order: byte fallback sends them to the
  // single-byte token or unk_id instead. Empty for Llama-style vocabs.
  const std::vector<uint8_t>& missing_byte_tokens() const { return missing_byte_tokens_; }

 private:
  SpmTokenizer() = default;
  static constexpr size_t kMaxCachedChunk = 64;  // bytes; longer chunks are merged every time
  // Tokenizes one text run (already space-prefixed and U+2581-escaped) and appends the ids. The
  // run is cut into chunks that no vocab token can span (SplitRun), each merged on its own.
  void EncodeRun(absl::string_view escaped, std::vector<int32_t>& out, PieceCache& cache) const;
  // The merge loop on one chunk; short chunks take EncodeShortChunk (false: too many symbols).
  void EncodeChunk(absl::string_view chunk, std::vector<int32_t>& out) const;
  static constexpr int32_t kShortChunk = 64;
  bool EncodeShortChunk(absl::string_view chunk, std::vector<int32_t>& out) const;
  // A final symbol: its token, or byte fallback.
  void EmitPiece(absl::string_view piece, std::vector<int32_t>& out) const;

  std::vector<float> scores_;
  std::array<int32_t, 256> byte_to_token_{};
  std::vector<uint8_t> missing_byte_tokens_;
  size_t max_token_len_ = 0;
  // Symbols c such that some mergeable token contains "c" followed by U+2581: a run is never cut
  // between such a c and the U+2581 after it (see EncodeRun in the .cc). One-byte symbols in a
  // table, U+2581 itself in a flag, other multi-byte ones in a set.
  bool JoinedBeforeSpace(absl::string_view symbol) const;
  std::array<bool, 256> joined_byte_{};
  bool joined_space_ = false;
  absl::flat_hash_set<std::string> joined_other_;
  bool add_space_prefix_ = false;
};

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_SPM_TOKENIZER_H_
