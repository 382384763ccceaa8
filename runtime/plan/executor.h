// runtime/plan/executor.h: binds an ExecutionPlan to device buffers and runs it one step at a
// time. Each op runs on the primary device if it supports it, else on the fallback (reference)
// device; values move between devices through host staging only when an op needs them elsewhere
// (residency tracking), so a plugin that implements a subset of ops still runs the whole model.
//
// Not thread-safe: one executor per session.
#ifndef KESTREL_RUNTIME_PLAN_EXECUTOR_H_
#define KESTREL_RUNTIME_PLAN_EXECUTOR_H_

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hal/src/device.h"
#include "runtime/model/model.h"
#include "runtime/plan/execution_plan.h"

namespace kestrel {
namespace runtime {

struct StepInputs {
  std::vector<int32_t> tokens, positions, slots, block_tables, query_start, kv_lens, logit_rows;
  // Empty: causal attention. Else a speculative tree step: per token, the index of its parent
  // among its sequence's tokens of this step (-1: a root); PAGED_ATTENTION then runs with the
  // tree mask (kestrel_op_attention_params_t.tree_mask) on a device that supports it.
  std::vector<int32_t> parents;
  int64_t n_seqs = 1;
  int64_t max_blocks = 0;
  // KV groups 1.. of the plan (ExecutionPlan::kv_groups), in order: each group's slots [T] and
  // block tables [S, max_blocks] over its own pool. Empty when the plan has only group 0.
  struct Group {
    std::vector<int32_t> slots, block_tables;
  };
  std::vector<Group> groups;
};

class Executor {
 public:
  // `fallback` may be null (no fallback) or equal to `primary`.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const Model* model,
                                                          ExecutionPlan plan,
                                                          hal::Device* primary,
                                                          hal::Device* fallback);

  // Runs the whole plan for one step and copies the logits rows ([R, V] floats) to `logits`.
  absl::Status Run(const StepInputs& inputs, std::vector<float>* logits);

  // Copies whole KV blocks (pairs of source, destination block) in every layer of KV group
  // `group` (block ids are the group's).
  absl::Status CopyBlocks(const std::vector<int32_t>& pairs, uint32_t group = 0);
  // Copies single KV slots (pairs of source, destination slot) in every layer of KV group
  // `group`, in order: a speculative step keeps its accepted tree path by moving it onto
  // consecutive positions.
  absl::Status CopySlots(const std::vector<int32_t>& pairs, uint32_t group = 0);

  const ExecutionPlan& plan() const { return plan_; }
  // Whether some device here (primary or fallback) runs PAGED_ATTENTION with the tree mask, so a
  // speculative tree can be verified; chains never need it. Asked once.
  bool SupportsTreeMask();

  // Bytes of one position's K (or V) row of a layer: n_kv_heads * head_dim cache elements.
  uint64_t kv_row_bytes() const;
  // Session state: the K (v false) or V rows of `layer` at cache slots `slots` (slot = block *
  // block_size + offset), in that order, to / from `rows` (slots.size() * kv_row_bytes()).
  // Consecutive slots move in one transfer.
  absl::Status ReadKvRows(uint32_t layer, bool v, absl::Span<const int32_t> slots, uint8_t* rows);
  absl::Status WriteKvRows(uint32_t layer, bool v, absl::Span<const int32_t> slots,
                           const uint8_t* rows);

  // After a successful Run of a plan built with PlanOptions::hidden: the hidden state of every
  // token of that step, [T, n_embd] floats row-major (see HiddenState for which one).
  // FAILED_PRECONDITION if the plan exposes none or no step has run.
  absl::Status ReadHidden(std::vector<float>* out);

  // Mixture of experts: tokens routed to each expert, summed over every successful Run since
  // creation or the last ResetExpertCounts; [n_layers][n_experts] row-major (empty for a dense
  // model). Each token counts once per selected expert, so a layer's counts sum to
  // tokens run * top_k.
  const std::vector<uint64_t>& expert_counts() const { return expert_counts_; }
  void ResetExpertCounts() { std::fill(expert_counts_.begin(), expert_counts_.end(), 0); }
  // How many op executions ran on each device so far (for tests and traces).
  const std::map<std::string, uint64_t>& ops_per_device() const { return ops_per_device_; }

 private:
  struct Copy {
    hal::Device* device;
    hal::Buffer buffer;
  };
  struct Value {
    std::vector<Copy> copies;
    std::vector<hal::Device*> valid;  // devices whose copy is current; empty: host is the source
    uint64_t bytes = 0;               // bytes current this step
    const void* host = nullptr;       // step inputs: host data
  };

  Executor() = default;
  Value& ValueFor(const ValueRef& ref);
  uint64_t BytesOf(const PlanArg& arg, const StepShape& shape) const;
  absl::StatusOr<Copy*> Allocated(Value& value, hal::Device* device, uint64_t bytes);
  absl::StatusOr<Copy*> Resident(Value& value, hal::Device* device, uint64_t bytes);
  // Where an op runs in one mode (0 decode, 1 prefill, 2 tree step): asked once per op and mode.
  struct Placement {
    hal::Device* device = nullptr;  // null: not asked yet
    uint64_t workspace = 0;
    uint64_t* op_count = nullptr;   // the device's entry of ops_per_device_ (std::map nodes stay put)
  };
  static constexpr int kPlacementModes = 3;
  absl::StatusOr<const Placement*> Place(size_t op_index, const kestrel_op_desc_t& desc, int mode);
  absl::Status RunOp(size_t op_index, const StepShape& shape, bool tree);
  // Every op of the plan in order, with the model's weight streamer (if any) around them.
  absl::Status RunOps(const StepShape& shape, bool tree);
  absl::Status CopyRanges(const std::vector<int32_t>& pairs, uint64_t unit_bytes, uint32_t group);
  // A MOE op whose expert stacks stay in the file (the model's expert cache): one MOE execution
  // per routed expert over a one-expert view, summed with ADD (runtime/plan/executor_moe.cc).
  absl::Status RunOffloadedMoe(size_t op_index, const StepShape& shape, int cache_layer);
  // A kPlanOpSplitColumns op (runtime/plan/executor_split.cc).
  absl::Status RunSplit(size_t op_index, const StepShape& shape);
  // The device's workspace of at least `bytes` (grown, never shrunk); nullptr for 0.
  absl::StatusOr<const hal::Buffer*> Workspace(hal::Device* d, uint64_t bytes);
  // Applies the next offloaded MoE layer's router to this one's input `x` (on `d`) and asks the
  // cache to read that layer's likely experts ahead (executor_moe.cc).
  absl::Status PrefetchNextExperts(size_t op_index, const StepShape& shape, int cache_layer,
                                   const hal::Buffer& x, hal::Device* d);
  // Runs missed expert `expert` over the one-expert MOE `desc` on the cache's host device and
  // adds its output to `out` on `d` with `add` (executor_moe.cc).
  absl::Status RunMissOnHost(size_t op_index, const StepShape& shape, uint32_t cache_layer,
                             uint32_t expert, const kestrel_op_desc_t& desc, hal::Device* d,
                             kestrel_op_desc_t add);
  // `s` prefixed with the op that produced activation `activation`.
  absl::Status ReadBackError(int32_t activation, const absl::Status& s) const;
  // Reads the value's current copy (from any device that holds one) into `out`.
  absl::Status ReadBack(const Value& value, void* out, uint64_t bytes);

  const Model* model_ = nullptr;
  ExecutionPlan plan_;
  hal::Device* primary_ = nullptr;
  hal::Device* fallback_ = nullptr;
  std::vector<Value> activations_, k_cache_, v_cache_, step_;
  // [op_index * kPlacementModes + mode]: a flat table, as a decode step of a small model looks
  // placements up hundreds of times (a std::map keyed by (op, mode) and a map keyed by device
  // name per op were a measurable share of its host-side dispatch).
  std::vector<Placement> placement_;
  // The prepared weight handle of (op, input) on the device it last ran on: the model's lookup
  // (a mutex and a map) per weight argument cost ~1 % of a small model's decode step.
  struct CachedWeight {
    hal::Device* device = nullptr;
    kestrel_plugin_weight_t* handle = nullptr;
  };
  static constexpr size_t kCachedInputs = 8;  // per op; inputs past this are looked up each time
  std::vector<CachedWeight> weight_cache_;     // [op_index * kCachedInputs + input]
  uint64_t weights_generation_ = 0;            // Model::weights_generation() weight_cache_ is of
  std::map<hal::Device*, hal::Buffer> workspace_;
  std::map<std::string, uint64_t> ops_per_device_;
  std::vector<uint8_t> staging_;
  std::vector<uint64_t> expert_counts_;
  std::vector<int32_t> step_counts_;  // this step's MoE stats, all layers
  int tree_mask_support_ = -1;        // -1: not asked yet
  Value moe_partial_, moe_stats_;     // offloaded MoE: one expert's output, routing counts
  Value moe_logits_;                  // the next layer's router logits (expert prefetch)
  Value moe_host_out_;                // a missed expert's output computed on the host device
  std::vector<float> router_logits_;
  bool prefetch_unsupported_ = false; // the cache's device runs no MATMUL with a router weight
  int64_t last_tokens_ = 0;           // T of the last successful Run
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PLAN_EXECUTOR_H_
