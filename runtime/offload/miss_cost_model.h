// runtime/offload/miss_cost_model.h: what an expert-cache miss does when the model's device is not
// the host. Fetching prepares the expert's weights on the device (its bytes cross the bus, and it
// takes a slot); running it on the host device prepares it there and moves only the step's
// activations. The model compares, per step, the measured cost of each:
//   fetch = bytes x (device preparation seconds per byte)
//   host  = bytes x (host preparation seconds per byte) + tokens x (host seconds per token)
// (the file read and the device's own compute are left out: the first is paid either way, the
// second is small next to the host's on the devices this is for). With few tokens (a decode step)
// the host tends to win; with many (a prefill) fetching does. Until both have been seen once, it
// tries the one it has not seen. Rates are moving averages of what the cache observed.
//
// Thread-safety: none; the expert cache calls it under its own mutex.
#ifndef KESTREL_RUNTIME_OFFLOAD_MISS_COST_MODEL_H_
#define KESTREL_RUNTIME_OFFLOAD_MISS_COST_MODEL_H_

#include <cstdint>

namespace kestrel {
namespace runtime {
namespace offload {

enum class MissPolicy { kAuto, kFetch, kHost };

class MissCostModel {
 public:
  explicit MissCostModel(MissPolicy policy = MissPolicy::kAuto) : policy_(policy) {}

  // Whether a missed expert of `bytes` needed by `tokens` tokens should run on the host.
  bool RunOnHost(uint64_t bytes, uint32_t tokens) const;
  // A fetch: `seconds` preparing `bytes` on the device.
  void ObserveFetch(uint64_t bytes, double seconds);
  // A host run: `prepare_seconds` preparing `bytes` on the host, then `run_seconds` for `tokens`
  // tokens (the run with its copies of the activations).
  void ObserveHost(uint64_t bytes, double prepare_seconds, uint32_t tokens, double run_seconds);

  MissPolicy policy() const { return policy_; }
  double fetch_seconds_per_byte() const { return fetch_spb_; }
  double host_prepare_seconds_per_byte() const { return host_prep_spb_; }
  double host_seconds_per_token() const { return host_spt_; }

 private:
  static void Average(double sample, bool first, double* into);

  MissPolicy policy_;
  bool seen_fetch_ = false, seen_host_ = false;
  double fetch_spb_ = 0, host_prep_spb_ = 0, host_spt_ = 0;
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_MISS_COST_MODEL_H_
