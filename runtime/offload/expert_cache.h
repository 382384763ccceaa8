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
#include "runtime/offload/file_reader.h"

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
  // A resident expert of `layer` (the one used last), or -1 when none is.
  int32_t AnyResident(uint32_t layer) const;
  // The weights of any filled slot whose expert has the same descriptors as layer `layer`'s
  // experts (false when there is none). Used to learn a step's routing before anything is read:
  // a MOE execution over a one-expert view computes the routing of all experts, and its output is
  // exact (zero) when the routing does not select that expert.
  bool Borrow(uint32_t layer, Experts* out) const;
  // Counts a routed expert as a hit or a miss of its layer (the executor calls this only for
  // experts the routing selected, so probes do not skew the rates).
  void Record(uint32_t layer, bool hit);

  std::mutex& mutex() { return mu_; }
  hal::Device* device() const { return device_; }
  uint32_t n_layers() const { return static_cast<uint32_t>(layers_.size()); }
  uint32_t n_slots() const { return static_cast<uint32_t>(slots_.size()); }
  EvictionKind policy() const { return policy_kind_; }
  const std::string& io_mode() const { return reader_->mode(); }

  // Accounting: bytes of the experts held in slots plus the staging buffer.
  uint64_t held_bytes() const { return held_bytes_ + reader_->staging_bytes(); }
  uint64_t peak_bytes() const { return peak_bytes_; }
  uint64_t budget_bytes() const { return budget_bytes_; }
  uint64_t bytes_read() const { return reader_->bytes_read(); }
  double read_seconds() const { return reader_->read_seconds(); }
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
  std::vector<Slot> slots_;
  std::vector<int32_t> slot_of_;       // per key, -1: not resident
  std::vector<int32_t> last_of_layer_;  // per layer: the slot used last, -1: none
  std::vector<ExpertLayerStats> stats_;
  uint64_t budget_bytes_ = 0, held_bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_EXPERT_CACHE_H_
