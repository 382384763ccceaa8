// runtime/offload/expert_cache.h: the MoE expert cache of one model on its compute device. The
// stacked expert tensors of an offloaded model stay in the GGUF file; each (layer, expert) that a
// step routes to is looked up here and, on a miss, its gate, up and down slices are read from the
// file (file_reader.h) and prepared on the device into a slot, evicting another (eviction_policy.h).
// Its own accounting (slot bytes + the staging buffer) never exceeds the budget it was given:
// Create refuses a budget that cannot hold the slots, and every fill re-checks it.
//
// Thread-safety: callers hold mutex() around Get and the use of what it returns (sessions of one
// model share the cache).
#ifndef KESTREL_RUNTIME_OFFLOAD_EXPERT_CACHE_H_
#define KESTREL_RUNTIME_OFFLOAD_EXPERT_CACHE_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "runtime/offload/eviction_policy.h"
#include "runtime/offload/expert_prefetcher.h"
#include "runtime/offload/file_reader.h"
#include "runtime/offload/miss_cost_model.h"

namespace kestrel {
namespace runtime {
namespace offload {

// Where one layer's expert stacks lie in the file: for gate, up and down, the file offset of
// expert 0, the bytes of one expert, and the descriptor of one expert as a [1, rows, cols] stack.
struct ExpertStackSource {
  uint64_t offset = 0, expert_bytes = 0;
  kestrel_tensor_desc_t desc{};
};
struct ExpertLayerSource {
  ExpertStackSource gate, up, down;
  uint64_t slot_bytes() const { return gate.expert_bytes + up.expert_bytes + down.expert_bytes; }
};

struct ExpertCacheOptions {
  uint32_t n_slots = 0;
  uint64_t budget_bytes = 0;  // slots + staging must fit
  EvictionKind policy = EvictionKind::kLru;
  bool allow_direct_io = true;
  // Experts read ahead for the next layer (expert_prefetcher.h); 0: none. Their buffers come out
  // of the slots: the cache keeps fewer slots so that slots + staging + prefetch buffers fit the
  // budget, and gives prefetching up when that would leave fewer than `min_slots`.
  uint32_t prefetch_depth = 0;
  uint32_t min_slots = 2;
  // A host device ("cpu") that may run a missed expert instead of fetching it into the cache
  // (miss_cost_model.h); nullptr when the cache's device is the host.
  hal::Device* host_device = nullptr;
  MissPolicy miss_policy = MissPolicy::kAuto;
};

struct ExpertLayerStats {
  uint64_t hits = 0, misses = 0;
};

class ExpertCache {
 public:
  static absl::StatusOr<std::unique_ptr<ExpertCache>> Create(
      const std::string& path, std::vector<ExpertLayerSource> layers, uint32_t n_experts,
      const ExpertCacheOptions& options, hal::Device* device);

  struct Experts {
    const hal::PreparedWeight* gate = nullptr;
    const hal::PreparedWeight* up = nullptr;
    const hal::PreparedWeight* down = nullptr;
    bool hit = false;
  };
  // Expert `expert` of layer `layer`, resident in a slot until the next Get. A miss reads it from
  // the file. `pinned_slot` (from a previous Get of this step, or -1) is never evicted.
  absl::StatusOr<Experts> Get(uint32_t layer, uint32_t expert, int32_t* slot_out,
                              int32_t pinned_slot);
  // Whether a miss of (layer, expert) for `tokens` tokens should run on the host device (false
  // without one, or when the expert is resident).
  bool MissOnHost(uint32_t layer, uint32_t expert, uint32_t tokens) const;
  // The expert's weights prepared on the host device (read from the file, or taken from the
  // prefetcher), valid until the next LoadOnHost; one expert's host copy at a time.
  absl::StatusOr<Experts> LoadOnHost(uint32_t layer, uint32_t expert);
  // Counts a host run of a routed miss (a miss of `layer`) that took `seconds` for `tokens`
  // (after LoadOnHost: its preparation time is added here).
  void RecordHostRun(uint32_t layer, uint32_t tokens, double seconds);
  hal::Device* host_device() const { return host_device_; }
  uint64_t host_runs() const { return host_runs_; }
  double host_seconds() const { return host_seconds_; }
  // A resident expert of `layer` (the one used last), or -1 when none is.
  int32_t AnyResident(uint32_t layer) const;
  // The weights of any filled slot whose expert has the same descriptors as layer `layer`'s
  // experts (false when there is none). Used to learn a step's routing before anything is read:
  // a MOE execution over a one-expert view computes the routing of all experts, and its output is
  // exact (zero) when the routing does not select that expert.
  bool Borrow(uint32_t layer, Experts* out) const;
  // Starts reading these experts of `layer` ahead of its step (a guess: the next layer's router
  // applied to the current hidden state); those already resident are skipped. No-op without a
  // prefetcher.
  void Prefetch(uint32_t layer, const std::vector<uint32_t>& experts);
  uint32_t prefetch_depth() const { return prefetcher_ ? prefetcher_->depth() : 0; }
  // Whether to read ahead this time (ExpertPrefetcher::Worthwhile; false without a prefetcher).
  bool PrefetchWorthwhile() { return prefetcher_ != nullptr && prefetcher_->Worthwhile(); }
  ExpertPrefetcher::Counters prefetch_counters() const {
    return prefetcher_ ? prefetcher_->counters() : ExpertPrefetcher::Counters{};
  }
  // Counts a routed expert as a hit or a miss of its layer (the executor calls this only for
  // experts the routing selected, so probes do not skew the rates).
  void Record(uint32_t layer, bool hit);

  std::mutex& mutex() { return mu_; }
  hal::Device* device() const { return device_; }
  uint32_t n_layers() const { return static_cast<uint32_t>(layers_.size()); }
  uint32_t n_slots() const { return static_cast<uint32_t>(slots_.size()); }
  EvictionKind policy() const { return policy_kind_; }
  const std::string& io_mode() const { return reader_->mode(); }

  // Accounting: bytes of the experts held in slots plus the staging and prefetch buffers.
  uint64_t held_bytes() const {
    return held_bytes_ + reader_->staging_bytes() + (prefetcher_ ? prefetcher_->held_bytes() : 0);
  }
  uint64_t peak_bytes() const { return peak_bytes_; }
  uint64_t budget_bytes() const { return budget_bytes_; }
  // Bytes read from the file (by misses and by the prefetcher) and the time a step waited on
  // them (synchronous reads plus waits for a prefetch still reading).
  uint64_t bytes_read() const { return reader_->bytes_read() + prefetch_counters().bytes_read; }
  double read_seconds() const {
    return reader_->read_seconds() + prefetch_counters().wait_seconds;
  }
  const std::vector<ExpertLayerStats>& layer_stats() const { return stats_; }
  void ResetStats();
  // Re-planning (the engine needs more KV): keeps at most `n_slots` slots (the experts the policy
  // would evict go first) and lowers the budget to `budget_bytes`. FAILED_PRECONDITION when that
  // leaves fewer slots than `min_slots` or the held bytes above the new budget. Call between
  // steps, holding mutex().
  absl::Status Shrink(uint32_t n_slots, uint32_t min_slots, uint64_t budget_bytes);

 private:
  struct Slot {
    int64_t key = -1;  // layer * n_experts + expert
    uint64_t bytes = 0;
    hal::PreparedWeight gate, up, down;
  };
  ExpertCache() = default;
  absl::Status Fill(Slot& slot, uint32_t layer, uint32_t expert);

  std::mutex mu_;
  hal::Device* device_ = nullptr;
  std::vector<ExpertLayerSource> layers_;
  uint32_t n_experts_ = 0;
  EvictionKind policy_kind_ = EvictionKind::kLru;
  std::unique_ptr<EvictionPolicy> policy_;
  std::unique_ptr<FileReader> reader_;
  std::unique_ptr<ExpertPrefetcher> prefetcher_;  // after layers_: it reads them
  uint32_t prefetch_slots_ = 0;  // slots given up for the prefetch buffers (Shrink keeps that)
  std::vector<Slot> slots_;
  std::vector<int32_t> slot_of_;       // per key, -1: not resident
  std::vector<int32_t> last_of_layer_;  // per layer: the slot used last, -1: none
  std::vector<ExpertLayerStats> stats_;
  hal::Device* host_device_ = nullptr;
  MissCostModel miss_cost_;
  Slot host_slot_;                     // the expert LoadOnHost prepared last
  double host_prepare_seconds_ = 0;    // its preparation time (for the cost model)
  uint64_t host_runs_ = 0;
  double host_seconds_ = 0;
  uint64_t budget_bytes_ = 0, held_bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_EXPERT_CACHE_H_
