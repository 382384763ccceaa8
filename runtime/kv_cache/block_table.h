// runtime/kv_cache/block_table.h: one sequence's view of the paged KV cache — the list of blocks
// holding its tokens in order. Token at position p lives in slot blocks[p / B] * B + p % B.
#ifndef KESTREL_RUNTIME_KV_CACHE_BLOCK_TABLE_H_
#define KESTREL_RUNTIME_KV_CACHE_BLOCK_TABLE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "runtime/kv_cache/block_pool.h"

namespace kestrel {
namespace runtime {

class BlockTable {
 public:
  explicit BlockTable(BlockPool* pool) : pool_(pool) {}
  ~BlockTable() { Truncate(0); }
  BlockTable(const BlockTable&) = delete;
  BlockTable& operator=(const BlockTable&) = delete;

  uint32_t n_tokens() const { return n_tokens_; }
  const std::vector<int32_t>& blocks() const { return blocks_; }

  // Makes room for `n_new` more tokens (allocating blocks) and counts them as present. On failure
  // nothing changes.
  absl::Status Append(uint32_t n_new);
  // Keeps the first n tokens; releases the blocks past them.
  void Truncate(uint32_t n);
  // Sliding-window KV: releases the blocks lying wholly before position `pos` (no query at a
  // position >= pos + window - 1 reads them); their entries become -1 and Slot() must not be
  // asked for their positions. Truncating below dropped positions leaves them dropped.
  void DropBefore(uint32_t pos);
  // Entries of blocks() that hold a block (not dropped).
  uint32_t n_held_blocks() const { return static_cast<uint32_t>(blocks_.size()) - n_dropped_; }
  // The first position whose block is still held (0 when nothing was dropped).
  uint32_t first_held_position() const { return n_dropped_ * pool_->block_size(); }
  // Cache slot of token position `pos` (< n_tokens()).
  int32_t Slot(uint32_t pos) const {
    return blocks_[pos / pool_->block_size()] * static_cast<int32_t>(pool_->block_size()) +
           static_cast<int32_t>(pos % pool_->block_size());
  }

 private:
  BlockPool* pool_;
  std::vector<int32_t> blocks_;
  uint32_t n_tokens_ = 0;
  uint32_t n_dropped_ = 0;  // leading entries released by DropBefore (-1)
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_KV_CACHE_BLOCK_TABLE_H_
