#include "runtime/tokenizer/bpe/bpe_tokenizer.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <queue>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/bpe/byte_level.h"

namespace kestrel::runtime {
namespace {

constexpr int32_t kNormal = static_cast<int32_t>(VocabTokenType::kNormal);
constexpr int32_t kUserDefined = static_cast<int32_t>(VocabTokenType::kUserDefined);
constexpr int32_t kByte = static_cast<int32_t>(VocabTokenType::kByte);

// Words up to this many bytes are remembered within one Encode call: natural text repeats its
// words, and a hit skips both the byte-level spelling and the merges.
constexpr size_t kMaxCachedWord = 48;

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// A candidate merge of adjacent symbols `left` and `right` (indices into the word's symbols); it
// is stale once either symbol has changed (their symbol ids no longer match).
struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_symbol;
  int32_t right_symbol;
  int32_t result;
};
// Min-heap on rank, then on the left position (llama.cpp's llm_bigram_bpe comparator).
struct BigramAfter {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

struct WordSymbol {
  int32_t symbol;  // -1 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

absl::Status CheckId(const char* key, int32_t id, size_t n) {
  if (id == -1 || (id >= 0 && static_cast<size_t>(id) < n)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer.ggml.", key, " = ", id, " is outside the vocab of ", n, " tokens"));
}

}  // namespace

int32_t BpeTokenizer::SymbolFor(const std::string& text) {
  const auto it = token_to_id_.find(text);
  if (it != token_to_id_.end()) return it->second;
  const auto [extra, inserted] =
      extra_to_symbol_.try_emplace(text, vocab_size() + static_cast<int32_t>(extra_symbols_.size()));
  if (inserted) extra_symbols_.push_back(text);
  return extra->second;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(BpeVocab vocab) {
  const size_t n = vocab.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("tokenizer.ggml.tokens is empty");
  if (n >= static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2)) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.ggml.tokens has ", n, " entries, too many"));
  }
  if (!vocab.token_types.empty() && vocab.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.ggml.token_type has ", vocab.token_types.size(),
                                                   " entries but tokenizer.ggml.tokens has ", n));
  }
  if (vocab.token_types.empty()) vocab.token_types.assign(n, kNormal);
  for (const auto& [key, id] : {std::pair{"bos_token_id", vocab.bos_id}, std::pair{"eos_token_id", vocab.eos_id},
                                std::pair{"unknown_token_id", vocab.unk_id}, std::pair{"padding_token_id", vocab.pad_id},
                                std::pair{"eot_token_id", vocab.eot_id}, std::pair{"eom_token_id", vocab.eom_id}}) {
    if (auto s = CheckId(key, id, n); !s.ok()) return s;
  }
  absl::StatusOr<std::unique_ptr<PreTokenizer>> pre = PreTokenizer::Create(vocab.pre);
  if (!pre.ok()) return pre.status();

  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  t->pre_ = std::move(*pre);
  t->add_bos_ = vocab.add_bos.value_or(t->pre_->add_bos_default());
  t->add_eos_ = vocab.add_eos;
  if (t->add_bos_ && vocab.bos_id == -1) {
    return absl::InvalidArgumentError("tokenizer.ggml.add_bos_token is true but there is no tokenizer.ggml.bos_token_id");
  }
  if (t->add_eos_ && vocab.eos_id == -1) {
    return absl::InvalidArgumentError("tokenizer.ggml.add_eos_token is true but there is no tokenizer.ggml.eos_token_id");
  }
  t->token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t type = vocab.token_types[i];
    if (type < 0 || type > kByte) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.ggml.token_type[", i, "] = ", type, " is not a token type (0..6)"));
    }
    if (vocab.tokens[i].empty()) vocab.tokens[i] = absl::StrCat("[EMPTY_", i, "]");  // llama.cpp's rename
    t->token_to_id_[vocab.tokens[i]] = static_cast<int32_t>(i);  // a duplicate maps to its last id
  }

  SpecialIds special_ids;
  special_ids.eos_id = vocab.eos_id;
  special_ids.eot_id = vocab.eot_id;
  special_ids.eom_id = vocab.eom_id;
  special_ids.phi3_rstrip = vocab.phi3_rstrip;
  t->special_ = SpecialTokens::Build(vocab.tokens, vocab.token_types, &special_ids);
  t->eot_id_ = special_ids.eot_id;

  t->pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = vocab.tokens[i];
    switch (vocab.token_types[i]) {
      case kNormal:
        t->pieces_[i] = ByteLevelDecode(text);
        break;
      case kUserDefined:
        t->pieces_[i] = text;
        break;
      case kByte:
        if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>' && HexDigit(text[3]) >= 0 &&
            HexDigit(text[4]) >= 0) {
          t->pieces_[i] = std::string(1, static_cast<char>(HexDigit(text[3]) * 16 + HexDigit(text[4])));
        } else {
          t->pieces_[i] = ByteLevelDecode(text);
        }
        break;
      default:  // CONTROL, UNKNOWN, UNUSED, UNDEFINED print nothing in generated text
        break;
    }
  }
  t->tokens_ = std::move(vocab.tokens);
  t->types_ = std::move(vocab.token_types);

  for (int b = 0; b < 256; ++b) t->byte_symbol_[b] = t->SymbolFor(std::string(ByteLevelChar(static_cast<uint8_t>(b))));
  t->merges_.reserve(vocab.merges.size());
  for (size_t i = 0; i < vocab.merges.size(); ++i) {
    const std::string& entry = vocab.merges[i];
    // llama.cpp splits at the first space after the first byte (a merge's left side may be " ").
    const size_t space = entry.size() < 2 ? std::string::npos : entry.find(' ', 1);
    if (space == std::string::npos || space + 1 >= entry.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.ggml.merges[", i, "] = \"", absl::CHexEscape(entry),
                                                     "\" is not two symbols separated by a space"));
    }
    const std::string left = entry.substr(0, space), right = entry.substr(space + 1);
    const int32_t l = t->SymbolFor(left), r = t->SymbolFor(right);
    const int32_t result = t->SymbolFor(left + right);
    t->merges_.emplace(PairKey(l, r), Merge{static_cast<int32_t>(i), result});  // the first rank wins
  }
  t->extra_to_symbol_.clear();  // only Create looks texts up
  t->bos_id_ = vocab.bos_id;
  t->eos_id_ = vocab.eos_id;
  t->unk_id_ = vocab.unk_id;
  t->pad_id_ = vocab.pad_id;
  return t;
}

std::vector<int32_t> BpeTokenizer::Encode(absl::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_id_);
  std::vector<TextFragment> fragments;
  special_.Split(text, parse_special, &fragments);
  std::vector<absl::string_view> words;
  words.reserve(text.size() / 4 + 1);
  // word -> where its ids already sit in `out` (start, count)
  PieceCache seen;
  // Runs rewritten by CanonicalUtf8 (kept alive: words and cache keys point into them).
  std::deque<std::string> canonical;
  auto encode_word = [this](absl::string_view word, std::vector<int32_t>& ids) { EncodeWord(word, ids); };
  for (const TextFragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      continue;
    }
    words.clear();
    canonical.emplace_back();
    pre_->Split(CanonicalUtf8(f.text, &canonical.back()), &words);
    for (absl::string_view word : words) EncodeCached(word, kMaxCachedWord, seen, out, encode_word);
  }
  if (add_special && add_eos_) out.push_back(eos_id_);
  return out;
}

void BpeTokenizer::EncodeWord(absl::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (pre_->ignore_merges()) {
    std::string spelled;
    ByteLevelEncode(word, &spelled);
    const auto it = token_to_id_.find(spelled);
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() == 1) {
    EmitSymbol(byte_symbol_[static_cast<uint8_t>(word[0])], out);
    return;
  }
  if (word.size() <= kShortWord) {
    EncodeShortWord(word, out);
    return;
  }
  const int32_t n = static_cast<int32_t>(word.size());
  std::vector<WordSymbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_symbol_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Bigram, std::vector<Bigram>, BigramAfter> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const auto it = merges_.find(PairKey(symbols[left].symbol, symbols[right].symbol));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, symbols[left].symbol, symbols[right].symbol, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_add(i, i + 1);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    WordSymbol& left = symbols[b.left];
    WordSymbol& right = symbols[b.right];
    if (left.symbol != b.left_symbol || right.symbol != b.right_symbol || left.next != b.right) continue;  // stale
    left.symbol = b.result;
    right.symbol = -1;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) EmitSymbol(symbols[i].symbol, out);
}

// The same merges for a short word, on arrays: each round takes the leftmost pair of the lowest
// rank (what the heap above pops first) and removes the merged symbol's right neighbour.
void BpeTokenizer::EncodeShortWord(absl::string_view word, std::vector<int32_t>& out) const {
  constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  int32_t symbol[kShortWord];
  Merge pair[kShortWord];  // pair[i]: merging symbol[i] and symbol[i + 1]
  int32_t n = static_cast<int32_t>(word.size());
  for (int32_t i = 0; i < n; ++i) symbol[i] = byte_symbol_[static_cast<uint8_t>(word[i])];
  auto lookup = [&](int32_t i) {
    const auto it = merges_.find(PairKey(symbol[i], symbol[i + 1]));
    pair[i] = it == merges_.end() ? Merge{kNone, -1} : it->second;
  };
  for (int32_t i = 0; i + 1 < n; ++i) lookup(i);
  while (n > 1) {
    int32_t best = 0;
    for (int32_t i = 1; i + 1 < n; ++i) {
      if (pair[i].rank < pair[best].rank) best = i;
    }
    if (pair[best].rank == kNone) break;
    symbol[best] = pair[best].result;
    for (int32_t i = best + 1; i + 1 < n; ++i) symbol[i] = symbol[i + 1];
    for (int32_t i = best + 1; i + 2 < n; ++i) pair[i] = pair[i + 1];
    --n;
    if (best + 1 < n) lookup(best);
    if (best > 0) lookup(best - 1);
  }
  for (int32_t i = 0; i < n; ++i) EmitSymbol(symbol[i], out);
}

void BpeTokenizer::EmitSymbol(int32_t symbol, std::vector<int32_t>& out) const {
  if (symbol < vocab_size()) {
    out.push_back(symbol);
    return;
  }
  // Not a token (a vocab without this byte, or a merge whose result it lacks): llama.cpp emits
  // the single-byte tokens of its spelling that exist and drops the rest.
  for (const char c : extra_symbols_[symbol - vocab_size()]) {
    const auto it = token_to_id_.find(absl::string_view(&c, 1));
    if (it != token_to_id_.end()) out.push_back(it->second);
  }
}

}  // namespace kestrel::runtime
