// runtime/tokenizer/: text <-> token ids. This folder owns the Tokenizer interface (this file),
// the GGUF vocab loader (tokenizer_loader.h), what the implementations share (special_tokens.h:
// special-token partition, end-of-generation set) and the implementations themselves: spm/
// (SentencePiece-style, `tokenizer.ggml.model = llama`) and bpe/ (byte-level BPE, `gpt2`); chat/
// renders chat templates. It may use runtime/gguf (the loaders only) and never runtime/model,
// hal or plugins.
//
// The model, sessions, the engine and the C API hold a `const Tokenizer&` and never name an
// implementation; LoadTokenizer (tokenizer_loader.h) reads a GGUF vocab and picks one.
//
// Semantics follow llama.cpp's llama_tokenize / llama_token_to_piece / llama_detokenize, since
// the golden files come from it.
//
// Thread-safety: implementations are immutable after creation; every method is const and safe to
// call concurrently.
#ifndef KESTREL_RUNTIME_TOKENIZER_TOKENIZER_H_
#define KESTREL_RUNTIME_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kestrel::runtime {

// GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
enum class VocabTokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // "spm", "bpe", ...: the implementation, for `kestrel info` and errors.
  virtual absl::string_view kind() const = 0;
  // The pre-tokenizer's name (BPE: tokenizer.ggml.pre as used); "" where the kind has none.
  virtual absl::string_view pre_tokenizer() const { return ""; }

  // Text (UTF-8, need not be valid) to ids: llama_tokenize(add_special, parse_special). With
  // add_special, BOS/EOS are added as the vocab says. USER_DEFINED token texts always become those
  // tokens; with parse_special, the texts of CONTROL and UNKNOWN tokens too.
  virtual std::vector<int32_t> Encode(absl::string_view text, bool add_special,
                                      bool parse_special) const = 0;

  // llama_token_to_piece(special): the bytes this token contributes to text. Without `special`,
  // CONTROL / UNKNOWN / UNUSED tokens contribute none (generated text); with it, CONTROL and
  // UNKNOWN tokens give their vocab text (how a prompt with specials reads). Out-of-range id: "".
  // The view lives as long as the tokenizer.
  virtual absl::string_view PieceView(int32_t id, bool special) const = 0;
  absl::string_view PieceView(int32_t id) const { return PieceView(id, /*special=*/false); }
  std::string TokenToPiece(int32_t id) const { return std::string(PieceView(id)); }

  // Concatenated pieces; with remove_leading_space, the space an SPM vocab's add_space_prefix put
  // in front of the first piece is dropped, so Decode(Encode(s, ...), true) == s.
  virtual std::string Decode(absl::Span<const int32_t> ids, bool remove_leading_space) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1: none
  virtual int32_t eos_id() const = 0;  // -1: none
  virtual int32_t unk_id() const = 0;  // -1: none
  virtual int32_t pad_id() const = 0;  // -1: none
  virtual bool add_bos() const = 0;
  virtual bool add_eos() const = 0;
  // True for every end-of-generation id (EOS, EOT, <|im_end|>, <end_of_turn>, ...), as llama.cpp
  // determines them (special_tokens.h).
  virtual bool IsEndOfGeneration(int32_t id) const = 0;
  // All of them, ascending.
  virtual const std::vector<int32_t>& EndOfGenerationIds() const = 0;
  // The GGUF token type (VocabTokenType as int); -1 for an out-of-range id.
  virtual int32_t TokenType(int32_t id) const = 0;
  // The token's vocab text as stored in the GGUF; empty for an out-of-range id.
  virtual const std::string& TokenText(int32_t id) const = 0;
  // Exact vocab text -> id; -1 if absent.
  virtual int32_t TextToToken(absl::string_view text) const = 0;
};

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_TOKENIZER_H_
