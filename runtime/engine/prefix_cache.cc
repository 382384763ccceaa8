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
  for (auto& [key, e] : entries_) pool_->Release(e->block);
}

void PrefixCache::Touch(Entry* e) {
  lru_.splice(lru_.begin(), lru_, e->lru);
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

void PrefixCache::Remove(Entry* e) {
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
