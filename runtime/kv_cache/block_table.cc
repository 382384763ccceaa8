#include "runtime/kv_cache/block_table.h"

#include <algorithm>

namespace kestrel {
namespace runtime {

absl::Status BlockTable::Append(uint32_t n_new) {
  const uint32_t bs = pool_->block_size();
  const uint64_t need_tokens = uint64_t{n_tokens_} + n_new;
  const uint64_t need_blocks = (need_tokens + bs - 1) / bs;
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
