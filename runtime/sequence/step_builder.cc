#include "runtime/sequence/step_builder.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {

void StepBuilder::Reset() {
  in_.tokens.clear();
  in_.positions.clear();
  in_.slots.clear();
  in_.block_tables.clear();
  in_.query_start.assign(1, 0);
  in_.kv_lens.clear();
  in_.logit_rows.clear();
  in_.parents.clear();
  in_.groups.clear();
  in_.n_seqs = 0;
  in_.max_blocks = 0;
  tables_.clear();
  windows_.clear();
  parents_.clear();
  any_tree_ = false;
}

absl::StatusOr<int32_t> StepBuilder::Add(const StepEntry& e) {
  const uint32_t n = static_cast<uint32_t>(e.tokens.size());
  if (n == 0) return absl::InvalidArgumentError("step: an entry has no tokens");
  if (uint64_t{e.n_past} + n > e.table->capacity()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "step: positions up to %u do not fit the sequence's %u KV slots", e.n_past + n,
        e.table->capacity()));
  }
  if (!tables_.empty() && (e.windows == nullptr) != (windows_.back() == nullptr)) {
    return absl::InvalidArgumentError("step: entries with and without window KV groups");
  }
  if (e.windows != nullptr) {
    for (size_t g = 0; g < e.windows->size(); ++g) {
      if (uint64_t{e.n_past} + n > e.windows->table(g).capacity()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "step: positions up to %u do not fit the sequence's %u KV slots of window group %u",
            e.n_past + n, e.windows->table(g).capacity(), g + 1));
      }
    }
    in_.groups.resize(e.windows->size());
  }
  const bool tree = !e.parents.empty();
  if (tree && e.parents.size() != n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "step: a tree of %u tokens has %u parents", n, e.parents.size()));
  }
  const size_t first = in_.tokens.size();
  std::vector<int32_t> depth;
  if (tree) depth.assign(n, 0);
  for (uint32_t i = 0; i < n; ++i) {
    int32_t parent = static_cast<int32_t>(i) - 1;
    if (tree) {
      parent = e.parents[i];
      if (parent < -1 || parent >= static_cast<int32_t>(i)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "step: tree node %u has parent %d (parents must come first)", i, parent));
      }
      depth[i] = parent < 0 ? 0 : depth[parent] + 1;
      if (parent != static_cast<int32_t>(i) - 1) any_tree_ = true;
    }
    in_.tokens.push_back(e.tokens[i]);
    in_.positions.push_back(static_cast<int32_t>(e.n_past + (tree ? depth[i] : i)));
    in_.slots.push_back(e.table->Slot(e.n_past + i));
    for (size_t g = 0; e.windows != nullptr && g < e.windows->size(); ++g) {
      in_.groups[g].slots.push_back(e.windows->table(g).Slot(e.n_past + i));
    }
    parents_.push_back(parent);
  }
  tables_.push_back(e.table);
  windows_.push_back(e.windows);
  in_.query_start.push_back(static_cast<int32_t>(in_.tokens.size()));
  in_.kv_lens.push_back(static_cast<int32_t>(e.n_past + n));
  const int32_t row = static_cast<int32_t>(in_.logit_rows.size());
  switch (e.rows) {
    case LogitRows::kNone: return -1;
    case LogitRows::kLast: in_.logit_rows.push_back(static_cast<int32_t>(in_.tokens.size()) - 1); break;
    case LogitRows::kAll:
      for (size_t i = first; i < in_.tokens.size(); ++i) in_.logit_rows.push_back(static_cast<int32_t>(i));
      break;
  }
  return row;
}

const StepInputs& StepBuilder::Finish() {
  size_t mb = 1;
  for (const BlockTable* t : tables_) mb = std::max(mb, t->blocks().size());
  for (const WindowTables* w : windows_) {
    for (size_t g = 0; w != nullptr && g < w->size(); ++g) mb = std::max(mb, w->table(g).blocks().size());
  }
  in_.n_seqs = static_cast<int64_t>(tables_.size());
  in_.max_blocks = static_cast<int64_t>(mb);
  in_.block_tables.assign(tables_.size() * mb, 0);
  for (size_t si = 0; si < tables_.size(); ++si) {
    std::copy(tables_[si]->blocks().begin(), tables_[si]->blocks().end(),
              in_.block_tables.begin() + si * mb);
  }
  // Window groups: the same layout over their own pools (entries before the window: -1).
  for (size_t g = 0; g < in_.groups.size(); ++g) {
    std::vector<int32_t>& bt = in_.groups[g].block_tables;
    bt.assign(tables_.size() * mb, 0);
    for (size_t si = 0; si < tables_.size(); ++si) {
      const std::vector<int32_t>& blocks = windows_[si]->table(g).blocks();
      std::copy(blocks.begin(), blocks.end(), bt.begin() + si * mb);
    }
  }
  // A step of prefill chunks only wants no logits, but the plan needs R >= 1: compute one row and
  // ignore it.
  if (in_.logit_rows.empty() && !in_.tokens.empty()) {
    in_.logit_rows.push_back(static_cast<int32_t>(in_.tokens.size()) - 1);
  }
  // A chain's attention is causal; the tree input goes only where some entry branches.
  if (any_tree_) {
    in_.parents = parents_;
  } else {
    in_.parents.clear();
  }
  return in_;
}

}  // namespace runtime
}  // namespace kestrel
