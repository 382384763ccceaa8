// runtime/kv_cache/window_tables.h: one sequence's block tables for the sliding-window KV groups
// of a plan (ExecutionPlan::kv_groups 1..): each group has a pool of its own, sized for its window,
// and a table that drops the blocks no future query can see before every step, so the group's KV
// memory stops growing at the window while the full-context layers (group 0) keep their table.
// Like BlockTable it hands out block ids only. A session's tables own their pools; the engine's
// share one pool per group between all of its sequences (forks share blocks copy-on-write, as
// in group 0). Not thread-safe (one sequence's state).
#ifndef KESTREL_RUNTIME_KV_CACHE_WINDOW_TABLES_H_
#define KESTREL_RUNTIME_KV_CACHE_WINDOW_TABLES_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "runtime/kv_cache/block_pool.h"
#include "runtime/kv_cache/block_table.h"

namespace kestrel {
namespace runtime {

class WindowTables {
 public:
  struct Group {
    uint32_t window = 0;    // > 0
    uint32_t n_blocks = 0;  // the group's pool
  };
  WindowTables(const std::vector<Group>& groups, uint32_t block_size);
  // Over pools the caller owns and shares between sequences (the engine): one per group.
  struct SharedGroup {
    uint32_t window = 0;
    BlockPool* pool = nullptr;
  };
  explicit WindowTables(const std::vector<SharedGroup>& groups);
  WindowTables(const WindowTables&) = delete;
  WindowTables& operator=(const WindowTables&) = delete;

  // Blocks one sequence's window group needs when a step brings at most `max_step` tokens: the
  // positions [n_past - window + 1, n_past + max_step) span that many blocks at most.
  static uint32_t BlocksNeeded(uint32_t window, uint32_t max_step, uint32_t block_size);

  size_t size() const { return groups_.size(); }
  uint32_t window(size_t g) const { return groups_[g].window; }
  const BlockTable& table(size_t g) const { return *groups_[g].table; }

  // Before a step writing positions [n_past, n_past + n_new) (n_past = the tables' n_tokens):
  // releases every block lying wholly before n_past - window + 1, the first position the step's
  // first query sees, then makes room for the new tokens. On failure no group has appended.
  // Blocks shared with another sequence's tables (a fork) that the step writes are replaced by
  // private ones first: the (source, destination) pairs of group g go to (*copies)[g], for the
  // caller to copy before the step runs (null: the tables share nothing, as in a session).
  absl::Status Append(uint32_t n_past, uint32_t n_new,
                      std::vector<std::vector<int32_t>>* copies = nullptr);
  // Grows empty tables to n positions the way steps of at most `max_step` tokens and a final
  // one-token step would (restored KV: the caller then writes the held positions' rows), so
  // they hold no more than the window needs.
  absl::Status GrowTo(uint32_t n, uint32_t max_step);
  // Empty tables take over n_tokens positions' blocks, one list per group (each block with one
  // reference for the table; leading -1 entries: dropped, before the window), as a prefix-cache
  // hit restores them.
  void Adopt(std::vector<std::vector<int32_t>> blocks, uint32_t n_tokens);
  // Every group's blocks shared into `other`'s tables (one more reference each), same tokens.
  void ShareInto(WindowTables* other) const;
  // Blocks held by every group together.
  uint32_t n_held_blocks() const;
  // True when every group still holds the KV a query at position n reads (positions from
  // n - window + 1), so Truncate(n) leaves a usable context.
  bool CanTruncateTo(uint32_t n) const;
  // The smallest n > 0 that CanTruncateTo accepts (0, an empty context, always is).
  uint32_t MinTruncation() const;
  void Truncate(uint32_t n);

 private:
  struct Slot {
    uint32_t window;
    std::unique_ptr<BlockPool> pool;  // null: the caller's
    std::unique_ptr<BlockTable> table;
  };
  std::vector<Slot> groups_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_KV_CACHE_WINDOW_TABLES_H_
