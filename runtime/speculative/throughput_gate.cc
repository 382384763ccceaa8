#include "runtime/speculative/throughput_gate.h"

#include <algorithm>

namespace kestrel {
namespace runtime {

uint32_t ThroughputGate::DraftCap(double predicted) {
  ++steps_;
  const bool promising = predicted >= kMinPredicted;
  // Warm-up: plain steps first, then capped speculative ones (once drafts look worth a try).
  if (samples_[0] < kPhase) return kOff;
  if (samples_[1] < kOnPhase) return promising ? kProbeNodes : kOff;
  if (probing_ && probe_mode_ && !promising) probing_ = false;  // nothing to probe for now
  if (probing_) {
    if (++in_phase_ <= (probe_mode_ ? kOnPhase : kPhase)) return probe_mode_ ? kProbeNodes : kOff;
    probing_ = false;
  }
  // Drafting must beat plain steps by a margin: the two rates are measured at different moments,
  // and on a loaded machine timing noise alone would otherwise turn it on half the time.
  const bool best = rate_[1] > rate_[0] * (1 + kMargin);
  if (best != best_) probe_every_ = kMinProbeEvery;  // the choice changed: probe sooner again
  best_ = best;
  if (next_probe_ == 0) next_probe_ = steps_ + probe_every_;  // the warm-up just measured both
  // A due probe of "on" waits for a step where drafts look worth it.
  if (steps_ >= next_probe_ && (best_ || promising)) {
    next_probe_ = steps_ + probe_every_;
    probe_every_ = std::min(probe_every_ * 2, kMaxProbeEvery);
    probe_mode_ = !best_;
    probing_ = true;
    in_phase_ = 1;
    return probe_mode_ ? kProbeNodes : kOff;
  }
  return best_ ? kUncapped : kOff;
}

void ThroughputGate::Record(uint32_t cap, uint64_t tokens, double ms) {
  if (ms <= 0) return;
  const int i = cap == kOff ? 0 : 1;
  const double r = static_cast<double>(tokens) / ms;
  rate_[i] = samples_[i] == 0 ? r : 0.8 * rate_[i] + 0.2 * r;
  ++samples_[i];
}

}  // namespace runtime
}  // namespace kestrel
