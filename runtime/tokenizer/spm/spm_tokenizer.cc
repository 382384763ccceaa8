#include "runtime/tokenizer/spm/spm_tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace kestrel::runtime {
namespace {

constexpr absl::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 '▁'

// UTF-8 sequence length from the high nibble of the lead byte. Continuation bytes (0x8_..0xB_) count
// as 1. This is llama.cpp's unicode_len_utf8 table: it never looks at the following bytes.
constexpr uint8_t kUtf8LenByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Parses "<0xAB>" into 0xAB; -1 if `text` has another shape.
int ParseByteToken(absl::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  const int hi = HexDigit(text[3]);
  const int lo = HexDigit(text[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

bool IdValidOrAbsent(int32_t id, size_t n) { return id == -1 || (id >= 0 && static_cast<size_t>(id) < n); }

// One symbol of the text being tokenized: a byte range of the escaped text in a doubly linked list.
// A symbol merged into its left neighbour keeps n == 0.
struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;
  uint32_t n;
};

// A candidate merge of two adjacent symbols. It is stale (skipped when popped) once either side has
// changed, which the byte size detects: symbols only ever grow by absorbing their right neighbour.
struct Bigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;
};

// Max-heap order: higher score first, then the leftmost pair (llama.cpp's llm_bigram_spm comparator).
struct BigramLess {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<SpmTokenizer>> SpmTokenizer::Create(SpmVocab vocab) {
  const size_t n = vocab.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("SpmVocab.tokens is empty");
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat("SpmVocab.tokens has ", n, " entries, more than INT32_MAX"));
  }
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("SpmVocab.scores has ", vocab.scores.size(),
                                                   " entries but tokens has ", n));
  }
  if (!vocab.token_types.empty() && vocab.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("SpmVocab.token_types has ", vocab.token_types.size(),
                                                   " entries but tokens has ", n));
  }
  const struct {
    const char* name;
    int32_t id;
  } ids[] = {{"bos_id", vocab.bos_id}, {"eos_id", vocab.eos_id}, {"unk_id", vocab.unk_id},
             {"pad_id", vocab.pad_id}, {"eot_id", vocab.eot_id}};
  for (const auto& [name, id] : ids) {
    if (!IdValidOrAbsent(id, n)) {
      return absl::InvalidArgumentError(
          absl::StrCat("SpmVocab.", name, " = ", id, " is neither -1 nor an id in [0, ", n, ")"));
    }
  }
  if (vocab.add_bos && vocab.bos_id == -1) {
    return absl::InvalidArgumentError("SpmVocab.add_bos is set but bos_id is -1");
  }
  if (vocab.add_eos && vocab.eos_id == -1) {
    return absl::InvalidArgumentError("SpmVocab.add_eos is set but eos_id is -1");
  }
  if (vocab.scores.empty()) vocab.scores.assign(n, 0.0f);
  if (vocab.token_types.empty()) vocab.token_types.assign(n, static_cast<int32_t>(SpmTokenType::kNormal));

  std::unique_ptr<SpmTokenizer> t(new SpmTokenizer());
  t->pieces_.resize(n);
  t->token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t type = vocab.token_types[i];
    if (type < 0 || type > static_cast<int32_t>(SpmTokenType::kByte)) {
      return absl::InvalidArgumentError(
          absl::StrCat("SpmVocab.token_types[", i, "] = ", type, " is not a token type (0..6)"));
    }
    if (std::isnan(vocab.scores[i])) {
      return absl::InvalidArgumentError(absl::StrCat("SpmVocab.scores[", i, "] is NaN"));
    }
    std::string& text = vocab.tokens[i];
    if (text.empty()) text = absl::StrCat("[EMPTY_", i, "]");  // llama.cpp's rename
    const int32_t id = static_cast<int32_t>(i);
    t->token_to_id_[text] = id;  // a duplicated text maps to its last id, as in llama.cpp
    t->max_token_len_ = std::max(t->max_token_len_, text.size());
    switch (static_cast<SpmTokenType>(type)) {
      case SpmTokenType::kNormal:
        t->pieces_[i] = absl::StrReplaceAll(text, {{kSpaceMarker, " "}});
        break;
      case SpmTokenType::kUserDefined:
        t->pieces_[i] = text;
        break;
      case SpmTokenType::kByte: {
        const int byte = ParseByteToken(text);
        if (byte < 0) {
          return absl::InvalidArgumentError(absl::StrCat("SpmVocab.tokens[", i, "] = \"", absl::CHexEscape(text),
                                                         "\" has type BYTE but is not of the form <0xXX>"));
        }
        t->pieces_[i] = std::string(1, static_cast<char>(byte));
        break;
      }
      default:  // CONTROL, UNKNOWN, UNUSED, UNDEFINED print nothing with special=false
        break;
    }
  }

  // Byte fallback, as llama.cpp's byte_to_token: "<0xXX>" (upper-case hex, any token type), else the
  // token whose text is that one byte (never for 0x00, whose C string is empty), else unk.
  for (int b = 0; b < 256; ++b) {
    const std::string name = absl::StrFormat("<0x%02X>", b);
    auto it = t->token_to_id_.find(name);
    if (it != t->token_to_id_.end()) {
      t->byte_to_token_[b] = it->second;
      continue;
    }
    t->missing_byte_tokens_.push_back(static_cast<uint8_t>(b));
    if (b != 0) {
      it = t->token_to_id_.find(std::string(1, static_cast<char>(b)));
      if (it != t->token_to_id_.end()) {
        t->byte_to_token_[b] = it->second;
        continue;
      }
    }
    if (vocab.unk_id == -1) {
      return absl::InvalidArgumentError(
          absl::StrFormat("SpmVocab has no token <0x%02X> nor a single-byte token for byte 0x%02X, and unk_id is "
                          "-1, so byte fallback has nothing to emit",
                          b, b));
    }
    t->byte_to_token_[b] = vocab.unk_id;
  }

  SpecialIds special_ids;
  special_ids.eos_id = vocab.eos_id;
  special_ids.eot_id = vocab.eot_id;
  special_ids.eom_id = vocab.eom_id;
  special_ids.phi3_rstrip = vocab.phi3_rstrip;
  t->special_ = SpecialTokens::Build(vocab.tokens, vocab.token_types, &special_ids);
  vocab.eot_id = special_ids.eot_id;
  for (size_t i = 0; i < n; ++i) {
    // Types the fix-ups changed: CONTROL prints nothing in generated text, USER_DEFINED its text.
    if (vocab.token_types[i] == static_cast<int32_t>(SpmTokenType::kControl)) t->pieces_[i].clear();
    if (vocab.token_types[i] == static_cast<int32_t>(SpmTokenType::kUserDefined)) t->pieces_[i] = vocab.tokens[i];
  }

  for (size_t i = 0; i < n; ++i) {
    // User-defined texts never reach the merge loop: the special-token partition cuts them out.
    if (vocab.token_types[i] == static_cast<int32_t>(SpmTokenType::kUserDefined)) continue;
    const std::string& text = vocab.tokens[i];
    absl::string_view prev;
    for (size_t offs = 0; offs < text.size();) {
      const size_t len = std::min<size_t>(kUtf8LenByHighNibble[static_cast<uint8_t>(text[offs]) >> 4], text.size() - offs);
      const absl::string_view symbol(text.data() + offs, len);
      if (offs > 0 && symbol == kSpaceMarker) {
        if (prev.size() == 1) {
          t->joined_byte_[static_cast<uint8_t>(prev[0])] = true;
        } else if (prev == kSpaceMarker) {
          t->joined_space_ = true;
        } else {
          t->joined_other_.insert(std::string(prev));
        }
      }
      prev = symbol;
      offs += len;
    }
  }

  t->tokens_ = std::move(vocab.tokens);
  t->scores_ = std::move(vocab.scores);
  t->types_ = std::move(vocab.token_types);
  t->bos_id_ = vocab.bos_id;
  t->eos_id_ = vocab.eos_id;
  t->eot_id_ = vocab.eot_id;
  t->unk_id_ = vocab.unk_id;
  t->pad_id_ = vocab.pad_id;
  t->add_bos_ = vocab.add_bos;
  t->add_eos_ = vocab.add_eos;
  t->add_space_prefix_ = vocab.add_space_prefix;
  t->decode_strips_space_ = vocab.add_space_prefix;
  return t;
}

std::vector<int32_t> SpmTokenizer::Encode(absl::string_view text, bool add_special,
                                          bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_) out.push_back(bos_id_);

  std::vector<TextFragment> fragments;
  special_.Split(text, parse_special, &fragments);

  // Every text run escaped into one buffer first (a space prefix where llama.cpp adds one, spaces
  // as U+2581), so the chunk cache's keys can point into it for the whole call.
  struct Run {
    int32_t token;  // >= 0: a special token; -1: escaped[begin, end)
    size_t begin, end;
  };
  std::vector<Run> runs;
  std::string escaped;
  escaped.reserve(text.size() + text.size() / 4 + 8);
  bool prev_special = true;  // the first run gets the space prefix, like a run after a special token
  for (const TextFragment& f : fragments) {
    if (f.token >= 0) {
      runs.push_back({f.token, 0, 0});
      prev_special = true;
      continue;
    }
    const size_t begin = escaped.size();
    if (add_space_prefix_ && prev_special) escaped.append(kSpaceMarker.data(), kSpaceMarker.size());
    for (absl::string_view rest = f.text; !rest.empty();) {
      const size_t space = rest.find(' ');
      escaped.append(rest.data(), std::min(space, rest.size()));
      if (space == absl::string_view::npos) break;
      escaped.append(kSpaceMarker.data(), kSpaceMarker.size());
      rest.remove_prefix(space + 1);
    }
    runs.push_back({-1, begin, escaped.size()});
    prev_special = false;
  }
  PieceCache cache;
  const absl::string_view all(escaped);
  for (const Run& r : runs) {
    if (r.token >= 0) {
      out.push_back(r.token);
    } else {
      EncodeRun(all.substr(r.begin, r.end - r.begin), out, cache);
    }
  }

  if (add_special && add_eos_) out.push_back(eos_id_);
  return out;
}

// Why chunks are exact: a merge joins two adjacent symbols into a vocab token, so a symbol never
// spans a position that no vocab token can span; the two sides of such a position then evolve
// independently, and the highest-score-first order (ties leftmost) merges each side exactly as
// it would alone. A token can only span the start p of a U+2581 symbol if it holds U+2581 after
// the symbol that precedes p, i.e. if that symbol is in joined_before_space_. Symbols are found
// left to right by lead byte, exactly as in the merge loop, so p is a symbol start there too.
// Chunks repeat (words), so each chunk's ids are computed once per Encode call.
void SpmTokenizer::EncodeRun(absl::string_view s, std::vector<int32_t>& out, PieceCache& cache) const {
  size_t chunk_start = 0;
  absl::string_view prev;
  auto encode_chunk = [this](absl::string_view chunk, std::vector<int32_t>& ids) { EncodeChunk(chunk, ids); };
  auto emit = [&](size_t end) {
    const absl::string_view chunk = s.substr(chunk_start, end - chunk_start);
    chunk_start = end;
    if (!chunk.empty()) EncodeCached(chunk, kMaxCachedChunk, cache, out, encode_chunk);
  };
  for (size_t offs = 0; offs < s.size();) {
    const size_t len = std::min<size_t>(kUtf8LenByHighNibble[static_cast<uint8_t>(s[offs]) >> 4], s.size() - offs);
    const absl::string_view symbol = s.substr(offs, len);
    if (offs > 0 && len == 3 && symbol == kSpaceMarker && !JoinedBeforeSpace(prev)) emit(offs);
    prev = symbol;
    offs += len;
  }
  emit(s.size());
}

bool SpmTokenizer::JoinedBeforeSpace(absl::string_view symbol) const {
  if (symbol.size() == 1) return joined_byte_[static_cast<uint8_t>(symbol[0])];
  if (symbol == kSpaceMarker) return joined_space_;
  return !joined_other_.empty() && joined_other_.contains(symbol);
}

void SpmTokenizer::EmitPiece(absl::string_view piece, std::vector<int32_t>& out) const {
  const auto it = token_to_id_.find(piece);
  if (it != token_to_id_.end()) {
    out.push_back(it->second);
  } else {
    for (const char c : piece) out.push_back(byte_to_token_[static_cast<uint8_t>(c)]);
  }
}

// EncodeChunk for a chunk of at most kShortChunk symbols, on arrays: each round merges the
// leftmost pair of the highest score (what the heap below pops first).
bool SpmTokenizer::EncodeShortChunk(absl::string_view s, std::vector<int32_t>& out) const {
  struct Sym {
    uint32_t start, n;
    int32_t id;  // the token a merge made, -1 for an unmerged character
  };
  Sym sym[kShortChunk];
  float score[kShortChunk];  // pair i: sym[i] + sym[i + 1]
  int32_t pair_id[kShortChunk];
  int32_t n = 0;
  for (size_t offs = 0; offs < s.size();) {
    if (n == kShortChunk) return false;
    const size_t len = std::min<size_t>(kUtf8LenByHighNibble[static_cast<uint8_t>(s[offs]) >> 4], s.size() - offs);
    sym[n++] = {static_cast<uint32_t>(offs), static_cast<uint32_t>(len), -1};
    offs += len;
  }
  auto lookup = [&](int32_t i) {
    pair_id[i] = -1;
    const size_t size = sym[i].n + sym[i + 1].n;
    if (size > max_token_len_) return;  // cannot be a token; skips the hash lookup
    const auto it = token_to_id_.find(s.substr(sym[i].start, size));
    if (it == token_to_id_.end()) return;
    pair_id[i] = it->second;
    score[i] = scores_[it->second];
  };
  for (int32_t i = 0; i + 1 < n; ++i) lookup(i);
  while (n > 1) {
    int32_t best = -1;
    for (int32_t i = 0; i + 1 < n; ++i) {
      if (pair_id[i] >= 0 && (best < 0 || score[i] > score[best])) best = i;
    }
    if (best < 0) break;
    sym[best].n += sym[best + 1].n;
    sym[best].id = pair_id[best];
    for (int32_t i = best + 1; i + 1 < n; ++i) sym[i] = sym[i + 1];
    for (int32_t i = best + 1; i + 2 < n; ++i) {
      pair_id[i] = pair_id[i + 1];
      score[i] = score[i + 1];
    }
    --n;
    if (best + 1 < n) lookup(best);
    if (best > 0) lookup(best - 1);
  }
  for (int32_t i = 0; i < n; ++i) {
    if (sym[i].id >= 0) {
      out.push_back(sym[i].id);
    } else {
      EmitPiece(s.substr(sym[i].start, sym[i].n), out);
    }
  }
  return true;
}

void SpmTokenizer::EncodeChunk(absl::string_view s, std::vector<int32_t>& out) const {
  if (s.empty()) return;
  if (s.size() <= 4 * kShortChunk && EncodeShortChunk(s, out)) return;
  std::vector<Symbol> symbols;
  symbols.reserve(s.size());
  for (size_t offs = 0; offs < s.size();) {
    const size_t len = std::min<size_t>(kUtf8LenByHighNibble[static_cast<uint8_t>(s[offs]) >> 4], s.size() - offs);
    const int32_t index = static_cast<int32_t>(symbols.size());
    offs += len;
    symbols.push_back({index - 1, offs == s.size() ? -1 : index + 1, static_cast<uint32_t>(offs - len),
                       static_cast<uint32_t>(len)});
  }

  std::vector<Bigram> heap_storage;
  heap_storage.reserve(symbols.size());
  std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue(BigramLess(), std::move(heap_storage));
  auto try_add_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].n + symbols[right].n;
    if (size > max_token_len_) return;  // cannot be a token; skips the hash lookup
    const auto it = token_to_id_.find(s.substr(symbols[left].start, size));
    if (it == token_to_id_.end()) return;
    queue.push({scores_[it->second], left, right, static_cast<uint32_t>(size)});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add_bigram(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size) continue;  // stale
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add_bigram(left.prev, bigram.left);
    try_add_bigram(bigram.left, left.next);
  }

  // Every merged symbol is a vocab token by construction (a pair is queued only if its concatenation
  // is one), so a symbol that misses the vocab is a single unmerged character and goes out as bytes.
  // That is why llama.cpp's resegment() never reaches its merge-history branch with this merge rule,
  // and why there is no merge history here; it would matter only if merges skipped some tokens (as
  // SentencePiece does for UNUSED ones, which llama.cpp does not).
  for (int32_t i = 0; i != -1; i = symbols[i].next) EmitPiece(s.substr(symbols[i].start, symbols[i].n), out);
}

float SpmTokenizer::TokenScore(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return 0.0f;
  return scores_[id];
}


}  // namespace kestrel::runtime
