#include "runtime/kv_cache/block_pool.h"

#include <cassert>

#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {

BlockPool::BlockPool(uint32_t n_blocks, uint32_t block_size)
    : block_size_(block_size), ref_counts_(n_blocks, 0) {
  free_.reserve(n_blocks);
  for (uint32_t i = n_blocks; i > 0; --i) free_.push_back(static_cast<int32_t>(i - 1));
}

absl::StatusOr<int32_t> BlockPool::Allocate() {
  if (free_.empty()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "KV cache is full: all %u blocks of %u tokens are in use", n_blocks(), block_size_));
  }
  int32_t b = free_.back();
  free_.pop_back();
  ref_counts_[b] = 1;
  return b;
}

void BlockPool::Retain(int32_t block) {
  assert(block >= 0 && static_cast<size_t>(block) < ref_counts_.size() && ref_counts_[block] > 0);
  ++ref_counts_[block];
}

void BlockPool::Release(int32_t block) {
  assert(block >= 0 && static_cast<size_t>(block) < ref_counts_.size() && ref_counts_[block] > 0);
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

}  // namespace runtime
}  // namespace kestrel
