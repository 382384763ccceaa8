// runtime/speculative/throughput_gate.h: the engine's on/off switch for speculation. In a batch
// the sequences' step costs are shared (one sequence's draft makes every sequence's step longer),
// so a sequence's own controller cannot see whether speculating pays for the batch. The gate
// measures what does: generated tokens per millisecond of decode-only steps with speculation on
// and off. It starts with a few plain steps, then a few cheap speculative ones (drafts capped at
// kProbeNodes per sequence), then runs the better mode ("on" only when it measured at least
// kMargin faster), probing the other for a few steps now and then — less often (64 -> 1024
// steps) while the probes confirm the choice. Probes of "on" are short (kOnPhase steps) and
// capped, so text where nothing is accepted costs little (a probe step of 8 sequences with 2
// nodes each is 24 tokens: most of a plain step's cost again on a small model). Where the
// sequences' proposers can say for free what a draft would have accepted (n-gram: Speculator::
// ShadowAccepted), a warm-up or probe of "on" waits until that prediction reaches
// kMinPredicted tokens per sequence and step: on text where drafts would be rejected the gate
// then never drafts at all.
#ifndef KESTREL_RUNTIME_SPECULATIVE_THROUGHPUT_GATE_H_
#define KESTREL_RUNTIME_SPECULATIVE_THROUGHPUT_GATE_H_

#include <cstdint>
#include <limits>

namespace kestrel {
namespace runtime {

class ThroughputGate {
 public:
  static constexpr uint32_t kOff = 0;
  static constexpr uint32_t kUncapped = std::numeric_limits<uint32_t>::max();
  static constexpr uint32_t kProbeNodes = 2;

  // The most draft nodes a sequence may add in this step (kOff: none, kUncapped: no limit).
  // `predicted`: the tokens per sequence a capped draft would have had accepted in recent plain
  // steps, the mean over the batch's sequences (kNoPrediction: not known).
  static constexpr double kNoPrediction = std::numeric_limits<double>::infinity();
  // A capped step (kProbeNodes per sequence) is about 1.6-1.8x a plain one on a small model
  // (docs/perf/speculative.md), so it must be expected to add ~0.6 tokens per sequence to pay.
  static constexpr double kMinPredicted = 0.6;
  uint32_t DraftCap(double predicted = kNoPrediction);
  // A decode-only step's result (steps with prefill chunks are not comparable and not recorded):
  // the cap DraftCap gave for it, tokens generated, its time.
  void Record(uint32_t cap, uint64_t tokens, double ms);
  double rate(bool on) const { return rate_[on ? 1 : 0]; }

 private:
  static constexpr uint32_t kPhase = 4;    // steps per warm-up / probe phase of plain steps
  static constexpr uint32_t kOnPhase = 2;  // ... of capped drafting steps (they cost more)
  static constexpr uint32_t kMinProbeEvery = 64, kMaxProbeEvery = 1024;
  static constexpr double kMargin = 0.05;   // how much faster "on" must measure to be chosen
  double rate_[2] = {0, 0};               // EMA of tokens per ms, off / on
  uint32_t samples_[2] = {0, 0};
  bool probing_ = false;
  bool probe_mode_ = false;
  uint32_t in_phase_ = 0;
  bool best_ = false;
  uint64_t steps_ = 0, next_probe_ = 0;
  uint32_t probe_every_ = kMinProbeEvery;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_THROUGHPUT_GATE_H_
