// The Executor's path for a MOE op whose expert stacks the model left in the file
// (runtime/offload/expert_cache.h). The op's own routing decides which experts a step needs, so
// the first execution runs over a one-expert view of an expert the cache already holds (the probe)
// and reports the routing counts of all E experts; every other routed expert is then fetched
// (from the cache or the file) and run over its own one-expert view into a scratch output, which
// ADD sums into the op's output. The MOE kind defines a token's output over a local expert range
// as the sum of its local experts' weighted FFNs (weights normalised over all K), so the sum of
// the one-expert runs is the fully resident result, up to the order of float additions.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hal/src/op_desc.h"
#include "runtime/plan/executor.h"

namespace kestrel {
namespace runtime {

absl::Status Executor::RunOffloadedMoe(size_t op_index, const StepShape& shape, int layer) {
  const PlanOp& op = plan_.ops[op_index];
  offload::ExpertCache& cache = *model_->expert_cache();
  hal::Device* d = cache.device();
  kestrel_op_moe_params_t p{};
  std::memcpy(&p, op.params.data(), std::min(sizeof p, op.params.size()));
  const uint32_t E = p.n_experts;
  if (p.first_expert != 0 || p.n_local_experts != E) {
    return absl::UnimplementedError(absl::StrCat(
        "op '", op.label, "': an offloaded MOE op must cover all experts (expert-parallel splits "
        "are not combined with the expert cache)"));
  }
  kestrel_tensor_arg_t in[5], out[2];
  auto describe = [&](const PlanArg& a, kestrel_tensor_arg_t* t) {
    *t = kestrel_tensor_arg_t{};
    t->desc.struct_size = sizeof(kestrel_tensor_desc_t);
    t->desc.dtype = a.dtype;
    t->desc.rank = a.rank;
    for (uint32_t i = 0; i < a.rank; ++i) t->desc.dims[i] = shape.Resolve(a.dims[i]);
  };
  for (int i = 0; i < 5; ++i) describe(op.inputs[i], &in[i]);
  for (int i = 2; i < 5; ++i) in[i].desc.dims[0] = 1;
  describe(op.outputs[0], &out[0]);
  out[1] = hal::TensorArg(KESTREL_DTYPE_I32, {E});
  p.n_local_experts = 1;
  kestrel_op_desc_t desc = hal::OpDesc(KESTREL_OP_MOE, op.op_version, in, 5, out, 2, &p, sizeof p);
  absl::StatusOr<kestrel_op_support_t> support = d->Query(desc);
  if (!support.ok()) return support.status();
  if (support->level == KESTREL_OP_UNSUPPORTED) {
    return absl::UnimplementedError(absl::StrCat(
        "op '", op.label, "': device '", d->name(),
        "' holds the expert cache but does not run MOE over one expert"));
  }
  absl::StatusOr<const hal::Buffer*> ws = Workspace(d, support->workspace_bytes);
  if (!ws.ok()) return ws.status();

  absl::StatusOr<Copy*> x = Resident(ValueFor(op.inputs[0].ref), d, BytesOf(op.inputs[0], shape));
  if (!x.ok()) return x.status();
  absl::StatusOr<const hal::PreparedWeight*> router = model_->Prepared(op.inputs[1].ref.index, d);
  if (!router.ok()) return router.status();
  const uint64_t out_bytes = BytesOf(op.outputs[0], shape);
  Value& out_value = ValueFor(op.outputs[0].ref);
  Value& stats_value = op.outputs.size() > 1 ? ValueFor(op.outputs[1].ref) : moe_stats_;
  absl::StatusOr<Copy*> o = Allocated(out_value, d, out_bytes);
  if (!o.ok()) return o.status();
  absl::StatusOr<Copy*> st = Allocated(stats_value, d, uint64_t{E} * sizeof(int32_t));
  if (!st.ok()) return st.status();
  absl::StatusOr<Copy*> part = Allocated(moe_partial_, d, out_bytes);
  if (!part.ok()) return part.status();
  in[0].buffer = (*x)->buffer.handle();
  in[1].weight = (*router)->handle();

  std::lock_guard<std::mutex> lock(cache.mutex());
  if (!prefetch_unsupported_ && cache.PrefetchWorthwhile()) {
    if (auto s = PrefetchNextExperts(op_index, shape, layer, (*x)->buffer, d); !s.ok()) return s;
  }
  auto run = [&](uint32_t expert, const offload::ExpertCache::Experts& w,
                 kestrel_plugin_buffer_t* dst, bool with_stats) -> absl::Status {
    p.first_expert = expert;
    in[2].weight = w.gate->handle();
    in[3].weight = w.up->handle();
    in[4].weight = w.down->handle();
    out[0].buffer = dst;
    out[1].buffer = (*st)->buffer.handle();
    desc.n_outputs = with_stats ? 2 : 1;
    if (auto s = d->Execute(desc, *ws); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("op '", op.label, "' (expert ", expert, "): ",
                                                 s.message()));
    }
    ++ops_per_device_[d->name()];
    return absl::OkStatus();
  };
  // The probe: the layer's expert used last when the cache still holds it; else another layer's
  // cached expert of the same shapes stands in under expert id 0, which is exact unless the
  // routing selects expert 0, and then that expert is read and run again. Only a cold cache reads an expert before knowing the routing.
  const uint32_t l = static_cast<uint32_t>(layer);
  const int32_t resident = cache.AnyResident(l);
  uint32_t probe = resident < 0 ? 0 : static_cast<uint32_t>(resident);
  int32_t probe_slot = -1;
  offload::ExpertCache::Experts borrowed;
  const bool borrow = resident < 0 && cache.Borrow(l, &borrowed);
  absl::StatusOr<offload::ExpertCache::Experts> pw =
      borrow ? absl::StatusOr<offload::ExpertCache::Experts>(borrowed)
             : cache.Get(l, probe, &probe_slot, -1);
  if (!pw.ok()) return pw.status();
  if (auto s = run(probe, *pw, (*o)->buffer.handle(), true); !s.ok()) return s;
  std::vector<int32_t> counts(E);
  if (auto s = d->Read((*st)->buffer, 0, counts.data(), uint64_t{E} * sizeof(int32_t)); !s.ok()) {
    return s;
  }
  if (borrow && counts[probe] > 0) {
    pw = cache.Get(l, probe, &probe_slot, -1);
    if (!pw.ok()) return pw.status();
    if (auto s = run(probe, *pw, (*o)->buffer.handle(), true); !s.ok()) return s;
  }

  kestrel_tensor_arg_t add_in[2] = {out[0], out[0]}, add_out = out[0];
  add_in[0].buffer = (*o)->buffer.handle();
  add_in[1].buffer = (*part)->buffer.handle();
  add_out.buffer = (*o)->buffer.handle();
  const kestrel_op_desc_t add = hal::OpDesc(KESTREL_OP_ADD, 1, add_in, 2, &add_out, 1);
  for (uint32_t e = 0; e < E; ++e) {
    if (counts[e] <= 0) continue;
    if (e == probe) {
      cache.Record(l, pw->hit);
      continue;
    }
    if (cache.MissOnHost(l, e, static_cast<uint32_t>(shape.n_tokens))) {
      desc.n_outputs = 1;
      if (auto s = RunMissOnHost(op_index, shape, l, e, desc, d, add); !s.ok()) return s;
      continue;
    }
    int32_t slot = -1;
    absl::StatusOr<offload::ExpertCache::Experts> w = cache.Get(l, e, &slot, probe_slot);
    if (!w.ok()) return w.status();
    cache.Record(l, w->hit);
    if (auto s = run(e, *w, (*part)->buffer.handle(), false); !s.ok()) return s;
    if (auto s = d->Execute(add, nullptr); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("op '", op.label, "' (sum of experts): ",
                                                 s.message()));
    }
  }
  out_value.valid = {d};
  out_value.bytes = out_bytes;
  stats_value.valid = {d};
  stats_value.bytes = uint64_t{E} * sizeof(int32_t);
  return absl::OkStatus();
}

absl::StatusOr<const hal::Buffer*> Executor::Workspace(hal::Device* d, uint64_t bytes) {
  if (bytes == 0) return nullptr;
  hal::Buffer& w = workspace_[d];
  if (w.size() < bytes) {
    absl::StatusOr<hal::Buffer> b = d->Allocate(bytes);
    if (!b.ok()) return b.status();
    w = std::move(*b);
  }
  return &w;
}

absl::Status Executor::RunMissOnHost(size_t op_index, const StepShape& shape, uint32_t layer,
                                      uint32_t expert, const kestrel_op_desc_t& device_desc,
                                      hal::Device* d, kestrel_op_desc_t add) {
  const PlanOp& op = plan_.ops[op_index];
  offload::ExpertCache& cache = *model_->expert_cache();
  hal::Device* h = cache.host_device();
  absl::StatusOr<offload::ExpertCache::Experts> w = cache.LoadOnHost(layer, expert);
  if (!w.ok()) return w.status();
  const auto t0 = std::chrono::steady_clock::now();
  kestrel_tensor_arg_t in[5], out;
  std::copy(device_desc.inputs, device_desc.inputs + 5, in);
  out = device_desc.outputs[0];
  kestrel_op_moe_params_t p;
  std::memcpy(&p, device_desc.params, sizeof p);
  p.first_expert = expert;
  kestrel_op_desc_t desc = device_desc;
  desc.inputs = in;
  desc.outputs = &out;
  desc.params = &p;
  desc.n_outputs = 1;
  absl::StatusOr<Copy*> x = Resident(ValueFor(op.inputs[0].ref), h, BytesOf(op.inputs[0], shape));
  if (!x.ok()) return x.status();
  absl::StatusOr<const hal::PreparedWeight*> router = model_->Prepared(op.inputs[1].ref.index, h);
  if (!router.ok()) return router.status();
  const uint64_t out_bytes = BytesOf(op.outputs[0], shape);
  absl::StatusOr<Copy*> o = Allocated(moe_host_out_, h, out_bytes);
  if (!o.ok()) return o.status();
  in[0].buffer = (*x)->buffer.handle();
  in[1].weight = (*router)->handle();
  in[2].weight = w->gate->handle();
  in[3].weight = w->up->handle();
  in[4].weight = w->down->handle();
  out.buffer = (*o)->buffer.handle();
  absl::StatusOr<kestrel_op_support_t> support = h->Query(desc);
  if (!support.ok()) return support.status();
  if (support->level == KESTREL_OP_UNSUPPORTED) {
    return absl::UnimplementedError(absl::StrCat("op '", op.label, "': the host device '",
                                                 h->name(), "' does not run MOE over one expert"));
  }
  absl::StatusOr<const hal::Buffer*> ws = Workspace(h, support->workspace_bytes);
  if (!ws.ok()) return ws.status();
  if (auto s = h->Execute(desc, *ws); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("op '", op.label, "' (expert ", expert,
                                               " on the host device): ", s.message()));
  }
  ++ops_per_device_[h->name()];
  moe_host_out_.valid = {h};
  moe_host_out_.bytes = out_bytes;
  absl::StatusOr<Copy*> on_device = Resident(moe_host_out_, d, out_bytes);
  if (!on_device.ok()) return on_device.status();
  kestrel_tensor_arg_t add_in[2] = {add.inputs[0], add.inputs[1]};
  add_in[1].buffer = (*on_device)->buffer.handle();
  add.inputs = add_in;
  if (auto s = d->Execute(add, nullptr); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("op '", op.label, "' (sum of experts): ",
                                               s.message()));
  }
  cache.RecordHostRun(layer, static_cast<uint32_t>(shape.n_tokens),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return absl::OkStatus();
}

absl::Status Executor::PrefetchNextExperts(size_t op_index, const StepShape& shape, int layer,
                                            const hal::Buffer& x, hal::Device* d) {
  const PlanOp* next = nullptr;
  for (size_t i = op_index + 1; i < plan_.ops.size() && next == nullptr; ++i) {
    const PlanOp& o = plan_.ops[i];
    if (o.kind == KESTREL_OP_MOE && o.inputs.size() >= 5 &&
        o.inputs[2].ref.kind == ValueKind::kWeight &&
        model_->ExpertCacheLayer(o.inputs[2].ref.index) == layer + 1) {
      next = &o;
    }
  }
  if (next == nullptr) return absl::OkStatus();
  kestrel_op_moe_params_t p{};
  std::memcpy(&p, next->params.data(), std::min(sizeof p, next->params.size()));
  const uint32_t E = p.n_experts, K = p.top_k;
  const uint32_t T = static_cast<uint32_t>(shape.n_tokens);
  const uint32_t D = static_cast<uint32_t>(shape.Resolve(next->inputs[0].dims[1]));
  absl::StatusOr<const hal::PreparedWeight*> router = model_->Prepared(next->inputs[1].ref.index, d);
  if (!router.ok()) return router.status();
  // logits [T, E] = x [T, D] router[E, D]^T: the routing scores before softmax or sigmoid, which
  // keep their order, so the top K of the logits are the experts the routing would pick.
  kestrel_tensor_arg_t in[2] = {hal::TensorArg(KESTREL_DTYPE_F32, {T, D}), {}};
  kestrel_tensor_arg_t out = hal::TensorArg(KESTREL_DTYPE_F32, {T, E});
  in[0].buffer = x.handle();
  in[1].desc = model_->weight(next->inputs[1].ref.index).desc;
  in[1].weight = (*router)->handle();
  const kestrel_op_desc_t desc = hal::OpDesc(KESTREL_OP_MATMUL, 1, in, 2, &out, 1);
  absl::StatusOr<kestrel_op_support_t> support = d->Query(desc);
  if (!support.ok()) return support.status();
  if (support->level == KESTREL_OP_UNSUPPORTED) {
    prefetch_unsupported_ = true;
    return absl::OkStatus();
  }
  absl::StatusOr<const hal::Buffer*> ws = Workspace(d, support->workspace_bytes);
  if (!ws.ok()) return ws.status();
  const uint64_t bytes = uint64_t{T} * E * sizeof(float);
  absl::StatusOr<Copy*> logits = Allocated(moe_logits_, d, bytes);
  if (!logits.ok()) return logits.status();
  out.buffer = (*logits)->buffer.handle();
  if (auto s = d->Execute(desc, *ws); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("expert prefetch (router of the layer after op '",
                                               plan_.ops[op_index].label, "'): ", s.message()));
  }
  router_logits_.resize(uint64_t{T} * E);
  if (auto s = d->Read((*logits)->buffer, 0, router_logits_.data(), bytes); !s.ok()) return s;
  std::vector<uint32_t> votes(E, 0), order(E);
  for (uint32_t t = 0; t < T; ++t) {
    const float* row = router_logits_.data() + uint64_t{t} * E;
    std::iota(order.begin(), order.end(), 0u);
    std::partial_sort(order.begin(), order.begin() + std::min(K, E), order.end(),
                      [&](uint32_t a, uint32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    for (uint32_t k = 0; k < std::min(K, E); ++k) ++votes[order[k]];
  }
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return votes[a] > votes[b]; });
  std::vector<uint32_t> likely;
  for (uint32_t e : order) {
    if (votes[e] > 0) likely.push_back(e);
  }
  model_->expert_cache()->Prefetch(static_cast<uint32_t>(layer + 1), likely);
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
