#include "runtime/kv_cache/window_tables.h"

#include <algorithm>

namespace kestrel {
namespace runtime {
namespace {

// The first position a query at `pos` sees under `window`.
uint32_t WindowStart(uint32_t pos, uint32_t window) {
  return pos + 1 > window ? pos + 1 - window : 0;
}

}  // namespace

WindowTables::WindowTables(const std::vector<Group>& groups, uint32_t block_size) {
  for (const Group& g : groups) {
    Slot s;
    s.window = g.window;
    s.pool = std::make_unique<BlockPool>(g.n_blocks, block_size);
    s.table = std::make_unique<BlockTable>(s.pool.get());
    groups_.push_back(std::move(s));
  }
}

uint32_t WindowTables::BlocksNeeded(uint32_t window, uint32_t max_step, uint32_t block_size) {
  const uint64_t span = uint64_t{window} - 1 + max_step;  // positions the tables hold at most
  return static_cast<uint32_t>((span + block_size - 1) / block_size + 1);
}

absl::Status WindowTables::Append(uint32_t n_past, uint32_t n_new) {
  for (size_t g = 0; g < groups_.size(); ++g) {
    BlockTable& t = *groups_[g].table;
    t.DropBefore(WindowStart(n_past, groups_[g].window));
    if (auto s = t.Append(n_new); !s.ok()) {
      for (size_t h = 0; h < g; ++h) groups_[h].table->Truncate(n_past);
      return s;
    }
  }
  return absl::OkStatus();
}

bool WindowTables::CanTruncateTo(uint32_t n) const {
  for (const Slot& s : groups_) {
    if (n > 0 && s.table->first_held_position() > WindowStart(n, s.window)) return false;
  }
  return true;
}

uint32_t WindowTables::MinTruncation() const {
  uint32_t lo = 0;
  for (const Slot& s : groups_) {
    const uint32_t held = s.table->first_held_position();
    if (held > 0) lo = std::max(lo, held + s.window - 1);  // WindowStart(lo) >= held
  }
  return lo;
}

void WindowTables::Truncate(uint32_t n) {
  for (Slot& s : groups_) s.table->Truncate(n);
}

}  // namespace runtime
}  // namespace kestrel
