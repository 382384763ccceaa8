#include "runtime/engine/prefix_cache.h"

#include <algorithm>

namespace kestrel {
namespace runtime {

size_t PrefixCache::KeyHash::operator()(const Key& k) const {
  // FNV-1a over the parent id and the token ids; equality is checked exactly afterwards.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(k.parent);
  for (int32_t t : k.tokens) mix(static_cast<uint32_t>(t));
  return static_cast<size_t>(h);
}

PrefixCache::~PrefixCache() {
  for (auto& [key, e] : entries_) {
    pool_->Release(e->block);
    for (size_t g = 0; g < e->window_blocks.size(); ++g) {
      if (e->window_blocks[g] >= 0) windows_[g].pool->Release(e->window_blocks[g]);
    }
  }
}

void PrefixCache::Touch(Entry* e) {
  lru_.splice(lru_.begin(), lru_, e->lru);
  for (size_t g = 0; g < e->window_blocks.size(); ++g) {
    if (e->window_blocks[g] >= 0) {
      window_lru_[g].splice(window_lru_[g].begin(), window_lru_[g], e->window_lru[g]);
    }
  }
}

size_t PrefixCache::RestorablePrefix(const std::vector<Entry*>& hit) const {
  const uint32_t bs = pool_->block_size();
  const size_t n = hit.size();
  // gap_end[g][j]: 1 + the last index below j whose entry lacks group g's block (0: none).
  std::vector<std::vector<size_t>> gap_end(windows_.size(), std::vector<size_t>(n + 1, 0));
  for (size_t g = 0; g < windows_.size(); ++g) {
    for (size_t j = 0; j < n; ++j) {
      const bool held = g < hit[j]->window_blocks.size() && hit[j]->window_blocks[g] >= 0;
      gap_end[g][j + 1] = held ? gap_end[g][j] : j + 1;
    }
  }
  // A match of m blocks continues at position m * bs, whose query reads the positions from
  // m * bs + 1 - window on: every group's blocks from there to m must be held.
  auto restorable = [&](size_t m) {
    for (size_t g = 0; g < windows_.size(); ++g) {
      const uint64_t end = uint64_t{m} * bs;
      const uint64_t first = end + 1 > windows_[g].window ? end + 1 - windows_[g].window : 0;
      if (gap_end[g][m] > first / bs) return false;
    }
    return true;
  };
  size_t m = n;
  while (m > 0 && !restorable(m)) --m;
  return m;
}

PrefixCache::Match PrefixCache::Lookup(absl::Span<const int32_t> tokens, uint32_t max_blocks,
                                       bool retain) {
  Match m;
  const uint32_t bs = pool_->block_size();
  Key key{kRoot, {}};
  std::vector<Entry*> hit;
  for (uint32_t i = 0; i < max_blocks && size_t{i + 1} * bs <= tokens.size(); ++i) {
    key.tokens.assign(tokens.begin() + size_t{i} * bs, tokens.begin() + size_t{i + 1} * bs);
    auto it = entries_.find(key);
    if (it == entries_.end()) break;
    Entry* e = it->second.get();
    hit.push_back(e);
    m.blocks.push_back(e->block);
    m.keys.push_back(e->id);
    key.parent = e->id;
  }
  if (!windows_.empty()) {
    const size_t k = RestorablePrefix(hit);
    hit.resize(k);
    m.blocks.resize(k);
    m.keys.resize(k);
    m.window_blocks.resize(windows_.size());
    for (size_t g = 0; g < windows_.size(); ++g) {
      const uint64_t end = uint64_t{k} * bs;
      const uint64_t first_pos = end + 1 > windows_[g].window ? end + 1 - windows_[g].window : 0;
      for (size_t j = 0; j < k; ++j) {
        const int32_t b = j < first_pos / bs ? -1 : hit[j]->window_blocks[g];
        m.window_blocks[g].push_back(b);
        if (retain && b >= 0) windows_[g].pool->Retain(b);
      }
    }
  }
  if (retain) {
    for (int32_t b : m.blocks) pool_->Retain(b);
    // Deepest first, so that the root ends up most recent and leaves are evicted before parents.
    for (auto it = hit.rbegin(); it != hit.rend(); ++it) Touch(*it);
  }
  return m;
}

std::vector<PrefixCache::Exported> PrefixCache::Export() const {
  std::vector<Exported> out;
  out.reserve(entries_.size());
  for (const auto& [key, e] : entries_) out.push_back({e->id, e->parent, e->block, key.tokens});
  std::sort(out.begin(), out.end(),
            [](const Exported& a, const Exported& b) { return a.id < b.id; });
  return out;
}

uint64_t PrefixCache::Insert(uint64_t parent, absl::Span<const int32_t> tokens, int32_t block,
                             int32_t* shared) {
  *shared = -1;
  Key key{parent, std::vector<int32_t>(tokens.begin(), tokens.end())};
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    Entry* e = it->second.get();
    Touch(e);
    if (e->block != block) {
      pool_->Retain(e->block);
      *shared = e->block;
    }
    return e->id;
  }
  auto entry = std::make_unique<Entry>();
  Entry* e = entry.get();
  e->id = next_id_++;
  e->parent = parent;
  e->block = block;
  pool_->Retain(block);
  lru_.push_front(e);
  e->lru = lru_.begin();
  auto [pos, inserted] = entries_.emplace(std::move(key), std::move(entry));
  (void)inserted;
  e->key = &pos->first;
  by_id_[e->id] = e;
  if (parent != kRoot) {
    auto p = by_id_.find(parent);
    if (p != by_id_.end()) ++p->second->n_children;
  }
  return e->id;
}

void PrefixCache::AttachWindowBlock(uint64_t id, size_t g, int32_t block) {
  auto it = by_id_.find(id);
  if (it == by_id_.end() || g >= windows_.size() || block < 0) return;
  Entry* e = it->second;
  if (e->window_blocks.empty()) {
    e->window_blocks.assign(windows_.size(), -1);
    e->window_lru.resize(windows_.size());
  }
  if (e->window_blocks[g] >= 0) return;
  windows_[g].pool->Retain(block);
  e->window_blocks[g] = block;
  window_lru_[g].push_front(e);
  e->window_lru[g] = window_lru_[g].begin();
}

void PrefixCache::ReleaseWindowBlock(Entry* e, size_t g) {
  windows_[g].pool->Release(e->window_blocks[g]);
  e->window_blocks[g] = -1;
  window_lru_[g].erase(e->window_lru[g]);
}

bool PrefixCache::EvictWindowBlock(size_t g) {
  if (g >= window_lru_.size() || window_lru_[g].empty()) return false;
  Entry* victim = window_lru_[g].back();
  for (auto it = window_lru_[g].rbegin(); it != window_lru_[g].rend(); ++it) {
    if (windows_[g].pool->ref_count((*it)->window_blocks[g]) == 1) {
      victim = *it;
      break;
    }
  }
  ReleaseWindowBlock(victim, g);
  return true;
}

uint32_t PrefixCache::NumWindowCached(size_t g) const {
  uint32_t n = 0;
  if (g >= window_lru_.size()) return 0;
  for (const Entry* e : window_lru_[g]) n += windows_[g].pool->ref_count(e->window_blocks[g]) == 1;
  return n;
}

void PrefixCache::Remove(Entry* e) {
  for (size_t g = 0; g < e->window_blocks.size(); ++g) {
    if (e->window_blocks[g] >= 0) ReleaseWindowBlock(e, g);
  }
  if (e->parent != kRoot) {
    auto p = by_id_.find(e->parent);
    if (p != by_id_.end()) --p->second->n_children;
  }
  pool_->Release(e->block);
  lru_.erase(e->lru);
  by_id_.erase(e->id);
  Key key = *e->key;  // copy: erasing destroys the map's key (and the entry)
  entries_.erase(key);
}

bool PrefixCache::EvictOne() {
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    Entry* e = *it;
    if (e->n_children == 0 && pool_->ref_count(e->block) == 1) {
      Remove(e);
      return true;
    }
  }
  return false;
}

void PrefixCache::Clear() {
  while (EvictOne()) {
  }
}

uint32_t PrefixCache::NumEvictable() const {
  uint32_t n = 0;
  for (const Entry* e : lru_) n += pool_->ref_count(e->block) == 1 ? 1 : 0;
  return n;
}

}  // namespace runtime
}  // namespace kestrel
