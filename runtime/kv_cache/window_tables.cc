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

WindowTables::WindowTables(const std::vector<SharedGroup>& groups) {
  for (const SharedGroup& g : groups) {
    Slot s;
    s.window = g.window;
    s.table = std::make_unique<BlockTable>(g.pool);
    groups_.push_back(std::move(s));
  }
}

uint32_t WindowTables::BlocksNeeded(uint32_t window, uint32_t max_step, uint32_t block_size) {
  const uint64_t span = uint64_t{window} - 1 + max_step;  // positions the tables hold at most
  return static_cast<uint32_t>((span + block_size - 1) / block_size + 1);
}

absl::Status WindowTables::Append(uint32_t n_past, uint32_t n_new,
                                  std::vector<std::vector<int32_t>>* copies) {
  if (copies != nullptr) copies->resize(groups_.size());
  std::vector<int32_t> unused;
  for (size_t g = 0; g < groups_.size(); ++g) {
    BlockTable& t = *groups_[g].table;
    t.DropBefore(WindowStart(n_past, groups_[g].window));
    absl::Status s = t.MakeWritable(uint64_t{n_past} + n_new, copies ? &(*copies)[g] : &unused);
    if (s.ok()) s = t.Append(n_new);  // the blocks are there: only counts
    if (!s.ok()) {
      for (size_t h = 0; h < g; ++h) groups_[h].table->Truncate(n_past);
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status WindowTables::GrowTo(uint32_t n, uint32_t max_step) {
  if (groups_.empty() || n == 0) return absl::OkStatus();
  max_step = std::max<uint32_t>(max_step, 1);
  uint32_t p = groups_[0].table->n_tokens();
  while (p + 1 < n) {
    const uint32_t step = std::min(max_step, n - 1 - p);
    if (auto s = Append(p, step); !s.ok()) return s;
    p += step;
  }
  return p < n ? Append(p, 1) : absl::OkStatus();
}

void WindowTables::Adopt(std::vector<std::vector<int32_t>> blocks, uint32_t n_tokens) {
  for (size_t g = 0; g < groups_.size() && g < blocks.size(); ++g) {
    groups_[g].table->Adopt(std::move(blocks[g]), n_tokens);
  }
}

void WindowTables::ShareInto(WindowTables* other) const {
  for (size_t g = 0; g < groups_.size() && g < other->groups_.size(); ++g) {
    groups_[g].table->ShareInto(other->groups_[g].table.get());
  }
}

uint32_t WindowTables::n_held_blocks() const {
  uint32_t n = 0;
  for (const Slot& s : groups_) n += s.table->n_held_blocks();
  return n;
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
