#include "runtime/tokenizer/special_tokens.h"

#include <algorithm>
#include <utility>

namespace kestrel::runtime {
namespace {

constexpr int32_t kControl = static_cast<int32_t>(VocabTokenType::kControl);
constexpr int32_t kUserDefined = static_cast<int32_t>(VocabTokenType::kUserDefined);
constexpr int32_t kUnknown = static_cast<int32_t>(VocabTokenType::kUnknown);

// llama.cpp's lists (llama-vocab.cpp, load): texts that name an end-of-turn token when the GGUF
// has no tokenizer.ggml.eot_token_id, and texts that end a generation. "</s>" is left out of the
// second: llama.cpp added it later for one model (PaddleOCR), while in Gemma 3's vocab it is an
// ordinary user-defined token (the HTML tag), which the reference (b4747) cuts out as such.
constexpr absl::string_view kEotTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
    "<end_of_utterance>"};
constexpr absl::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~["};

bool Contains(absl::Span<const absl::string_view> list, absl::string_view text) {
  return std::find(list.begin(), list.end(), text) != list.end();
}

bool IsCSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// The id llama.cpp picks for a text-detected special (it walks a hash map, so among several
// matches its choice is arbitrary): the lowest matching id, deterministically.
int32_t FindByText(const std::vector<std::string>& tokens, absl::Span<const absl::string_view> texts) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (Contains(texts, tokens[i])) return static_cast<int32_t>(i);
  }
  return -1;
}

}  // namespace

SpecialTokens SpecialTokens::Build(const std::vector<std::string>& tokens, std::vector<int32_t>& types,
                                   SpecialIds* ids) {
  SpecialTokens s;
  auto make_control = [&](int32_t id) {
    if (id >= 0 && types[id] != kControl) types[id] = kControl;
  };
  if (ids->eot_id < 0) {
    ids->eot_id = FindByText(tokens, kEotTexts);
    make_control(ids->eot_id);
  }
  if (ids->eom_id < 0) {
    ids->eom_id = FindByText(tokens, {"<|eom_id|>"});
    make_control(ids->eom_id);
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (Contains(kEogTexts, tokens[i])) {
      s.eog_.insert(static_cast<int32_t>(i));
      make_control(static_cast<int32_t>(i));
    }
  }
  for (int32_t id : {ids->eos_id, ids->eot_id, ids->eom_id}) {
    if (id >= 0) s.eog_.insert(id);
  }
  // gpt-oss (o200k_harmony) and solar-open: <|end|> separates turns there and does not end a
  // generation.
  const int32_t ret = FindByText(tokens, {"<|return|>"});
  const int32_t call = FindByText(tokens, {"<|call|>", "<|calls|>"});
  const int32_t flush = FindByText(tokens, {"<|flush|>"});
  const int32_t end = FindByText(tokens, {"<|end|>"});
  if (end >= 0 && call >= 0 && (ret >= 0 || flush >= 0)) {
    s.eog_.erase(end);
    types[end] = kUserDefined;
  }
  s.eog_sorted_.assign(s.eog_.begin(), s.eog_.end());
  std::sort(s.eog_sorted_.begin(), s.eog_sorted_.end());

  // The partition candidates: CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first.
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = types[i];
    if (t != kControl && t != kUserDefined && t != kUnknown) continue;
    if (tokens[i].empty()) continue;
    Candidate c;
    c.id = static_cast<int32_t>(i);
    c.length = static_cast<uint32_t>(tokens[i].size());
    c.user_defined = t == kUserDefined;
    c.lstrip = false;
    // llama.cpp: RSTRIP on every special token of Phi-3 except <unk>, <s> and <|endoftext|>.
    c.rstrip = ids->phi3_rstrip && tokens[i] != "<unk>" && tokens[i] != "<s>" && tokens[i] != "<|endoftext|>";
    s.candidates_.push_back(c);
  }
  std::stable_sort(s.candidates_.begin(), s.candidates_.end(),
                   [](const Candidate& a, const Candidate& b) { return a.length > b.length; });

  for (size_t ci = 0; ci < s.candidates_.size(); ++ci) {
    const std::string& text = tokens[s.candidates_[ci].id];
    s.all_.Add(text, static_cast<int32_t>(ci));
    if (s.candidates_[ci].user_defined) s.user_.Add(text, static_cast<int32_t>(ci));
  }
  return s;
}

void SpecialTokens::Trie::Add(absl::string_view text, int32_t candidate) {
  if (root.empty()) {
    root.assign(256, -1);
    terminal.push_back(-1);  // node 0: the root
  }
  empty = false;
  int32_t node = 0;
  for (size_t k = 0; k < text.size(); ++k) {
    const uint8_t b = static_cast<uint8_t>(text[k]);
    int32_t next = node == 0 ? root[b] : Child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(terminal.size());
      terminal.push_back(-1);
      if (node == 0) {
        root[b] = next;
      } else {
        edges[(static_cast<uint64_t>(node) << 8) | b] = next;
      }
    }
    node = next;
  }
  // A text shared by several ids: the first in priority order wins.
  if (terminal[node] < 0) terminal[node] = candidate;
  const uint8_t b0 = static_cast<uint8_t>(text[0]);
  if (text.size() == 1) {
    single[b0 >> 6] |= uint64_t{1} << (b0 & 63);
  } else {
    const uint32_t key = (uint32_t{b0} << 8) | static_cast<uint8_t>(text[1]);
    first2[key >> 6] |= uint64_t{1} << (key & 63);
  }
}

int32_t SpecialTokens::Trie::Child(int32_t node, uint8_t byte) const {
  const auto it = edges.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges.end() ? -1 : it->second;
}

void SpecialTokens::Trie::FindAll(absl::string_view text, std::vector<std::pair<uint32_t, uint32_t>>* found) const {
  const size_t n = text.size();
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b0 = bytes[i];
    const bool one = (single[b0 >> 6] >> (b0 & 63)) & 1;
    bool two = false;
    if (i + 1 < n) {
      const uint32_t key = (uint32_t{b0} << 8) | bytes[i + 1];
      two = (first2[key >> 6] >> (key & 63)) & 1;
    }
    if (!one && !two) continue;
    int32_t node = root[b0];
    for (size_t j = i + 1; node >= 0; ++j) {
      if (terminal[node] >= 0) found->emplace_back(static_cast<uint32_t>(terminal[node]), static_cast<uint32_t>(i));
      if (j == n) break;
      node = Child(node, bytes[j]);
    }
  }
}

void SpecialTokens::Split(absl::string_view text, bool parse_special, std::vector<TextFragment>* out) const {
  if (text.empty()) return;
  const Trie& trie = parse_special ? all_ : user_;
  if (trie.empty) {
    out->push_back({-1, text});
    return;
  }
  // Every occurrence of every enabled candidate: (candidate index, start).
  std::vector<std::pair<uint32_t, uint32_t>> found;
  trie.FindAll(text, &found);
  if (found.empty()) {
    out->push_back({-1, text});
    return;
  }
  // Replay llama.cpp's token-by-token passes: in priority order, an occurrence is cut out when
  // all its bytes are still ordinary text (an earlier cut of the same token, or of a longer one,
  // would otherwise overlap it). Stripped whitespace is dropped, as llama.cpp drops it. The scan
  // found starts in ascending order, so a stable sort by candidate gives (priority, start) order.
  if (found.size() < 256) {
    std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  } else {  // counting sort by candidate
    std::vector<uint32_t> first(candidates_.size() + 1, 0);
    for (const auto& f : found) ++first[f.first + 1];
    for (size_t c = 1; c < first.size(); ++c) first[c] += first[c - 1];
    std::vector<std::pair<uint32_t, uint32_t>> sorted(found.size());
    for (const auto& f : found) sorted[first[f.first]++] = f;
    found.swap(sorted);
  }
  const size_t n = text.size();
  enum : uint8_t { kText = 0, kToken = 1, kDropped = 2 };
  std::vector<uint8_t> state(n, kText);
  std::vector<std::pair<uint32_t, int32_t>> cuts;  // (start, candidate index)
  for (const auto& [ci, start] : found) {
    const Candidate& c = candidates_[ci];
    const uint32_t end = start + c.length;
    if (std::any_of(state.begin() + start, state.begin() + end, [](uint8_t s) { return s != kText; })) continue;
    std::fill(state.begin() + start, state.begin() + end, kToken);
    cuts.emplace_back(start, static_cast<int32_t>(ci));
    if (c.rstrip) {
      for (size_t k = end; k < n && state[k] == kText && IsCSpace(text[k]); ++k) state[k] = kDropped;
    }
    if (c.lstrip) {
      for (size_t k = start; k > 0 && state[k - 1] == kText && IsCSpace(text[k - 1]); --k) state[k - 1] = kDropped;
    }
  }
  std::sort(cuts.begin(), cuts.end());
  size_t pos = 0;
  auto flush_text = [&](size_t until) {
    while (pos < until) {
      while (pos < until && state[pos] == kDropped) ++pos;
      const size_t begin = pos;
      while (pos < until && state[pos] == kText) ++pos;
      if (pos > begin) out->push_back({-1, text.substr(begin, pos - begin)});
    }
  };
  for (const auto& [start, ci] : cuts) {
    flush_text(start);
    out->push_back({candidates_[ci].id, text.substr(start, candidates_[ci].length)});
    pos = start + candidates_[ci].length;
  }
  flush_text(n);
}

}  // namespace kestrel::runtime
