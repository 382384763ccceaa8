// runtime/sequence/step_builder.h: the one place where step inputs are built. Each entry is one
// sequence's tokens for this step, written at KV positions n_past, n_past + 1, ... of its block
// table: a chain (prompt chunk, decode token, a speculative chain), or a speculative tree whose
// nodes carry their parent's index. One builder serves a session (one entry) and the engine (one
// entry per scheduled sequence, one varlen step).
#ifndef KESTREL_RUNTIME_SEQUENCE_STEP_BUILDER_H_
#define KESTREL_RUNTIME_SEQUENCE_STEP_BUILDER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/kv_cache/block_table.h"
#include "runtime/kv_cache/window_tables.h"
#include "runtime/plan/executor.h"

namespace kestrel {
namespace runtime {

enum class LogitRows { kNone, kLast, kAll };

struct StepEntry {
  const BlockTable* table = nullptr;  // holds slots for positions [n_past, n_past + tokens.size())
  uint32_t n_past = 0;                // tokens already in the KV before this step
  absl::Span<const int32_t> tokens;
  // Empty: a chain (token i follows token i - 1). Else a tree in topological order: parents[i] <
  // i is the index of token i's parent in this entry, -1 for a root. Node i's KV goes to position
  // n_past + i, its RoPE position is n_past + its depth.
  absl::Span<const int32_t> parents;
  LogitRows rows = LogitRows::kLast;
  // The sequence's tables of the plan's KV groups 1.. (sliding windows with pools of their own),
  // at the same positions as `table`; null when the plan has only group 0. Every entry of a step
  // passes them or none does.
  const WindowTables* windows = nullptr;
};

class StepBuilder {
 public:
  // Starts a new step.
  void Reset();
  // Adds one sequence's tokens. Returns the index of its first logits row (-1 when it wants none).
  // INVALID_ARGUMENT for a malformed tree or a table too short.
  absl::StatusOr<int32_t> Add(const StepEntry& entry);
  // Finishes the step (block tables, the tree input when an entry is a tree) and returns it.
  const StepInputs& Finish();
  size_t n_tokens() const { return in_.tokens.size(); }
  size_t n_entries() const { return tables_.size(); }

 private:
  StepInputs in_;
  std::vector<const BlockTable*> tables_;
  std::vector<const WindowTables*> windows_;  // per entry (all null or none)
  std::vector<int32_t> parents_;  // every entry's parents (chains as i - 1)
  bool any_tree_ = false;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SEQUENCE_STEP_BUILDER_H_
