// runtime/tokenizer/vocab_tokenizer.h: what the SPM and BPE tokenizers share beyond the special
// tokens: the token table (texts, GGUF types, the pieces they print, text -> id), the special
// ids and add_bos/add_eos, and the Tokenizer accessors and Decode built on them. An
// implementation fills the protected members in its Create and adds Encode.
//
// Thread-safety: immutable after the implementation's Create; every method is const.
#ifndef KESTREL_RUNTIME_TOKENIZER_VOCAB_TOKENIZER_H_
#define KESTREL_RUNTIME_TOKENIZER_VOCAB_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/tokenizer/special_tokens.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kestrel::runtime {

class VocabTokenizer : public Tokenizer {
 public:
  // llama_token_to_piece(special): pieces_[id]; with special, CONTROL and UNKNOWN tokens give
  // their vocab text. Out-of-range id -> "".
  using Tokenizer::PieceView;
  absl::string_view PieceView(int32_t id, bool special) const override;
  // Concatenated pieces (special = false). With remove_leading_space and a vocab that puts a
  // space in front of the text (SPM's add_space_prefix), the first non-empty piece loses one
  // leading space, so Decode(Encode(s, ...), true) == s. This differs from llama_detokenize only
  // in skipping leading empty pieces (llama.cpp strips the space of token 0 only, which a leading
  // BOS consumes).
  std::string Decode(absl::Span<const int32_t> ids, bool remove_leading_space) const override;

  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t eot_id() const { return eot_id_; }
  int32_t unk_id() const override { return unk_id_; }
  int32_t pad_id() const override { return pad_id_; }
  bool add_bos() const override { return add_bos_; }
  bool add_eos() const override { return add_eos_; }
  // EOS, EOT, EOM and the end-of-turn tokens llama.cpp recognises by text.
  bool IsEndOfGeneration(int32_t id) const override { return special_.IsEndOfGeneration(id); }
  const std::vector<int32_t>& EndOfGenerationIds() const override { return special_.end_of_generation_ids(); }
  // The GGUF token type (after llama.cpp's fix-ups); -1 for an out-of-range id.
  int32_t TokenType(int32_t id) const override;
  // The token's vocab text; empty for an out-of-range id.
  const std::string& TokenText(int32_t id) const override;
  // Exact text -> id lookup (the last id for a duplicated text); -1 if absent.
  int32_t TextToToken(absl::string_view text) const override;

 protected:
  // Ids a piece of text (a BPE word, an SPM chunk) gave earlier in the same Encode call: its
  // (start, count) in the output. Natural text repeats its words, so each distinct piece is
  // merged once per call; the keys point into the call's text.
  using PieceCache = absl::flat_hash_map<absl::string_view, std::pair<uint32_t, uint32_t>>;
  // Appends the ids of `piece`: encode(piece, out) the first time, a copy of them after that.
  // Pieces longer than max_cached bytes are not remembered.
  template <typename EncodeFn>
  static void EncodeCached(absl::string_view piece, size_t max_cached, PieceCache& cache, std::vector<int32_t>& out,
                           EncodeFn&& encode) {
    if (piece.size() > max_cached) {
      encode(piece, out);
      return;
    }
    const auto [it, inserted] = cache.try_emplace(piece, static_cast<uint32_t>(out.size()), 0u);
    if (inserted) {
      encode(piece, out);
      it->second.second = static_cast<uint32_t>(out.size()) - it->second.first;
      return;
    }
    for (uint32_t k = 0; k < it->second.second; ++k) {
      const int32_t id = out[it->second.first + k];  // a copy: push_back may reallocate
      out.push_back(id);
    }
  }

  std::vector<std::string> tokens_;
  std::vector<int32_t> types_;
  std::vector<std::string> pieces_;  // PieceView(id, false), precomputed
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  SpecialTokens special_;
  int32_t bos_id_ = -1, eos_id_ = -1, eot_id_ = -1, unk_id_ = -1, pad_id_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  bool decode_strips_space_ = false;  // SPM with add_space_prefix
};

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_VOCAB_TOKENIZER_H_
