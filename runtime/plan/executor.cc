#include "runtime/plan/executor.h"

#include <algorithm>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hal/src/op_desc.h"

namespace kestrel {
namespace runtime {
namespace {

uint64_t ElementBytes(uint32_t dtype) {
  switch (dtype) {
    case KESTREL_DTYPE_F16:
    case KESTREL_DTYPE_BF16: return 2;
    case KESTREL_DTYPE_I8: return 1;
    default: return 4;
  }
}

const char* KindName(uint32_t kind) {
  return kind == kPlanOpSplitColumns ? "SPLIT_COLUMNS" : hal::OpKindName(kind);
}

// One op's descriptor for one step: its argument descriptors at the step's shape and, for the
// attention of a speculative tree step, the tree-mask variant (the plan's causal op plus the
// parents input, params.tree_mask = 1). `desc` points into the members: not copyable.
struct OpCall {
  std::vector<PlanArg> tree_inputs_;   // the tree-mask variant's (first: bound below)
  std::vector<uint8_t> tree_params_;
  const std::vector<PlanArg>& inputs;  // the op's, or tree_inputs_
  const std::vector<uint8_t>& params;  // the op's, or tree_params_
  // Inline: a decode step of a small model is hundreds of short ops, no heap allocation per op.
  absl::InlinedVector<kestrel_tensor_arg_t, 8> in;
  absl::InlinedVector<kestrel_tensor_arg_t, 4> out;
  kestrel_op_desc_t desc{};
  bool tree = false;

  OpCall(const PlanOp& op, const StepShape& shape, bool tree_step)
      : inputs(tree_step && op.kind == KESTREL_OP_PAGED_ATTENTION ? tree_inputs_ : op.inputs),
        params(tree_step && op.kind == KESTREL_OP_PAGED_ATTENTION ? tree_params_ : op.params),
        tree(tree_step && op.kind == KESTREL_OP_PAGED_ATTENTION) {
    if (tree) {
      tree_inputs_ = op.inputs;
      PlanArg parents{};
      parents.ref = {ValueKind::kStepInput, kStepParents};
      parents.dtype = KESTREL_DTYPE_I32;
      parents.rank = 1;
      parents.dims[0] = kDimT;
      tree_inputs_.push_back(parents);
      kestrel_op_attention_params_t p{};
      std::memcpy(&p, op.params.data(), std::min(sizeof(p), op.params.size()));
      p.tree_mask = 1;
      tree_params_.resize(sizeof(p));
      std::memcpy(tree_params_.data(), &p, sizeof(p));
    }
    in.resize(inputs.size());
    out.resize(op.outputs.size());
    auto describe = [&](const PlanArg& a, kestrel_tensor_arg_t* t) {
      *t = kestrel_tensor_arg_t{};
      t->desc.struct_size = sizeof(kestrel_tensor_desc_t);
      t->desc.dtype = a.dtype;
      t->desc.rank = a.rank;
      for (uint32_t i = 0; i < a.rank; ++i) t->desc.dims[i] = shape.Resolve(a.dims[i]);
    };
    for (size_t i = 0; i < in.size(); ++i) describe(inputs[i], &in[i]);
    for (size_t i = 0; i < out.size(); ++i) describe(op.outputs[i], &out[i]);
    desc = hal::OpDesc(op.kind, op.op_version, in.data(), static_cast<uint32_t>(in.size()),
                       out.data(), static_cast<uint32_t>(out.size()),
                       params.empty() ? nullptr : params.data(), params.size());
  }
  OpCall(const OpCall&) = delete;
  OpCall& operator=(const OpCall&) = delete;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const Model* model,
                                                           ExecutionPlan plan,
                                                           hal::Device* primary,
                                                           hal::Device* fallback) {
  std::unique_ptr<Executor> e(new Executor());
  e->model_ = model;
  e->plan_ = std::move(plan);
  e->primary_ = primary;
  e->fallback_ = fallback == primary ? nullptr : fallback;
  e->activations_.resize(e->plan_.activations.size());
  ExecutionPlan& p = e->plan_;
  if (p.kv_groups.empty()) p.kv_groups = {ExecutionPlan::KvGroup{0, p.n_blocks}};
  if (p.layer_kv_group.empty()) p.layer_kv_group.assign(p.n_layers, 0);
  if (p.layer_kv_group.size() != p.n_layers) {
    return absl::InternalError("executor: the plan's layer_kv_group does not cover its layers");
  }
  e->k_cache_.resize(p.n_layers);
  e->v_cache_.resize(p.n_layers);
  e->step_.resize(kNumStepInputs + 2 * (p.kv_groups.size() - 1));
  e->expert_counts_.assign(p.expert_stats.size() * p.n_experts, 0);
  // The KV cache lives on the primary device from the start.
  for (uint32_t l = 0; l < p.n_layers; ++l) {
    if (p.layer_kv_group[l] >= p.kv_groups.size()) {
      return absl::InternalError(absl::StrFormat("executor: layer %u is in KV group %u of %u", l,
                                                 p.layer_kv_group[l], p.kv_groups.size()));
    }
    const uint32_t n_blocks = p.kv_groups[p.layer_kv_group[l]].n_blocks;
    const uint64_t kv_bytes = uint64_t{n_blocks} * p.block_size * p.n_kv_heads * p.head_dim *
                              ElementBytes(p.kv_dtype);
    for (Value* v : {&e->k_cache_[l], &e->v_cache_[l]}) {
      absl::StatusOr<Copy*> c = e->Allocated(*v, primary, kv_bytes);
      if (!c.ok()) {
        return absl::ResourceExhaustedError(absl::StrFormat(
            "cannot allocate the KV cache (%u blocks x %u tokens, %u bytes per layer and K/V) on "
            "device '%s': %s",
            n_blocks, p.block_size, kv_bytes, primary->name(), c.status().message()));
      }
      v->bytes = kv_bytes;
      v->valid = {primary};
    }
  }
  return e;
}

Executor::Value& Executor::ValueFor(const ValueRef& ref) {
  switch (ref.kind) {
    case ValueKind::kActivation: return activations_[ref.index];
    case ValueKind::kKCache: return k_cache_[ref.index];
    case ValueKind::kVCache: return v_cache_[ref.index];
    default: return step_[ref.index];
  }
}

uint64_t Executor::BytesOf(const PlanArg& arg, const StepShape& shape) const {
  uint64_t n = 1;
  for (uint32_t i = 0; i < arg.rank; ++i) n *= static_cast<uint64_t>(shape.Resolve(arg.dims[i]));
  return n * ElementBytes(arg.dtype);
}

absl::StatusOr<Executor::Copy*> Executor::Allocated(Value& value, hal::Device* device,
                                                    uint64_t bytes) {
  for (Copy& c : value.copies) {
    if (c.device != device) continue;
    if (c.buffer.size() >= bytes) return &c;
    // Grow (the step got larger); contents need not survive: callers re-copy if they need them.
    absl::StatusOr<hal::Buffer> b = device->Allocate(std::max<uint64_t>(bytes, c.buffer.size() * 2));
    if (!b.ok()) return b.status();
    c.buffer = std::move(*b);
    value.valid.erase(std::remove(value.valid.begin(), value.valid.end(), device), value.valid.end());
    return &c;
  }
  absl::StatusOr<hal::Buffer> b = device->Allocate(std::max<uint64_t>(bytes, 64));
  if (!b.ok()) return b.status();
  value.copies.push_back({device, std::move(*b)});
  return &value.copies.back();
}

absl::StatusOr<Executor::Copy*> Executor::Resident(Value& value, hal::Device* device,
                                                   uint64_t bytes) {
  const bool was_valid =
      std::find(value.valid.begin(), value.valid.end(), device) != value.valid.end();
  absl::StatusOr<Copy*> dst = Allocated(value, device, bytes);
  if (!dst.ok()) return dst;
  if (was_valid && std::find(value.valid.begin(), value.valid.end(), device) != value.valid.end()) {
    return dst;
  }
  if (value.valid.empty()) {
    if (value.host == nullptr) {
      return absl::InternalError("executor: a value is read before anything wrote it");
    }
    if (auto s = device->Write((*dst)->buffer, 0, value.host, bytes); !s.ok()) return s;
  } else {
    // Move through host memory: the source and destination plugins share nothing else.
    hal::Device* src_dev = value.valid.front();
    Copy* src = nullptr;
    for (Copy& c : value.copies) {
      if (c.device == src_dev) src = &c;
    }
    staging_.resize(bytes);
    if (auto s = src_dev->Read(src->buffer, 0, staging_.data(), bytes); !s.ok()) return s;
    if (auto s = device->Write((*dst)->buffer, 0, staging_.data(), bytes); !s.ok()) return s;
  }
  value.valid.push_back(device);
  return dst;
}

absl::StatusOr<const Executor::Placement*> Executor::Place(size_t op_index,
                                                           const kestrel_op_desc_t& desc, int mode) {
  if (placement_.size() < plan_.ops.size() * kPlacementModes) {
    placement_.resize(plan_.ops.size() * kPlacementModes);
  }
  Placement& p = placement_[op_index * kPlacementModes + mode];
  if (p.device != nullptr) return &p;
  std::string why;
  for (hal::Device* d : {primary_, fallback_}) {
    if (d == nullptr) continue;
    absl::StatusOr<kestrel_op_support_t> s = d->Query(desc);
    if (!s.ok()) return s.status();
    if (s->level != KESTREL_OP_UNSUPPORTED) {
      p = {d, s->workspace_bytes, &ops_per_device_[d->name()]};
      return &p;
    }
    absl::StrAppend(&why, why.empty() ? "" : ", ", "device '", d->name(), "' does not support it");
  }
  return absl::UnimplementedError(absl::StrCat("cannot run: ", why));
}

absl::Status Executor::RunOp(size_t op_index, const StepShape& shape, bool tree) {
  const PlanOp& op = plan_.ops[op_index];
  if (op.kind == kPlanOpSplitColumns) return RunSplit(op_index, shape);
  if (op.kind == KESTREL_OP_MOE && model_->expert_cache() != nullptr && op.inputs.size() >= 5 &&
      op.inputs[2].ref.kind == ValueKind::kWeight) {
    const int layer = model_->ExpertCacheLayer(op.inputs[2].ref.index);
    if (layer >= 0) return RunOffloadedMoe(op_index, shape, layer);
  }
  OpCall call(op, shape, tree);
  const std::vector<PlanArg>& op_inputs = call.inputs;
  auto& in = call.in;
  auto& out = call.out;
  const kestrel_op_desc_t& desc = call.desc;
  const bool tree_op = call.tree;

  absl::StatusOr<const Placement*> placed =
      Place(op_index, desc, tree_op ? 2 : (shape.n_tokens > 1 ? 1 : 0));
  if (!placed.ok()) return placed.status();
  hal::Device* d = (*placed)->device;
  const uint64_t workspace_bytes = (*placed)->workspace;

  for (size_t i = 0; i < in.size(); ++i) {
    const PlanArg& a = op_inputs[i];
    if (a.ref.kind == ValueKind::kWeight) {
      offload::WeightStreamer* streamer = model_->weight_streamer();
      if (streamer != nullptr && streamer->device() == d && streamer->Streams(a.ref.index)) {
        absl::StatusOr<offload::WeightStreamer::Binding> b = streamer->Bind(a.ref.index);
        if (!b.ok()) return b.status();
        in[i].buffer = b->buffer->handle();
        in[i].offset = b->offset;
        continue;
      }
      // Prepared weights live as long as the model, so a handle once found stays valid.
      CachedWeight* cached = nullptr;
      if (i < kCachedInputs) {
        if (weight_cache_.size() < plan_.ops.size() * kCachedInputs) {
          weight_cache_.resize(plan_.ops.size() * kCachedInputs);
        }
        cached = &weight_cache_[op_index * kCachedInputs + i];
        if (cached->device == d) {
          in[i].weight = cached->handle;
          continue;
        }
      }
      absl::StatusOr<const hal::PreparedWeight*> w = model_->Prepared(a.ref.index, d);
      if (!w.ok()) return w.status();
      in[i].weight = (*w)->handle();
      if (cached != nullptr) *cached = {d, in[i].weight};
      continue;
    }
    absl::StatusOr<Copy*> c = Resident(ValueFor(a.ref), d, BytesOf(a, shape));
    if (!c.ok()) {
      return absl::Status(c.status().code(), absl::StrCat("op '", op.label, "' input ", i, ": ",
                                                          c.status().message()));
    }
    in[i].buffer = (*c)->buffer.handle();
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const PlanArg& a = op.outputs[i];
    Value& v = ValueFor(a.ref);
    const bool in_place = a.ref.kind == ValueKind::kKCache || a.ref.kind == ValueKind::kVCache ||
                          std::any_of(op_inputs.begin(), op_inputs.end(),
                                      [&](const PlanArg& x) { return x.ref == a.ref; });
    const uint64_t bytes = BytesOf(a, shape);
    absl::StatusOr<Copy*> c = in_place ? Resident(v, d, bytes) : Allocated(v, d, bytes);
    if (!c.ok()) return c.status();
    out[i].buffer = (*c)->buffer.handle();
  }
  // Input pointers may have moved if an output grew the same value's buffer; re-bind inputs.
  for (size_t i = 0; i < in.size(); ++i) {
    const PlanArg& a = op_inputs[i];
    if (a.ref.kind == ValueKind::kWeight) continue;
    for (Copy& c : ValueFor(a.ref).copies) {
      if (c.device == d) in[i].buffer = c.buffer.handle();
    }
  }
  const hal::Buffer* ws = nullptr;
  if (workspace_bytes > 0) {
    hal::Buffer& w = workspace_[d];
    if (w.size() < workspace_bytes) {
      absl::StatusOr<hal::Buffer> b = d->Allocate(workspace_bytes);
      if (!b.ok()) return b.status();
      w = std::move(*b);
    }
    ws = &w;
  }
  if (auto s = d->Execute(desc, ws); !s.ok()) return s;
  ++*(*placed)->op_count;
  for (const PlanArg& a : op.outputs) {
    Value& v = ValueFor(a.ref);
    v.valid = {d};
    v.bytes = BytesOf(a, shape);
  }
  return absl::OkStatus();
}

absl::Status Executor::Run(const StepInputs& inputs, std::vector<float>* logits) {
  last_tokens_ = 0;
  StepShape shape;
  shape.n_tokens = static_cast<int64_t>(inputs.tokens.size());
  shape.n_seqs = inputs.n_seqs;
  shape.max_blocks = inputs.max_blocks;
  shape.n_rows = static_cast<int64_t>(inputs.logit_rows.size());
  const std::vector<int32_t>* host[kNumStepInputs] = {
      &inputs.tokens,      &inputs.positions, &inputs.slots,      &inputs.block_tables,
      &inputs.query_start, &inputs.kv_lens,   &inputs.logit_rows, &inputs.parents};
  const bool tree = !inputs.parents.empty();
  if (tree && inputs.parents.size() != inputs.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "executor: a tree step has %u parents for %u tokens", inputs.parents.size(),
        inputs.tokens.size()));
  }
  if (inputs.groups.size() + 1 != plan_.kv_groups.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "executor: the step has inputs for %u KV groups, the plan has %u",
        inputs.groups.size() + 1, plan_.kv_groups.size()));
  }
  auto bind = [&](int32_t id, const std::vector<int32_t>& data) {
    step_[id].valid.clear();  // this step's data comes from the host
    step_[id].host = data.data();
    step_[id].bytes = data.size() * sizeof(int32_t);
  };
  for (int i = 0; i < kNumStepInputs; ++i) bind(i, *host[i]);
  for (uint32_t g = 1; g < plan_.kv_groups.size(); ++g) {
    const StepInputs::Group& in = inputs.groups[g - 1];
    if (in.slots.size() != inputs.slots.size() || in.block_tables.size() != inputs.block_tables.size()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "executor: KV group %u has %u slots and %u block-table entries, group 0 %u and %u", g,
          in.slots.size(), in.block_tables.size(), inputs.slots.size(), inputs.block_tables.size()));
    }
    bind(SlotsInput(g), in.slots);
    bind(BlockTablesInput(g), in.block_tables);
  }
  if (auto s = RunOps(shape, tree); !s.ok()) return s;
  // MoE routing counts of this step, committed only if the whole step succeeds.
  const uint32_t E = plan_.n_experts;
  step_counts_.resize(plan_.expert_stats.size() * E);
  for (size_t l = 0; l < plan_.expert_stats.size(); ++l) {
    if (auto s = ReadBack(activations_[plan_.expert_stats[l]], step_counts_.data() + l * E,
                          uint64_t{E} * sizeof(int32_t));
        !s.ok()) {
      return ReadBackError(plan_.expert_stats[l], s);
    }
  }
  const uint64_t bytes = static_cast<uint64_t>(shape.n_rows) * plan_.activations[plan_.logits].elems_per_row * sizeof(float);
  logits->resize(bytes / sizeof(float));
  if (auto s = ReadBack(activations_[plan_.logits], logits->data(), bytes); !s.ok()) {
    return ReadBackError(plan_.logits, s);
  }
  for (size_t i = 0; i < step_counts_.size(); ++i) {
    if (step_counts_[i] < 0 || step_counts_[i] > shape.n_tokens) {
      return absl::InternalError(absl::StrFormat(
          "executor: the MOE op of layer %u reported %d tokens for expert %u in a step of %d "
          "tokens",
          i / E, step_counts_[i], i % E, shape.n_tokens));
    }
  }
  for (size_t i = 0; i < step_counts_.size(); ++i) {
    expert_counts_[i] += static_cast<uint64_t>(step_counts_[i]);
  }
  last_tokens_ = shape.n_tokens;
  return absl::OkStatus();
}

absl::Status Executor::RunOps(const StepShape& shape, bool tree) {
  // A streamed model's ring is shared by the model's sessions: their steps take turns.
  offload::WeightStreamer* streamer = model_->weight_streamer();
  std::unique_lock<std::mutex> lock;
  if (streamer != nullptr) {
    lock = std::unique_lock<std::mutex>(streamer->mutex());
    if (auto s = streamer->BeginStep(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("weight streaming: ", s.message()));
    }
  }
  // Any failure of an op's work (placement, allocation, copies, waits, the op itself) names the
  // op; the HAL's message names the device and the slot.
  absl::Status status;
  for (size_t i = 0; i < plan_.ops.size() && status.ok(); ++i) {
    if (auto s = RunOp(i, shape, tree); !s.ok()) {
      const PlanOp& op = plan_.ops[i];
      status = absl::Status(s.code(), absl::StrCat("op '", op.label, "' (",
                                                   KindName(op.kind), "): ", s.message()));
    }
  }
  if (streamer != nullptr) {
    absl::Status s = streamer->EndStep(!status.ok());
    if (status.ok() && !s.ok()) {
      status = absl::Status(s.code(), absl::StrCat("weight streaming: ", s.message()));
    }
  }
  return status;
}

absl::Status Executor::ReadBackError(int32_t activation, const absl::Status& s) const {
  std::string producer = "(none)";
  for (const PlanOp& op : plan_.ops) {
    for (const PlanArg& a : op.outputs) {
      if (a.ref.kind == ValueKind::kActivation && a.ref.index == activation) {
        producer = absl::StrCat("'", op.label, "' (", KindName(op.kind), ")");
      }
    }
  }
  return absl::Status(s.code(), absl::StrCat("reading back the output of op ", producer, ": ",
                                             s.message()));
}

bool Executor::SupportsTreeMask() {
  if (tree_mask_support_ >= 0) return tree_mask_support_ == 1;
  tree_mask_support_ = 0;
  for (const PlanOp& op : plan_.ops) {
    if (op.kind != KESTREL_OP_PAGED_ATTENTION) continue;
    // The op as a two-token tree step of one sequence would describe it.
    StepShape shape;
    shape.n_tokens = 2;
    shape.n_seqs = 1;
    shape.max_blocks = 1;
    shape.n_rows = 1;
    OpCall call(op, shape, /*tree_step=*/true);
    for (hal::Device* d : {primary_, fallback_}) {
      if (d == nullptr) continue;
      absl::StatusOr<kestrel_op_support_t> s = d->Query(call.desc);
      if (s.ok() && s->level != KESTREL_OP_UNSUPPORTED) tree_mask_support_ = 1;
    }
    break;
  }
  return tree_mask_support_ == 1;
}

absl::Status Executor::ReadHidden(std::vector<float>* out) {
  if (plan_.hidden < 0) {
    return absl::FailedPreconditionError("executor: the plan exposes no hidden state");
  }
  if (last_tokens_ == 0) return absl::FailedPreconditionError("executor: no step has run");
  const uint64_t n = static_cast<uint64_t>(last_tokens_) * plan_.activations[plan_.hidden].elems_per_row;
  out->resize(n);
  if (auto s = ReadBack(activations_[plan_.hidden], out->data(), n * sizeof(float)); !s.ok()) {
    return ReadBackError(plan_.hidden, s);
  }
  return absl::OkStatus();
}

absl::Status Executor::ReadBack(const Value& value, void* out, uint64_t bytes) {
  if (value.valid.empty()) return absl::InternalError("executor: a value was not produced");
  hal::Device* src = value.valid.front();
  for (const Copy& c : value.copies) {
    if (c.device == src) return src->Read(c.buffer, 0, out, bytes);
  }
  return absl::InternalError("executor: a value has no copy on its valid device");
}

uint64_t Executor::kv_row_bytes() const {
  return uint64_t{plan_.n_kv_heads} * plan_.head_dim * ElementBytes(plan_.kv_dtype);
}

namespace {

// Runs of consecutive slots: (index of the first, count).
template <typename F>
absl::Status ForEachSlotRun(absl::Span<const int32_t> slots, F&& f) {
  for (size_t i = 0; i < slots.size();) {
    size_t j = i + 1;
    while (j < slots.size() && slots[j] == slots[j - 1] + 1) ++j;
    if (absl::Status s = f(i, j - i); !s.ok()) return s;
    i = j;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Executor::ReadKvRows(uint32_t layer, bool v, absl::Span<const int32_t> slots,
                                  uint8_t* rows) {
  if (layer >= plan_.n_layers) return absl::OutOfRangeError("executor: KV layer out of range");
  Value& value = (v ? v_cache_ : k_cache_)[layer];
  if (value.valid.empty()) return absl::InternalError("executor: the KV cache has no current copy");
  hal::Device* src = value.valid.front();
  const Copy* copy = nullptr;
  for (const Copy& c : value.copies) {
    if (c.device == src) copy = &c;
  }
  if (copy == nullptr) return absl::InternalError("executor: the KV cache has no copy on its device");
  const uint64_t row = kv_row_bytes();
  return ForEachSlotRun(slots, [&](size_t i, size_t n) {
    return src->Read(copy->buffer, static_cast<uint64_t>(slots[i]) * row, rows + i * row, n * row);
  });
}

absl::Status Executor::WriteKvRows(uint32_t layer, bool v, absl::Span<const int32_t> slots,
                                   const uint8_t* rows) {
  if (layer >= plan_.n_layers) return absl::OutOfRangeError("executor: KV layer out of range");
  Value& value = (v ? v_cache_ : k_cache_)[layer];
  absl::StatusOr<Copy*> c = Resident(value, primary_, value.bytes);
  if (!c.ok()) return c.status();
  const uint64_t row = kv_row_bytes();
  absl::Status s = ForEachSlotRun(slots, [&](size_t i, size_t n) {
    return primary_->Write((*c)->buffer, static_cast<uint64_t>(slots[i]) * row, rows + i * row, n * row);
  });
  value.valid = {primary_};
  return s;
}

absl::Status Executor::CopyBlocks(const std::vector<int32_t>& pairs, uint32_t group) {
  return CopyRanges(pairs, uint64_t{plan_.block_size} * plan_.n_kv_heads * plan_.head_dim *
                               ElementBytes(plan_.kv_dtype), group);
}

absl::Status Executor::CopySlots(const std::vector<int32_t>& pairs, uint32_t group) {
  return CopyRanges(pairs, uint64_t{plan_.n_kv_heads} * plan_.head_dim * ElementBytes(plan_.kv_dtype),
                    group);
}

absl::Status Executor::CopyRanges(const std::vector<int32_t>& pairs, uint64_t block_bytes,
                                  uint32_t group) {
  if (pairs.empty()) return absl::OkStatus();
  for (uint32_t l = 0; l < plan_.n_layers; ++l) {
    if (plan_.layer_kv_group[l] != group) continue;
    for (Value* v : {&k_cache_[l], &v_cache_[l]}) {
      absl::StatusOr<Copy*> c = Resident(*v, primary_, v->bytes);
      if (!c.ok()) return c.status();
      for (size_t i = 0; i + 1 < pairs.size(); i += 2) {
        if (auto s = primary_->Copy((*c)->buffer, pairs[i] * block_bytes, (*c)->buffer,
                                    pairs[i + 1] * block_bytes, block_bytes);
            !s.ok()) {
          return absl::Status(s.code(), absl::StrCat("KV block copy (copy-on-write) of layer ", l,
                                                     ": ", s.message()));
        }
      }
      v->valid = {primary_};
    }
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
