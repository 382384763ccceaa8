// runtime/plan/: what runs, in which order, on which values. The plan is built once per model
// from its config: a flat op list whose arguments name values (activations, weights, KV caches,
// per-step inputs) with shapes that may depend on the step (tokens T, sequences S, ...). The
// executor binds those to device buffers each step. This folder may not know about tokenizers,
// sampling or sessions.
#ifndef KESTREL_RUNTIME_PLAN_EXECUTION_PLAN_H_
#define KESTREL_RUNTIME_PLAN_EXECUTION_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "hal/include/kestrel/plugin_api.h"

namespace kestrel {
namespace runtime {

// Symbolic dims, resolved per step by StepShape.
constexpr int64_t kDimT = -1;          // tokens in the step
constexpr int64_t kDimS = -2;          // sequences in the step
constexpr int64_t kDimSPlus1 = -3;     // S + 1
constexpr int64_t kDimMaxBlocks = -4;  // block-table width
constexpr int64_t kDimR = -5;          // rows whose logits are wanted
// T * n for n >= 1 (per-head views such as Q as [T * H, Dh] rows for a per-head RMSNorm).
constexpr int64_t kDimTTimesBase = -1000;
constexpr int64_t TokensTimes(int64_t n) { return kDimTTimesBase - n; }

struct StepShape {
  int64_t n_tokens = 0, n_seqs = 0, max_blocks = 0, n_rows = 0;
  int64_t Resolve(int64_t d) const {
    switch (d) {
      case kDimT: return n_tokens;
      case kDimS: return n_seqs;
      case kDimSPlus1: return n_seqs + 1;
      case kDimMaxBlocks: return max_blocks;
      case kDimR: return n_rows;
      default: return d <= kDimTTimesBase - 1 ? n_tokens * (kDimTTimesBase - d) : d;
    }
  }
};

enum class ValueKind : uint8_t { kActivation, kWeight, kKCache, kVCache, kStepInput };

// Per-step host inputs, uploaded to whichever device needs them.
enum StepInputId : int32_t {
  kStepTokens = 0,       // I32 [T]
  kStepPositions,        // I32 [T]
  kStepSlots,            // I32 [T]   KV slot of each token
  kStepBlockTables,      // I32 [S, MB]
  kStepQueryStart,       // I32 [S + 1]
  kStepKvLens,           // I32 [S]
  kStepLogitRows,        // I32 [R]
  kStepParents,          // I32 [T]   speculative tree: parent of each token within its sequence
  kNumStepInputs
};

// KV groups (see ExecutionPlan::kv_groups): group 0 uses kStepSlots / kStepBlockTables; each
// further group g has its own slots I32 [T] and block tables I32 [S, MB] (same MB as group 0),
// numbered after kNumStepInputs.
inline int32_t SlotsInput(uint32_t group) {
  return group == 0 ? kStepSlots : kNumStepInputs + 2 * static_cast<int32_t>(group - 1);
}
inline int32_t BlockTablesInput(uint32_t group) {
  return group == 0 ? kStepBlockTables : kNumStepInputs + 2 * static_cast<int32_t>(group - 1) + 1;
}

struct ValueRef {
  ValueKind kind;
  int32_t index;  // activation id, weight id, layer, or StepInputId
  bool operator==(const ValueRef& o) const { return kind == o.kind && index == o.index; }
};

struct PlanArg {
  ValueRef ref;
  uint32_t dtype;
  uint32_t rank;
  int64_t dims[KESTREL_MAX_DIMS];
};

// A host-side op no plugin sees: the executor splits its one input [T, N1 + N2 + ...] by columns
// into its outputs [T, N1], [T, N2], ... (in order) with buffer copies on the device holding the
// input: a fused matmul's output ([Q | K | V] or [gate | up] per row) into the values the
// following ops read. At T = 1 that is one copy per output.
constexpr uint32_t kPlanOpSplitColumns = 0x7FFF0001u;

struct PlanOp {
  uint32_t kind;          // kestrel_op_kind_t, or kPlanOpSplitColumns
  std::string label;      // "blk.3.attn_q", for errors and traces
  std::vector<PlanArg> inputs;
  std::vector<PlanArg> outputs;
  std::vector<uint8_t> params;  // the kind's params struct, bytes
  uint32_t op_version = 1;      // 2 for the version-2 forms (embedding scale, attention window)
};

struct ActivationInfo {
  std::string name;
  int64_t elems_per_row;  // F32 elements per token (or per logits row; for a per-step value such
                          // as the MoE stats, its whole size)
  bool per_logit_row;     // sized by R instead of T
};

struct ExecutionPlan {
  std::vector<PlanOp> ops;
  std::vector<ActivationInfo> activations;
  int32_t logits = -1;  // activation holding [R, V]
  // PlanOptions::hidden: the activation holding the hidden state [T, D] after a step, or -1.
  int32_t hidden = -1;
  uint32_t n_layers = 0;
  // KV cache geometry per layer: [n_blocks, block_size, n_kv_heads, head_dim] of kv_dtype, where
  // n_blocks is the layer's KV group's (kv_groups[layer_kv_group[l]].n_blocks; n_blocks below is
  // group 0's).
  uint32_t n_kv_heads = 0, head_dim = 0, block_size = 0, n_blocks = 0;
  uint32_t kv_dtype = KESTREL_DTYPE_F32;
  // KV groups: layers whose KV lives in block pools of their own, with block tables of their
  // own. Group 0 holds the full-context layers (and every layer of a plan without groups); a
  // sliding-window layer with a separate pool (PlanOptions::window_kv_blocks) is in the group of
  // its window, whose blocks wholly before every future query's window the caller frees and
  // reuses, so its KV memory stops growing at the window. Empty: one group 0 of n_blocks.
  struct KvGroup {
    uint32_t window = 0;    // sliding window of the group's layers (0: none)
    uint32_t n_blocks = 0;  // blocks in the group's pool
  };
  std::vector<KvGroup> kv_groups;
  std::vector<uint32_t> layer_kv_group;  // per layer (empty: all 0)
  // Mixture of experts: experts per layer (0: dense) and, per layer, the activation that the
  // layer's MOE op writes its routing counts to (I32 [n_experts], tokens per expert this step).
  uint32_t n_experts = 0;
  std::vector<int32_t> expert_stats;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PLAN_EXECUTION_PLAN_H_
