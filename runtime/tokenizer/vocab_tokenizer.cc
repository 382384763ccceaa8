#include "runtime/tokenizer/vocab_tokenizer.h"

namespace kestrel::runtime {

absl::string_view VocabTokenizer::PieceView(int32_t id, bool special) const {
  if (id < 0 || id >= vocab_size()) return {};
  if (special && (types_[id] == static_cast<int32_t>(VocabTokenType::kControl) ||
                  types_[id] == static_cast<int32_t>(VocabTokenType::kUnknown))) {
    return tokens_[id];
  }
  return pieces_[id];
}

std::string VocabTokenizer::Decode(absl::Span<const int32_t> ids, bool remove_leading_space) const {
  std::string text;
  bool strip = remove_leading_space && decode_strips_space_;
  for (const int32_t id : ids) {
    absl::string_view piece = PieceView(id, /*special=*/false);
    if (piece.empty()) continue;
    if (strip && piece[0] == ' ') piece.remove_prefix(1);
    strip = false;
    text.append(piece.data(), piece.size());
  }
  return text;
}

int32_t VocabTokenizer::TokenType(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return -1;
  return types_[id];
}

const std::string& VocabTokenizer::TokenText(int32_t id) const {
  static const std::string* const kEmpty = new std::string();
  if (id < 0 || id >= vocab_size()) return *kEmpty;
  return tokens_[id];
}

int32_t VocabTokenizer::TextToToken(absl::string_view text) const {
  const auto it = token_to_id_.find(text);
  return it == token_to_id_.end() ? -1 : it->second;
}

}  // namespace kestrel::runtime
