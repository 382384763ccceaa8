// runtime/kv_cache/: the paged KV cache's bookkeeping — which fixed-size blocks are free, which
// sequence owns which block. It does not own device memory (the executor does) and never looks at
// KV values; it only hands out block ids.
//
// BlockPool: a free list of block ids with reference counts (so the engine can later share prefix
// blocks copy-on-write). Not thread-safe: owned by one session or one engine thread.
#ifndef KESTREL_RUNTIME_KV_CACHE_BLOCK_POOL_H_
#define KESTREL_RUNTIME_KV_CACHE_BLOCK_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace kestrel {
namespace runtime {

class BlockPool {
 public:
  BlockPool(uint32_t n_blocks, uint32_t block_size);

  uint32_t n_blocks() const { return static_cast<uint32_t>(ref_counts_.size()); }
  uint32_t block_size() const { return block_size_; }
  uint32_t n_free() const { return static_cast<uint32_t>(free_.size()); }

  // A free block with reference count 1. RESOURCE_EXHAUSTED (with the pool's numbers) when none.
  absl::StatusOr<int32_t> Allocate();
  void Retain(int32_t block);
  // Drops one reference; the block returns to the free list at zero.
  void Release(int32_t block);
  uint32_t ref_count(int32_t block) const { return ref_counts_[block]; }

 private:
  uint32_t block_size_;
  std::vector<uint32_t> ref_counts_;
  std::vector<int32_t> free_;  // LIFO: recently freed blocks are reused first (warm in cache)
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_KV_CACHE_BLOCK_POOL_H_
