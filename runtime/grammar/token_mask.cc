#include "runtime/grammar/token_mask.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "runtime/grammar/utf8.h"

namespace kestrel {
namespace runtime {
namespace grammar {

std::shared_ptr<const TokenVocab> TokenVocab::Build(std::vector<std::string> texts,
                                                    const std::vector<int32_t>& eog) {
  auto v = std::make_shared<TokenVocab>();
  v->texts_ = std::move(texts);
  const int32_t n = v->size();
  v->eog_.assign(n, 0);
  for (int32_t id : eog) {
    if (id >= 0 && id < n && !v->eog_[id]) {
      v->eog_[id] = 1;
      v->eog_ids_.push_back(id);
    }
  }
  // The trie, first with a hash map of edges, then laid out flat (CSR) per node.
  struct Tmp {
    std::vector<int32_t> ends;
    std::vector<std::pair<int32_t, std::string>> parts;
  };
  std::vector<Tmp> tmp(1);
  std::unordered_map<uint64_t, uint32_t> child;  // (node << 21 | code point) -> node
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> edges(1);
  for (int32_t id = 0; id < n; ++id) {
    if (v->eog_[id] || v->texts_[id].empty()) continue;
    Utf8Decoded d = DecodeUtf8(v->texts_[id]);
    // Invalid alone (a continuation byte first): only after a partial character, where Mask
    // decodes every token afresh.
    if (!d.valid || (d.code_points.empty() && d.partial.empty())) continue;
    uint32_t node = 0;
    for (uint32_t c : d.code_points) {
      const uint64_t key = (uint64_t{node} << 21) | c;
      auto it = child.find(key);
      if (it == child.end()) {
        const uint32_t fresh = static_cast<uint32_t>(tmp.size());
        tmp.emplace_back();
        edges.emplace_back();
        edges[node].emplace_back(c, fresh);
        it = child.emplace(key, fresh).first;
      }
      node = it->second;
    }
    if (d.partial.empty()) {
      tmp[node].ends.push_back(id);
    } else {
      tmp[node].parts.emplace_back(id, d.partial);
    }
  }
  v->nodes_.resize(tmp.size());
  for (size_t i = 0; i < tmp.size(); ++i) {
    Node& nd = v->nodes_[i];
    std::sort(edges[i].begin(), edges[i].end());
    nd.first_edge = static_cast<uint32_t>(v->edges_.size());
    nd.n_edges = static_cast<uint32_t>(edges[i].size());
    v->edges_.insert(v->edges_.end(), edges[i].begin(), edges[i].end());
    nd.first_end = static_cast<uint32_t>(v->ends_.size());
    nd.n_end = static_cast<uint32_t>(tmp[i].ends.size());
    v->ends_.insert(v->ends_.end(), tmp[i].ends.begin(), tmp[i].ends.end());
    nd.first_part = static_cast<uint32_t>(v->parts_.size());
    nd.n_part = static_cast<uint32_t>(tmp[i].parts.size());
    for (auto& p : tmp[i].parts) v->parts_.push_back(std::move(p));
  }
  return v;
}

uint32_t MaskCache::Intern(const StackSet& set) {
  auto it = ids_.find(set);
  if (it != ids_.end()) return it->second;
  const uint32_t id = static_cast<uint32_t>(sets_.size());
  sets_.push_back(set);
  ids_.emplace(set, id);
  return id;
}

uint32_t MaskCache::Next(const Grammar& g, uint32_t id, uint32_t c) {
  const uint64_t key = (uint64_t{id} << 21) | c;
  auto it = next_.find(key);
  if (it != next_.end()) return it->second;
  AdvanceStacks(g, sets_[id], c, &scratch_);
  const uint32_t next = scratch_.empty() ? kDead : Intern(scratch_);
  next_.emplace(key, next);
  return next;
}

void MaskCache::ClearIfLarge() {
  if (next_.size() < kMaxTransitions) return;
  sets_.clear();
  ids_.clear();
  next_.clear();
}

void TokenVocab::Walk(const Grammar& g, uint32_t node, uint32_t state, MaskCache* cache,
                      std::vector<uint8_t>* allowed) const {
  const Node& nd = nodes_[node];
  if (node != 0) {
    for (uint32_t i = 0; i < nd.n_end; ++i) (*allowed)[ends_[nd.first_end + i]] = 1;
  }
  for (uint32_t i = 0; i < nd.n_part; ++i) {
    const auto& p = parts_[nd.first_part + i];
    if (AllowsPartial(g, cache->set(state), p.second)) (*allowed)[p.first] = 1;
  }
  for (uint32_t e = 0; e < nd.n_edges; ++e) {
    const auto& edge = edges_[nd.first_edge + e];
    const uint32_t next = cache->Next(g, state, edge.first);
    if (next != MaskCache::kDead) Walk(g, edge.second, next, cache, allowed);
  }
}

void TokenVocab::Mask(const Matcher& m, MaskCache* cache, std::vector<uint8_t>* allowed) const {
  allowed->assign(texts_.size(), 0);
  if (!m.partial().empty()) {
    // After half a character: the next token's bytes complete it, so decode each token together
    // with those bytes (rare: only after a token that split a character).
    for (int32_t id = 0; id < size(); ++id) {
      if (!eog_[id] && !texts_[id].empty() && m.Allows(texts_[id])) (*allowed)[id] = 1;
    }
    return;
  }
  cache->ClearIfLarge();
  Walk(m.grammar(), 0, cache->Intern(m.stacks()), cache, allowed);
  if (m.accepting()) {
    for (int32_t id : eog_ids_) (*allowed)[id] = 1;
  }
}

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel
