#include "runtime/offload/expert_cache.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {
namespace offload {

absl::StatusOr<std::unique_ptr<ExpertCache>> ExpertCache::Create(
    const std::string& path, std::vector<ExpertLayerSource> layers, uint32_t n_experts,
    const ExpertCacheOptions& options, hal::Device* device) {
  if (layers.empty() || n_experts == 0 || options.n_slots == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "expert cache: %u layers, %u experts and %u slots: all must be positive", layers.size(),
        n_experts, options.n_slots));
  }
  std::unique_ptr<ExpertCache> c(new ExpertCache());
  c->device_ = device;
  c->n_experts_ = n_experts;
  c->policy_kind_ = options.policy;
  c->budget_bytes_ = options.budget_bytes;
  uint64_t max_read = 0, max_slot = 0;
  for (const ExpertLayerSource& l : layers) {
    max_read = std::max({max_read, l.gate.expert_bytes, l.up.expert_bytes, l.down.expert_bytes});
    max_slot = std::max(max_slot, l.slot_bytes());
  }
  absl::StatusOr<std::unique_ptr<FileReader>> reader =
      FileReader::Open(path, max_read, options.allow_direct_io);
  if (!reader.ok()) return reader.status();
  c->reader_ = std::move(*reader);
  const uint64_t need = uint64_t{options.n_slots} * max_slot + c->reader_->staging_bytes();
  if (need > options.budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "expert cache: %u slots of %u bytes plus a %u-byte staging buffer need %u bytes, over "
        "its budget of %u bytes",
        options.n_slots, max_slot, c->reader_->staging_bytes(), need, options.budget_bytes));
  }
  c->layers_ = std::move(layers);
  uint32_t n_slots = options.n_slots;
  if (options.prefetch_depth > 0) {
    absl::StatusOr<std::unique_ptr<ExpertPrefetcher>> p = ExpertPrefetcher::Create(
        path, &c->layers_, n_experts, options.prefetch_depth, options.allow_direct_io);
    if (!p.ok()) return p.status();
    const uint64_t fixed = c->reader_->staging_bytes() + (*p)->held_bytes();
    while (n_slots > options.min_slots && uint64_t{n_slots} * max_slot + fixed > options.budget_bytes) {
      --n_slots;
    }
    if (uint64_t{n_slots} * max_slot + fixed <= options.budget_bytes) {
      c->prefetcher_ = std::move(*p);
      c->prefetch_slots_ = options.n_slots - n_slots;
    } else {
      n_slots = options.n_slots;  // too small a budget to read ahead: the slots matter more
    }
  }
  const uint32_t n_keys = static_cast<uint32_t>(c->layers_.size()) * n_experts;
  c->policy_ = std::make_unique<EvictionPolicy>(options.policy, n_keys, n_slots);
  c->slots_.resize(n_slots);
  c->slot_of_.assign(n_keys, -1);
  c->last_of_layer_.assign(c->layers_.size(), -1);
  c->stats_.resize(c->layers_.size());
  c->host_device_ = options.host_device == device ? nullptr : options.host_device;
  c->miss_cost_ = MissCostModel(options.miss_policy);
  c->peak_bytes_ = c->held_bytes();
  return c;
}

absl::Status ExpertCache::Fill(Slot& slot, uint32_t layer, uint32_t expert) {
  const ExpertLayerSource& src = layers_[layer];
  struct Part {
    const ExpertStackSource* s;
    hal::PreparedWeight* w;
    const char* name;
  } parts[] = {{&src.gate, &slot.gate, "gate"}, {&src.up, &slot.up, "up"},
               {&src.down, &slot.down, "down"}};
  // Release first: the budget holds the new expert only once the old one is gone.
  held_bytes_ -= slot.bytes;
  slot.bytes = 0;
  for (const Part& p : parts) p.w->Reset();
  if (held_bytes() + src.slot_bytes() > budget_bytes_) {
    return absl::InternalError(absl::StrFormat(
        "expert cache: filling layer %u expert %u (%u bytes) would hold %u bytes, over the "
        "budget of %u",
        layer, expert, src.slot_bytes(), held_bytes() + src.slot_bytes(), budget_bytes_));
  }
  // A prefetched expert is prepared from the prefetcher's buffers; a failed prefetch read is
  // retried here.
  ExpertPrefetcher::Bytes ahead;
  bool prefetched = false;
  if (prefetcher_ != nullptr) {
    absl::StatusOr<bool> taken = prefetcher_->Take(layer, expert, &ahead);
    prefetched = taken.ok() && *taken;
  }
  const uint8_t* ahead_part[] = {ahead.gate, ahead.up, ahead.down};
  absl::Status status;
  double prepare_seconds = 0;
  for (int i = 0; i < 3 && status.ok(); ++i) {
    const Part& p = parts[i];
    absl::StatusOr<const uint8_t*> data =
        prefetched ? absl::StatusOr<const uint8_t*>(ahead_part[i])
                   : reader_->Read(p.s->offset + uint64_t{expert} * p.s->expert_bytes,
                                   p.s->expert_bytes);
    if (!data.ok()) {
      status = data.status();
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<hal::PreparedWeight> w = device_->PrepareWeight(p.s->desc, *data, p.s->expert_bytes);
    prepare_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!w.ok()) {
      status = absl::Status(w.status().code(),
                            absl::StrFormat("expert cache: preparing layer %u expert %u %s: %s",
                                            layer, expert, p.name, w.status().message()));
      break;
    }
    *p.w = std::move(*w);
  }
  if (prefetched) prefetcher_->Release(layer, expert);
  if (!status.ok()) return status;
  miss_cost_.ObserveFetch(src.slot_bytes(), prepare_seconds);
  slot.bytes = src.slot_bytes();
  held_bytes_ += slot.bytes;
  peak_bytes_ = std::max(peak_bytes_, held_bytes());
  return absl::OkStatus();
}

absl::StatusOr<ExpertCache::Experts> ExpertCache::Get(uint32_t layer, uint32_t expert,
                                                      int32_t* slot_out, int32_t pinned_slot) {
  if (layer >= layers_.size() || expert >= n_experts_) {
    return absl::OutOfRangeError(absl::StrFormat(
        "expert cache: layer %u expert %u outside %u layers x %u experts", layer, expert,
        layers_.size(), n_experts_));
  }
  const uint32_t key = layer * n_experts_ + expert;
  Experts e;
  int32_t s = slot_of_[key];
  e.hit = s >= 0;
  if (!e.hit) {
    s = static_cast<int32_t>(policy_->Victim(pinned_slot < 0 ? UINT32_MAX
                                                             : static_cast<uint32_t>(pinned_slot)));
    Slot& slot = slots_[s];
    if (slot.key >= 0) {
      slot_of_[slot.key] = -1;
      const uint32_t old_layer = static_cast<uint32_t>(slot.key) / n_experts_;
      if (last_of_layer_[old_layer] == s) last_of_layer_[old_layer] = -1;
    }
    slot.key = -1;
    if (auto st = Fill(slot, layer, expert); !st.ok()) return st;
    slot.key = key;
    slot_of_[key] = s;
  }
  policy_->Use(static_cast<uint32_t>(s), key);
  last_of_layer_[layer] = s;
  Slot& slot = slots_[s];
  e.gate = &slot.gate;
  e.up = &slot.up;
  e.down = &slot.down;
  *slot_out = s;
  return e;
}

int32_t ExpertCache::AnyResident(uint32_t layer) const {
  const int32_t s = layer < last_of_layer_.size() ? last_of_layer_[layer] : -1;
  return s < 0 ? -1 : static_cast<int32_t>(slots_[s].key % n_experts_);
}

namespace {

bool SameDesc(const kestrel_tensor_desc_t& a, const kestrel_tensor_desc_t& b) {
  if (a.dtype != b.dtype || a.rank != b.rank) return false;
  for (uint32_t i = 0; i < a.rank; ++i) {
    if (a.dims[i] != b.dims[i]) return false;
  }
  return true;
}

}  // namespace

bool ExpertCache::Borrow(uint32_t layer, Experts* out) const {
  if (layer >= layers_.size()) return false;
  const ExpertLayerSource& want = layers_[layer];
  for (const Slot& s : slots_) {
    if (s.key < 0) continue;
    const ExpertLayerSource& have = layers_[static_cast<uint32_t>(s.key) / n_experts_];
    if (!SameDesc(have.gate.desc, want.gate.desc) || !SameDesc(have.up.desc, want.up.desc) ||
        !SameDesc(have.down.desc, want.down.desc)) {
      continue;
    }
    out->gate = &s.gate;
    out->up = &s.up;
    out->down = &s.down;
    out->hit = false;
    return true;
  }
  return false;
}

void ExpertCache::Record(uint32_t layer, bool hit) {
  if (layer >= stats_.size()) return;
  ++(hit ? stats_[layer].hits : stats_[layer].misses);
}

bool ExpertCache::MissOnHost(uint32_t layer, uint32_t expert, uint32_t tokens) const {
  if (host_device_ == nullptr || layer >= layers_.size() || expert >= n_experts_ ||
      slot_of_[layer * n_experts_ + expert] >= 0) {
    return false;
  }
  return miss_cost_.RunOnHost(layers_[layer].slot_bytes(), tokens);
}

absl::StatusOr<ExpertCache::Experts> ExpertCache::LoadOnHost(uint32_t layer, uint32_t expert) {
  if (host_device_ == nullptr || layer >= layers_.size() || expert >= n_experts_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "expert cache: no host device to run layer %u expert %u on", layer, expert));
  }
  const int64_t key = int64_t{layer} * n_experts_ + expert;
  Experts e;
  e.gate = &host_slot_.gate;
  e.up = &host_slot_.up;
  e.down = &host_slot_.down;
  if (host_slot_.key == key) return e;
  host_slot_.key = -1;
  const ExpertLayerSource& src = layers_[layer];
  ExpertPrefetcher::Bytes ahead;
  bool prefetched = false;
  if (prefetcher_ != nullptr) {
    absl::StatusOr<bool> taken = prefetcher_->Take(layer, expert, &ahead);
    prefetched = taken.ok() && *taken;
  }
  const ExpertStackSource* parts[] = {&src.gate, &src.up, &src.down};
  hal::PreparedWeight* into[] = {&host_slot_.gate, &host_slot_.up, &host_slot_.down};
  const uint8_t* ahead_part[] = {ahead.gate, ahead.up, ahead.down};
  absl::Status status;
  host_prepare_seconds_ = 0;
  for (int i = 0; i < 3 && status.ok(); ++i) {
    into[i]->Reset();
    absl::StatusOr<const uint8_t*> data =
        prefetched ? absl::StatusOr<const uint8_t*>(ahead_part[i])
                   : reader_->Read(parts[i]->offset + uint64_t{expert} * parts[i]->expert_bytes,
                                   parts[i]->expert_bytes);
    if (!data.ok()) {
      status = data.status();
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<hal::PreparedWeight> w =
        host_device_->PrepareWeight(parts[i]->desc, *data, parts[i]->expert_bytes);
    host_prepare_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!w.ok()) {
      status = absl::Status(w.status().code(),
                            absl::StrFormat("expert cache: preparing layer %u expert %u on the host "
                                            "device '%s': %s",
                                            layer, expert, host_device_->name(), w.status().message()));
      break;
    }
    *into[i] = std::move(*w);
  }
  if (prefetched) prefetcher_->Release(layer, expert);
  if (!status.ok()) return status;
  host_slot_.key = key;
  host_slot_.bytes = src.slot_bytes();
  return e;
}

void ExpertCache::RecordHostRun(uint32_t layer, uint32_t tokens, double seconds) {
  if (layer >= layers_.size()) return;
  Record(layer, false);
  ++host_runs_;
  host_seconds_ += seconds + host_prepare_seconds_;
  miss_cost_.ObserveHost(layers_[layer].slot_bytes(), host_prepare_seconds_, tokens, seconds);
  host_prepare_seconds_ = 0;  // a second run of the same copy prepares nothing
}

void ExpertCache::Prefetch(uint32_t layer, const std::vector<uint32_t>& experts) {
  if (prefetcher_ == nullptr || layer >= layers_.size()) return;
  std::vector<uint32_t> absent;
  for (uint32_t e : experts) {
    if (e < n_experts_ && slot_of_[layer * n_experts_ + e] < 0) absent.push_back(e);
  }
  prefetcher_->Request(layer, absent);
}

void ExpertCache::ResetStats() {
  std::fill(stats_.begin(), stats_.end(), ExpertLayerStats{});
  if (prefetcher_ != nullptr) prefetcher_->ResetCounters();
  host_runs_ = 0;
  host_seconds_ = 0;
}

absl::Status ExpertCache::Shrink(uint32_t n_slots, uint32_t min_slots, uint64_t budget_bytes) {
  // The plan counts slots without the prefetch buffers: they keep replacing the same slots, or
  // are given up when that would leave too few.
  if (prefetcher_ != nullptr) {
    if (n_slots >= min_slots + prefetch_slots_) {
      n_slots -= prefetch_slots_;
    } else {
      prefetcher_.reset();
      prefetch_slots_ = 0;
    }
  }
  if (n_slots < min_slots) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "expert cache: %u slots are fewer than the %u a step needs", n_slots, min_slots));
  }
  if (n_slots < slots_.size()) {
    const std::vector<uint32_t> order = policy_->EvictionOrder();
    std::vector<bool> keep(slots_.size(), true);
    for (size_t i = 0; i < slots_.size() - n_slots; ++i) keep[order[i]] = false;
    std::vector<uint32_t> kept;
    std::vector<Slot> slots;
    std::vector<int32_t> new_index(slots_.size(), -1);
    for (uint32_t s = 0; s < slots_.size(); ++s) {
      Slot& slot = slots_[s];
      if (keep[s]) {
        new_index[s] = static_cast<int32_t>(kept.size());
        kept.push_back(s);
        slots.push_back(std::move(slot));
        continue;
      }
      if (slot.key >= 0) slot_of_[slot.key] = -1;
      held_bytes_ -= slot.bytes;
      slot.gate.Reset();
      slot.up.Reset();
      slot.down.Reset();
    }
    for (int32_t& s : slot_of_) {
      if (s >= 0) s = new_index[s];
    }
    for (int32_t& s : last_of_layer_) {
      if (s >= 0) s = new_index[s];
    }
    slots_ = std::move(slots);
    policy_->Compact(kept);
  }
  if (held_bytes() > budget_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "expert cache: %u slots hold %u bytes, over the new budget of %u", slots_.size(),
        held_bytes(), budget_bytes));
  }
  budget_bytes_ = budget_bytes;
  return absl::OkStatus();
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
