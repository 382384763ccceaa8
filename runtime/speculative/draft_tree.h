// runtime/speculative/draft_tree.h: a proposal — draft tokens that may follow a sequence's
// pending token, as a tree (a chain is a tree). Node i has token tokens[i] and parent parents[i]
// (< i, or -1: a child of the pending token). Siblings carry distinct tokens. A node may carry the
// proposer's own distribution q over the vocab (it sampled the token from q); without one the node
// is deterministic (a point mass on its token), which the verifier's rejection rule handles too.
#ifndef KESTREL_RUNTIME_SPECULATIVE_DRAFT_TREE_H_
#define KESTREL_RUNTIME_SPECULATIVE_DRAFT_TREE_H_

#include <cstdint>
#include <vector>

namespace kestrel {
namespace runtime {

struct DraftTree {
  std::vector<int32_t> tokens;
  std::vector<int32_t> parents;
  std::vector<std::vector<float>> q;  // empty, or one per node (an empty vector: deterministic)
  // The proposer's own confidence in its first path, 0 when it has none. n-gram: how many tokens
  // of the history's end the source of the first path repeats (a long quote: many).
  uint32_t confidence = 0;

  size_t size() const { return tokens.size(); }
  bool empty() const { return tokens.empty(); }
  void Clear() {
    tokens.clear();
    parents.clear();
    q.clear();
    confidence = 0;
  }
  // Adds a node; returns its index. Returns the existing sibling when `token` is already a child
  // of `parent` (siblings stay distinct).
  int32_t Add(int32_t parent, int32_t token) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (parents[i] == parent && tokens[i] == token) return static_cast<int32_t>(i);
    }
    tokens.push_back(token);
    parents.push_back(parent);
    return static_cast<int32_t>(tokens.size() - 1);
  }
  // Adds `chain` below `parent`, sharing existing prefixes; stops at `budget` nodes.
  void AddChain(int32_t parent, const int32_t* chain, size_t n, size_t budget) {
    for (size_t i = 0; i < n; ++i) {
      if (tokens.size() >= budget) {
        bool exists = false;
        for (size_t j = 0; j < tokens.size(); ++j) exists |= parents[j] == parent && tokens[j] == chain[i];
        if (!exists) return;
      }
      parent = Add(parent, chain[i]);
    }
  }
  uint32_t Depth() const {
    uint32_t best = 0;
    std::vector<uint32_t> d(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      d[i] = parents[i] < 0 ? 1 : d[parents[i]] + 1;
      best = d[i] > best ? d[i] : best;
    }
    return best;
  }
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_DRAFT_TREE_H_
