#include "runtime/offload/memory_planner.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/offload/file_reader.h"
#include "runtime/offload/weight_streamer.h"

namespace kestrel {
namespace runtime {
namespace offload {
namespace {

// "cpu" budgets the device "cpu:0" too: users name a device the way `kestrel devices` lists it.
bool Names(const std::string& budget, const std::string& device) {
  if (budget == device) return true;
  return device.size() > budget.size() && device.compare(0, budget.size(), budget) == 0 &&
         device[budget.size()] == ':';
}

struct Limits {
  uint64_t device = UINT64_MAX;
  bool device_given = false;
  uint64_t host = 0;
  std::string why;  // which limit `device` is
};

absl::StatusOr<Limits> ReadLimits(const PlanRequest& r) {
  Limits l;
  if (r.device_capacity > 0) {
    l.device = r.device_capacity;
    l.why = absl::StrCat("the capacity of device '", r.device, "'");
  }
  for (const MemBudget& b : r.budgets) {
    if (b.device == kHostBudget) {
      l.host = b.bytes;
      if (!r.device_is_host || b.bytes >= l.device) continue;
      l.device = b.bytes;
      l.device_given = true;
      l.why = absl::StrCat("the host budget (device '", r.device, "' computes in host memory)");
    } else if (Names(b.device, r.device)) {
      if (b.bytes >= l.device) continue;
      l.device = b.bytes;
      l.device_given = true;
      l.why = absl::StrCat("the budget of device '", r.device, "'");
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "memory budget for '", b.device, "': the model runs on device '", r.device,
          "'; budgets may name it or 'host'"));
    }
  }
  return l;
}

// KV swap space: what the host budget leaves after everything planned in host memory (all of the
// device's share when the device computes in host memory). None without a host budget; an
// "unlimited" host budget (UINT64_MAX) leaves unlimited swap space, not UINT64_MAX less the used.
void PlanHostSwap(MemoryPlan* p) {
  if (p->host_budget == 0) return;
  if (p->host_budget == UINT64_MAX) {
    p->host_swap_bytes = UINT64_MAX;
    return;
  }
  const uint64_t used = (p->device_is_host ? p->device_total_bytes() : 0) +
                        p->host_resident_bytes +
                        (p->stream_staging_on_host ? p->stream_staging_bytes : 0);
  p->host_swap_bytes = p->host_budget > used ? p->host_budget - used : 0;
}

// Per decoder layer, its streamable matrices and their bytes.
struct LayerMatrices {
  std::vector<int> ids;
  uint64_t bytes = 0;
  uint64_t slot_bytes = 0;  // in a ring slot, each matrix 256-aligned (weight_streamer.h)
  uint64_t largest = 0;     // the largest matrix (what a read from the file stages)
};

// `k` of the `n` layers, spread evenly over the depth: between two streamed layers there are
// resident ones whose compute covers the next copy.
std::vector<size_t> Spread(size_t k, size_t n) {
  std::vector<size_t> out;
  for (size_t j = 0; j < k; ++j) out.push_back((2 * j + 1) * n / (2 * k));
  return out;
}

// Streams the fewest layers that bring the device's share within `target` bytes: the resident
// weights less the streamed ones, plus the ring and the KV. The deepest prefetch that fits wins.
absl::Status PlanStreaming(const PlanRequest& r, const Limits& limits, uint64_t target,
                           uint64_t expert_floor, MemoryPlan* p) {
  std::map<int32_t, LayerMatrices> by_layer;
  for (const PlannedTensor& t : r.tensors) {
    if (!t.streamable || t.expert_stack || t.layer < 0) continue;
    by_layer[t.layer].ids.push_back(t.weight_id);
    by_layer[t.layer].bytes += t.bytes;
    by_layer[t.layer].slot_bytes += (t.bytes + 255) / 256 * 256;
    by_layer[t.layer].largest = std::max(by_layer[t.layer].largest, t.bytes);
  }
  std::vector<std::pair<int32_t, const LayerMatrices*>> layers;
  for (const auto& [layer, m] : by_layer) layers.emplace_back(layer, &m);
  std::vector<uint32_t> distances;
  if (!r.device_async) {
    distances = {0};
  } else if (r.prefetch_distance > 0) {
    distances = {r.prefetch_distance};
  } else {
    distances = {2, 1};
  }
  uint64_t least = UINT64_MAX;
  for (size_t k = 1; k <= layers.size(); ++k) {
    uint64_t streamed = 0, slot = 0, largest = 0;
    const std::vector<size_t> picked = Spread(k, layers.size());
    for (size_t i : picked) {
      streamed += layers[i].second->bytes;
      slot = std::max(slot, layers[i].second->slot_bytes);
      largest = std::max(largest, layers[i].second->largest);
    }
    for (uint32_t d : distances) {
      const uint64_t slots = std::min<uint64_t>(uint64_t{d} + 1, k);
      uint64_t staging =
          r.stream_from_file ? StreamStagingBytes(largest, r.device_async, slots, slot) : 0;
      // An async device's staging is host memory its queued copies read, not a device
      // allocation: the host budget's (with the device's total when that is host memory too).
      const bool on_host = r.device_async;
      const uint64_t total =
          p->resident_bytes - streamed + slots * slot + (on_host ? 0 : staging) + p->kv_bytes;
      least = std::min(least, total);
      if (total > target) continue;
      if (on_host && p->host_budget > 0 && p->host_budget != UINT64_MAX &&
          (r.device_is_host ? total : 0) + p->host_resident_bytes + staging > p->host_budget) {
        staging = 0;  // no room to read from the file: the queued copies read the mapping
      }
      std::vector<bool> is_streamed(r.tensors.size() + 1, false);
      for (size_t i : picked) {
        p->streamed_layers.push_back(static_cast<uint32_t>(layers[i].first));
        for (int id : layers[i].second->ids) p->streamed.push_back(id);
      }
      std::sort(p->streamed.begin(), p->streamed.end());
      p->resident.erase(std::remove_if(p->resident.begin(), p->resident.end(),
                                       [&](int id) {
                                         return std::binary_search(p->streamed.begin(),
                                                                   p->streamed.end(), id);
                                       }),
                        p->resident.end());
      p->resident_bytes -= streamed;
      p->streamed_bytes = streamed;
      p->stream_slot_bytes = slot;
      p->stream_slots = static_cast<uint32_t>(slots);
      p->stream_staging_bytes = staging;
      p->stream_staging_on_host = on_host;
      p->prefetch_distance = static_cast<uint32_t>(slots - 1);
      return absl::OkStatus();
    }
  }
  const uint64_t need = (layers.empty() ? p->resident_bytes + p->kv_bytes : least) + expert_floor;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "memory budget: %s is %u bytes (%s), but the weights that must stay resident need %u "
      "bytes (%s) and the KV cache for %u tokens (%u context x %u sequences) %u bytes (%s); with "
      "every streamable layer (%u) streamed through the smallest ring the device still needs %u "
      "bytes (%s)%s, %u bytes too many: raise the budget or lower --ctx",
      limits.why, p->device_budget, FormatBytes(p->device_budget), p->resident_bytes,
      FormatBytes(p->resident_bytes), p->kv_tokens, r.context, r.sequences, p->kv_bytes,
      FormatBytes(p->kv_bytes), layers.size(), need, FormatBytes(need),
      expert_floor > 0 ? absl::StrFormat(" including the smallest expert cache (%u bytes)",
                                         expert_floor)
                       : std::string(),
      need > p->device_budget ? need - p->device_budget : 0));
}

// The KV of `sequences` sequences of `context` tokens; sliding-window layers hold only their
// window's share (PlanRequest::kv_window_tokens).
uint64_t KvBytes(const PlanRequest& r) {
  if (r.kv_window_tokens.empty()) return r.kv_bytes_per_token * r.context * r.sequences;
  uint64_t tokens = 0;  // per sequence, summed over the layers
  for (uint32_t w : r.kv_window_tokens) tokens += w == 0 ? r.context : std::min(w, r.context);
  return r.kv_layer_bytes_per_token * tokens * r.sequences;
}

}  // namespace

absl::StatusOr<MemoryPlan> PlanMemory(const PlanRequest& r) {
  absl::StatusOr<Limits> limits = ReadLimits(r);
  if (!limits.ok()) return limits.status();
  MemoryPlan p;
  p.device = r.device;
  p.device_budget = limits->device;
  p.device_budget_given = limits->device_given;
  p.host_budget = limits->host;
  p.device_is_host = r.device_is_host;
  p.top_k = r.top_k;
  p.kv_tokens = r.context * r.sequences;
  p.kv_bytes = std::max(KvBytes(r), r.kv_bytes_min);
  std::map<int32_t, uint64_t> layer_expert_bytes;
  // The MOE op reads a layer's three stacks on one device: one stack the device cannot hold sends
  // every expert to the fallback device (and none to an expert cache).
  const bool experts_on_host = std::any_of(r.tensors.begin(), r.tensors.end(), [](const PlannedTensor& t) {
    return t.expert_stack && !t.device_can_hold;
  });
  std::vector<std::string> host_dtypes;
  for (const PlannedTensor& t : r.tensors) {
    if (!t.device_can_hold || (t.expert_stack && experts_on_host)) {
      const std::string name =
          r.dtype_name != nullptr ? r.dtype_name(t.dtype) : absl::StrCat("dtype ", t.dtype);
      if (!t.device_can_hold &&
          std::find(host_dtypes.begin(), host_dtypes.end(), name) == host_dtypes.end()) {
        host_dtypes.push_back(name);
      }
      p.host_resident.push_back(t.weight_id);
      p.host_resident_bytes += t.bytes;
    } else if (t.expert_stack) {
      p.expert_bytes += t.bytes;
      layer_expert_bytes[t.layer] += t.bytes;
    } else {
      p.resident.push_back(t.weight_id);
      p.resident_bytes += t.bytes;
    }
  }
  for (const auto& [layer, bytes] : layer_expert_bytes) {
    p.expert_slot_bytes = std::max(p.expert_slot_bytes, (bytes + r.n_experts - 1) / r.n_experts);
  }
  // The smallest expert cache (top-k slots and the staging slot) when the experts do not fit.
  const uint64_t expert_floor =
      p.expert_bytes == 0 ? 0
                          : std::min(p.expert_bytes, (uint64_t{r.top_k} + 1) * p.expert_slot_bytes);
  const bool streamable = std::any_of(r.tensors.begin(), r.tensors.end(), [](const PlannedTensor& t) {
    return t.streamable && !t.expert_stack && t.layer >= 0;
  });
  if (streamable && p.resident_bytes + p.kv_bytes + expert_floor > p.device_budget) {
    const uint64_t target =
        p.device_budget > expert_floor ? p.device_budget - expert_floor : 0;
    if (absl::Status s = PlanStreaming(r, *limits, target, expert_floor, &p); !s.ok()) return s;
  }
  const uint64_t fixed = p.resident_bytes + p.kv_bytes + p.stream_device_bytes();
  if (fixed > p.device_budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory budget: %s is %u bytes (%s), but the weights that must stay resident need %u "
        "bytes (%s) and the KV cache for %u tokens (%u context x %u sequences) %u bytes (%s): "
        "%u bytes (%s) in all, %u bytes too many, and no layer of the model can be streamed on "
        "this device: raise the budget or lower --ctx",
        limits->why, p.device_budget, FormatBytes(p.device_budget), p.resident_bytes,
        FormatBytes(p.resident_bytes), p.kv_tokens, r.context, r.sequences, p.kv_bytes,
        FormatBytes(p.kv_bytes), fixed, FormatBytes(fixed), fixed - p.device_budget));
  }
  if (p.host_budget > 0 && p.host_resident_bytes > p.host_budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory budget: %u bytes (%s) of weights in dtypes device '%s' does not take (%s) run on "
        "the fallback device from host memory, more than the host budget of %u bytes (%s)",
        p.host_resident_bytes, FormatBytes(p.host_resident_bytes), p.device,
        absl::StrJoin(host_dtypes, ", "), p.host_budget, FormatBytes(p.host_budget)));
  }
  if (p.expert_bytes == 0) {
    PlanHostSwap(&p);
    return p;
  }
  const uint64_t left = p.device_budget - fixed;
  p.experts_total = r.n_experts * static_cast<uint32_t>(layer_expert_bytes.size());
  if (p.expert_bytes <= left) {
    for (const PlannedTensor& t : r.tensors) {
      if (t.expert_stack) p.resident.push_back(t.weight_id);
    }
    p.resident_bytes += p.expert_bytes;
    PlanHostSwap(&p);
    return p;
  }
  // One extra slot's worth is the staging buffer misses are read into.
  const uint64_t slots = left / p.expert_slot_bytes;
  const uint64_t need = uint64_t{r.top_k} + 1;
  if (slots < need) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory budget: %s is %u bytes (%s); after the resident weights (%u bytes), the KV "
        "cache (%u bytes) and weight streaming (%u bytes) %u bytes are left for the expert cache, but it needs at least %u slots "
        "of %u bytes (top-%u experts of a layer plus one staging slot) = %u bytes",
        limits->why, p.device_budget, FormatBytes(p.device_budget), p.resident_bytes, p.kv_bytes,
        p.stream_device_bytes(), left, need, p.expert_slot_bytes, r.top_k, need * p.expert_slot_bytes));
  }
  p.experts_offloaded = true;
  p.expert_slots = static_cast<uint32_t>(std::min<uint64_t>(slots - 1, p.experts_total));
  for (const PlannedTensor& t : r.tensors) {
    if (t.expert_stack) p.offloaded.push_back(t.weight_id);
  }
  PlanHostSwap(&p);
  return p;
}

namespace {

// ReplanForKv's second way: the plan made again for a pool of `kv_bytes`, streaming more layers;
// its expert cache no larger than the one `plan` has.
absl::StatusOr<MemoryPlan> ReplanStreaming(const MemoryPlan& plan, uint64_t kv_bytes,
                                           const PlanRequest& request) {
  PlanRequest r = request;
  r.kv_bytes_min = kv_bytes;
  absl::StatusOr<MemoryPlan> p = PlanMemory(r);
  if (!p.ok()) return p.status();
  if (p->experts_offloaded && plan.experts_offloaded && p->expert_slots > plan.expert_slots) {
    p->expert_slots = plan.expert_slots;
    p->host_swap_bytes = 0;
    PlanHostSwap(&*p);
  }
  if (plan.experts_offloaded != p->experts_offloaded) {
    // Experts resident before and now offloaded (or the reverse) would need a cache made or
    // dropped at run time.
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory budget: a KV pool of %u bytes (%s) needs the model's expert stacks %s, which "
        "cannot change once it is loaded: load it with room for this KV pool (plan_sequences, "
        "plan_context) or raise the budget",
        kv_bytes, FormatBytes(kv_bytes),
        p->experts_offloaded ? "left in the file" : "resident"));
  }
  return p;
}

}  // namespace

absl::StatusOr<MemoryPlan> ReplanForKv(const MemoryPlan& plan, uint64_t kv_bytes,
                                       const PlanRequest* request) {
  MemoryPlan p = plan;
  if (kv_bytes <= p.kv_bytes) return p;
  const uint64_t extra = kv_bytes - p.kv_bytes;
  p.kv_bytes = kv_bytes;
  const uint64_t total = p.device_total_bytes();
  if (total > p.device_budget) {
    const uint64_t over = total - p.device_budget;
    const uint64_t slots_needed =
        p.expert_slot_bytes > 0 ? (over + p.expert_slot_bytes - 1) / p.expert_slot_bytes : 0;
    const uint32_t spare = p.experts_offloaded && p.expert_slots > p.top_k
                               ? p.expert_slots - p.top_k
                               : 0;
    if (!p.experts_offloaded || slots_needed > spare) {
      if (request != nullptr) {
        absl::StatusOr<MemoryPlan> streamed = ReplanStreaming(plan, kv_bytes, *request);
        if (streamed.ok() || streamed.status().code() != absl::StatusCode::kResourceExhausted) {
          return streamed;
        }
        return absl::ResourceExhaustedError(absl::StrFormat(
            "memory budget: a KV pool of %u bytes (%s) is %u bytes more than the plan's %u; "
            "neither the expert cache (%u spare slots) nor streaming more layers makes room: %s",
            kv_bytes, FormatBytes(kv_bytes), extra, plan.kv_bytes, spare,
            streamed.status().message()));
      }
      return absl::ResourceExhaustedError(absl::StrFormat(
          "memory budget: a KV pool of %u bytes (%s) is %u bytes more than the plan's %u; with "
          "it device '%s' needs %u bytes against its budget of %u (%s), %u bytes too many, and "
          "%s",
          kv_bytes, FormatBytes(kv_bytes), extra, plan.kv_bytes, p.device, total, p.device_budget,
          FormatBytes(p.device_budget), over,
          p.experts_offloaded
              ? absl::StrFormat("the expert cache can give up only %u of its %u slots of %u bytes "
                                "(a step needs top-%u = %u)",
                                spare, p.expert_slots, p.expert_slot_bytes, p.top_k, p.top_k)
              : std::string("there is no expert cache to shrink; raise the budget or ask for a "
                            "smaller KV pool")));
    }
    p.expert_slots -= static_cast<uint32_t>(slots_needed);
  }
  PlanHostSwap(&p);
  return p;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
