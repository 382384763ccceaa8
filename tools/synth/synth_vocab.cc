#include "tools/synth/synth_vocab.h"

#include <cstdio>
#include <string_view>
#include <unordered_set>

namespace kestrel::synth {
namespace {

constexpr char kSpace[] = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space
constexpr int32_t kTypeNormal = 1, kTypeUnknown = 2, kTypeControl = 3, kTypeByte = 6;

class Builder {
 public:
  explicit Builder(uint32_t size) : size_(size) {}
  bool full() const { return v_.tokens.size() >= size_; }
  void Add(std::string text, int32_t type, float score) {
    if (full() || !seen_.insert(text).second) return;
    v_.tokens.push_back(std::move(text));
    v_.token_types.push_back(type);
    v_.scores.push_back(score);
  }
  void Piece(std::string text) { Add(std::move(text), kTypeNormal, -static_cast<float>(pieces_++)); }
  SynthVocab Take() { return std::move(v_); }

 private:
  uint32_t size_;
  uint32_t pieces_ = 0;
  SynthVocab v_;
  std::unordered_set<std::string> seen_;
};

// Appends every lowercase string of length `len` (in lexicographic order), optionally after '▁',
// until the vocab is full.
void AddNgrams(Builder* b, int len, bool with_space) {
  std::string s(len, 'a');
  while (!b->full()) {
    b->Piece(with_space ? kSpace + s : s);
    int i = len - 1;
    while (i >= 0 && s[i] == 'z') s[i--] = 'a';
    if (i < 0) return;
    ++s[i];
  }
}

}  // namespace

SynthVocab BuildSynthVocab(uint32_t size) {
  if (size < kMinVocab) size = kMinVocab;
  Builder b(size);
  b.Add("<unk>", kTypeUnknown, 0.0f);
  b.Add("<s>", kTypeControl, 0.0f);
  b.Add("</s>", kTypeControl, 0.0f);
  for (int byte = 0; byte < 256; ++byte) {
    char text[8];
    std::snprintf(text, sizeof text, "<0x%02X>", byte);
    b.Add(text, kTypeByte, 0.0f);
  }
  std::string alnum;
  for (char c = 'a'; c <= 'z'; ++c) alnum.push_back(c);
  for (char c = 'A'; c <= 'Z'; ++c) alnum.push_back(c);
  for (char c = '0'; c <= '9'; ++c) alnum.push_back(c);
  const std::string_view punct = ".,!?'\"-:;()[]/&%$#@*+=<>_~`^{}|\\";
  b.Piece(kSpace);
  for (char c : alnum) b.Piece(std::string(1, c));
  for (char c : punct) b.Piece(std::string(1, c));
  for (char c : alnum) b.Piece(kSpace + std::string(1, c));
  for (int len = 2; !b.full(); ++len) {
    AddNgrams(&b, len, false);
    AddNgrams(&b, len, true);
  }
  return b.Take();
}

}  // namespace kestrel::synth
