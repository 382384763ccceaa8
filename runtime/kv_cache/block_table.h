// runtime/kv_cache/block_table.h: one sequence's view of the paged KV cache — the list of blocks
// holding its tokens in order. Token at position p lives in slot blocks[p / B] * B + p % B.
//
// The table holds one pool reference per block. Blocks may be shared with other tables (prefix
// cache hits, forks); a shared block is never written: MakeWritable replaces it by a private copy
// first (copy-on-write) and tells the caller which KV blocks to copy.
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
  ~BlockTable() { Clear(); }
  BlockTable(const BlockTable&) = delete;
  BlockTable& operator=(const BlockTable&) = delete;

  uint32_t n_tokens() const { return n_tokens_; }
  const std::vector<int32_t>& blocks() const { return blocks_; }
  BlockPool* pool() const { return pool_; }
  uint32_t block_size() const { return pool_->block_size(); }
  // Tokens the held blocks have room for (>= n_tokens()).
  uint64_t capacity() const { return uint64_t{blocks_.size()} * pool_->block_size(); }

  // Makes room for `n_new` more tokens (allocating blocks) and counts them as present. On failure
  // nothing changes.
  absl::Status Append(uint32_t n_new);
  // Keeps the first n tokens; releases the blocks past them.
  void Truncate(uint32_t n);
  // Releases every block (reservations included).
  void Clear();
  // Allocates blocks for `n` tokens without counting them (a prompt's blocks at admission, so
  // its chunked prefill never needs one midway). On failure nothing changes.
  absl::Status Reserve(uint32_t n);
  // Takes over `blocks` (each already holding one reference for this table) holding `n_tokens`
  // tokens; the table must be empty. Leading -1 entries are dropped positions (DropBefore).
  void Adopt(std::vector<int32_t> blocks, uint32_t n_tokens);
  // A copy of this table's blocks for a fork (one more reference on each), with the same tokens.
  void ShareInto(BlockTable* other) const;
  // Replaces blocks[i] by `block` (whose reference the table takes over), dropping its own.
  void ReplaceBlock(size_t i, int32_t block);

  // Blocks that MakeWritable(end) has to allocate: the shared blocks among those covering
  // positions [n_tokens(), end) plus the missing ones.
  uint32_t BlocksToWrite(uint64_t end) const;
  // Makes positions [n_tokens(), end) writable without counting them: shared blocks are replaced
  // by fresh ones, whose (source, destination) pairs are appended to *copies (the caller copies
  // those KV blocks before the step writes), and missing blocks are allocated. On failure
  // nothing changes.
  absl::Status MakeWritable(uint64_t end, std::vector<int32_t>* copies);

  // Sliding-window KV: releases the blocks lying wholly before position `pos` (no query at a
  // position >= pos + window - 1 reads them); their entries become -1 and Slot() must not be
  // asked for their positions. Truncating below dropped positions leaves them dropped.
  void DropBefore(uint32_t pos);
  // Entries of blocks() that hold a block (not dropped).
  uint32_t n_held_blocks() const { return static_cast<uint32_t>(blocks_.size()) - n_dropped_; }
  // The first position whose block is still held (0 when nothing was dropped).
  uint32_t first_held_position() const { return n_dropped_ * pool_->block_size(); }
  // Cache slot of token position `pos` (< capacity()).
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
