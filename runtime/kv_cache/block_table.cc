#include "runtime/kv_cache/block_table.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace kestrel {
namespace runtime {

absl::Status BlockTable::Reserve(uint32_t n) {
  const uint32_t bs = pool_->block_size();
  const uint64_t need_blocks = (uint64_t{n} + bs - 1) / bs;
  const size_t had = blocks_.size();
  while (blocks_.size() < need_blocks) {
    absl::StatusOr<int32_t> b = pool_->Allocate();
    if (!b.ok()) {
      while (blocks_.size() > had) {  // roll back: the table is unchanged on failure
        pool_->Release(blocks_.back());
        blocks_.pop_back();
      }
      return b.status();
    }
    blocks_.push_back(*b);
  }
  return absl::OkStatus();
}

absl::Status BlockTable::Append(uint32_t n_new) {
  const uint64_t need_tokens = uint64_t{n_tokens_} + n_new;
  if (need_tokens > UINT32_MAX) return absl::OutOfRangeError("block table: token count overflow");
  if (auto s = Reserve(static_cast<uint32_t>(need_tokens)); !s.ok()) return s;
  n_tokens_ = static_cast<uint32_t>(need_tokens);
  return absl::OkStatus();
}

void BlockTable::Truncate(uint32_t n) {
  if (n >= n_tokens_) return;
  const uint32_t bs = pool_->block_size();
  const size_t keep = (n + bs - 1) / bs;
  while (blocks_.size() > keep) {
    if (blocks_.back() >= 0) pool_->Release(blocks_.back());
    blocks_.pop_back();
  }
  n_dropped_ = std::min<uint32_t>(n_dropped_, static_cast<uint32_t>(blocks_.size()));
  n_tokens_ = n;
}

void BlockTable::Clear() {
  for (int32_t b : blocks_) {
    if (b >= 0) pool_->Release(b);
  }
  blocks_.clear();
  n_tokens_ = 0;
  n_dropped_ = 0;
}

void BlockTable::Adopt(std::vector<int32_t> blocks, uint32_t n_tokens) {
  assert(blocks_.empty());
  blocks_ = std::move(blocks);
  n_tokens_ = n_tokens;
  n_dropped_ = 0;
  while (n_dropped_ < blocks_.size() && blocks_[n_dropped_] < 0) ++n_dropped_;
}

void BlockTable::ShareInto(BlockTable* other) const {
  other->Clear();
  for (int32_t b : blocks_) {
    if (b >= 0) pool_->Retain(b);
  }
  other->blocks_ = blocks_;
  other->n_tokens_ = n_tokens_;
  other->n_dropped_ = n_dropped_;
}

void BlockTable::ReplaceBlock(size_t i, int32_t block) {
  pool_->Release(blocks_[i]);
  blocks_[i] = block;
}

uint32_t BlockTable::BlocksToWrite(uint64_t end) const {
  if (end <= n_tokens_) return 0;
  const uint32_t bs = pool_->block_size();
  const uint64_t first = n_tokens_ / bs, last = (end - 1) / bs;
  uint32_t n = 0;
  for (uint64_t i = first; i <= last; ++i) {
    if (i >= blocks_.size() || pool_->ref_count(blocks_[i]) > 1) ++n;
  }
  return n;
}

absl::Status BlockTable::MakeWritable(uint64_t end, std::vector<int32_t>* copies) {
  if (end <= n_tokens_) return absl::OkStatus();
  const uint32_t bs = pool_->block_size();
  const uint64_t first = n_tokens_ / bs, last = (end - 1) / bs;
  // Allocate everything first, so that a failure leaves the table as it was.
  std::vector<int32_t> fresh;
  for (uint32_t k = BlocksToWrite(end); k > 0; --k) {
    absl::StatusOr<int32_t> b = pool_->Allocate();
    if (!b.ok()) {
      for (int32_t f : fresh) pool_->Release(f);
      return b.status();
    }
    fresh.push_back(*b);
  }
  size_t next = 0;
  for (uint64_t i = first; i <= last; ++i) {
    if (i >= blocks_.size()) {
      blocks_.push_back(fresh[next++]);
    } else if (pool_->ref_count(blocks_[i]) > 1) {
      copies->push_back(blocks_[i]);
      copies->push_back(fresh[next]);
      ReplaceBlock(i, fresh[next++]);
    }
  }
  return absl::OkStatus();
}

void BlockTable::DropBefore(uint32_t pos) {
  const uint32_t end = std::min<uint32_t>(pos / pool_->block_size(),
                                          static_cast<uint32_t>(blocks_.size()));
  for (; n_dropped_ < end; ++n_dropped_) {
    pool_->Release(blocks_[n_dropped_]);
    blocks_[n_dropped_] = -1;
  }
}

}  // namespace runtime
}  // namespace kestrel
