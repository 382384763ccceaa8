// runtime/grammar/: which tokens a grammar allows next.
//
// A TokenVocab decodes every token's text into code points once (per vocabulary, shared by all
// the sequences of a session or engine) and arranges them in a trie, so one mask walks each
// shared prefix once and drops a whole subtree at the first code point the grammar refuses:
// after `{` in JSON only the few children of `"`, `}` and blanks are walked, not the vocabulary.
#ifndef KESTREL_RUNTIME_GRAMMAR_TOKEN_MASK_H_
#define KESTREL_RUNTIME_GRAMMAR_TOKEN_MASK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/grammar/matcher.h"

namespace kestrel {
namespace runtime {
namespace grammar {

// A sequence's memo of the matcher's transitions (interned stack sets, (set, code point) ->
// set), kept across the masks of one generation: inside a JSON string every token's first code
// point leads from the same set, so most of a mask's trie walk is lookups. Bounded: cleared when
// it grows past kMaxTransitions between two masks.
class MaskCache {
 public:
  static constexpr uint32_t kDead = UINT32_MAX;
  static constexpr size_t kMaxTransitions = 1 << 18;
  uint32_t Intern(const StackSet& set);
  // The set after `c` from set `id`, or kDead.
  uint32_t Next(const Grammar& g, uint32_t id, uint32_t c);
  const StackSet& set(uint32_t id) const { return sets_[id]; }
  void ClearIfLarge();

 private:
  std::vector<StackSet> sets_;
  std::map<StackSet, uint32_t> ids_;
  std::unordered_map<uint64_t, uint32_t> next_;  // (id << 21 | c) -> id
  StackSet scratch_;
};

class TokenVocab {
 public:
  // texts[i]: the bytes token i adds to the output (empty for control tokens: never allowed);
  // `eog`: the end-of-generation ids, allowed exactly when the grammar accepts.
  static std::shared_ptr<const TokenVocab> Build(std::vector<std::string> texts,
                                                 const std::vector<int32_t>& eog);

  int32_t size() const { return static_cast<int32_t>(texts_.size()); }
  const std::string& text(int32_t id) const { return texts_[id]; }
  bool is_eog(int32_t id) const { return id >= 0 && id < size() && eog_[id]; }
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }

  // allowed[i] = 1 when token i may come next in `m`'s state (resized to size()). `cache` is
  // the caller's (one per sequence and grammar), so a vocabulary can be shared across threads.
  void Mask(const Matcher& m, MaskCache* cache, std::vector<uint8_t>* allowed) const;

 private:
  struct Node {
    uint32_t first_edge = 0, n_edges = 0;   // edges_: (code point, child), sorted
    uint32_t first_end = 0, n_end = 0;      // ends_: tokens whose text ends here
    uint32_t first_part = 0, n_part = 0;    // parts_: tokens that end here inside a character
  };
  void Walk(const Grammar& g, uint32_t node, uint32_t state, MaskCache* cache,
            std::vector<uint8_t>* allowed) const;

  std::vector<std::string> texts_;
  std::vector<uint8_t> eog_;
  std::vector<int32_t> eog_ids_;
  std::vector<Node> nodes_;
  std::vector<std::pair<uint32_t, uint32_t>> edges_;
  std::vector<int32_t> ends_;
  std::vector<std::pair<int32_t, std::string>> parts_;
};

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GRAMMAR_TOKEN_MASK_H_
