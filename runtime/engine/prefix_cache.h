// runtime/engine/prefix_cache.h: reuse of computed KV blocks across requests.
//
// A hash chain over FULL token blocks: the key of block i of a sequence is (key of block i-1, the
// block's block_size token ids), so a key names the whole token prefix up to the end of its block
// and two requests reach the same entry only if all their tokens up to there are equal. Keys are
// compared exactly (entry id of the parent + the token ids), so there are no hash collisions.
//
// The cache holds one BlockPool reference on each entry's block. A block whose only reference is
// the cache's is "evictable": EvictOne() frees the least recently used evictable entry that has no
// children (leaves first, so a chain is always reachable from its root). Partially filled blocks
// are never cached, so a cached block is never written again.
//
// Sliding-window KV (the engine's window pools, one per KV group 1..): an entry may also hold,
// per window group, a reference on the block of that group's pool that holds the same positions'
// rows. A hit needs those rows for the last `window` positions before its end, so Lookup stops
// the match at the longest prefix whose window rows the cache still holds: reuse is exact or
// not taken. The window pools are sized for the sequences, not the cache: the cache's window
// references are released (least recently used first) whenever a sequence needs the room
// (EvictWindowBlock).
//
// Not thread-safe: owned by the engine's stepping thread.
#ifndef KESTREL_RUNTIME_ENGINE_PREFIX_CACHE_H_
#define KESTREL_RUNTIME_ENGINE_PREFIX_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/types/span.h"
#include "runtime/kv_cache/block_pool.h"

namespace kestrel {
namespace runtime {

class PrefixCache {
 public:
  // Id of the empty prefix (the parent of a sequence's first block).
  static constexpr uint64_t kRoot = 0;

  // A sliding-window KV group: its window and its pool (the engine's).
  struct WindowGroup {
    uint32_t window = 0;
    BlockPool* pool = nullptr;
  };
  explicit PrefixCache(BlockPool* pool, std::vector<WindowGroup> windows = {})
      : pool_(pool), windows_(std::move(windows)), window_lru_(windows_.size()) {}
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  struct Match {
    std::vector<int32_t> blocks;     // physical blocks, one per matched full block (retained)
    std::vector<uint64_t> keys;      // entry id of each matched block
    // Per window group: one entry per matched block, the group's block for the same positions
    // (retained like `blocks`), -1 for those before the window of the match's end (a
    // BlockTable adopts them as dropped). Empty without window groups.
    std::vector<std::vector<int32_t>> window_blocks;
  };
  // Longest chain of cached full blocks that equals a prefix of `tokens`, at most `max_blocks`.
  // With window groups, the match ends where every group's rows for the window before its end
  // are held. With `retain`, every returned block gets one more pool reference (owned by the
  // caller) and the entries become the most recently used; without, the call only measures.
  Match Lookup(absl::Span<const int32_t> tokens, uint32_t max_blocks, bool retain);

  // Offers the full block `block` (holding `tokens`, block_size ids) whose prefix is `parent`.
  // Returns the entry id for the block's content and, when an entry for the same content already
  // exists with another physical block, that block in *shared (retained for the caller, who should
  // use it instead of its own copy); *shared = -1 otherwise.
  uint64_t Insert(uint64_t parent, absl::Span<const int32_t> tokens, int32_t block,
                  int32_t* shared);

  // Window group g's block `block` (full, never written again) holds entry `id`'s positions:
  // the cache takes a reference on it unless the entry already has one (or is unknown).
  void AttachWindowBlock(uint64_t id, size_t g, int32_t block);
  // Drops the least recently used window reference of group g, preferring blocks only the cache
  // holds (those return to the pool). False when the cache holds none of that group.
  bool EvictWindowBlock(size_t g);
  // Window group g's blocks only the cache references.
  uint32_t NumWindowCached(size_t g) const;
  size_t n_window_groups() const { return windows_.size(); }

  // Frees the least recently used evictable leaf. False if nothing is evictable.
  bool EvictOne();
  // Frees every evictable entry (blocks in use by sequences stay).
  void Clear();

  // Every entry, parents before children (entry ids grow): for saving the cache to a file.
  struct Exported {
    uint64_t id, parent;
    int32_t block;
    std::vector<int32_t> tokens;
  };
  std::vector<Exported> Export() const;
  // Entries whose block only the cache references.
  uint32_t NumEvictable() const;
  uint32_t size() const { return static_cast<uint32_t>(entries_.size()); }

 private:
  struct Key {
    uint64_t parent;
    std::vector<int32_t> tokens;
    bool operator==(const Key& o) const { return parent == o.parent && tokens == o.tokens; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    uint64_t id;
    uint64_t parent;
    int32_t block;
    uint32_t n_children = 0;
    std::list<Entry*>::iterator lru;  // position in lru_ (front: most recent)
    const Key* key = nullptr;         // the map key that owns this entry
    // Per window group (empty: none held): the block, -1 when not held, and its position in
    // window_lru_[g].
    std::vector<int32_t> window_blocks;
    std::vector<std::list<Entry*>::iterator> window_lru;
  };
  void Touch(Entry* e);
  void Remove(Entry* e);
  void ReleaseWindowBlock(Entry* e, size_t g);
  // The longest prefix of `hit` whose window rows are held in every window group.
  size_t RestorablePrefix(const std::vector<Entry*>& hit) const;

  BlockPool* pool_;
  std::vector<WindowGroup> windows_;
  std::vector<std::list<Entry*>> window_lru_;  // per group: entries holding a block of it
  uint64_t next_id_ = 1;
  std::unordered_map<Key, std::unique_ptr<Entry>, KeyHash> entries_;
  std::unordered_map<uint64_t, Entry*> by_id_;
  std::list<Entry*> lru_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ENGINE_PREFIX_CACHE_H_
