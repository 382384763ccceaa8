// runtime/speculative/controller.h: the adaptive choice of method and draft size. It measures
// online, on the device in hand:
//  - the cost of a forward step as a function of its size (tokens per sequence: 1 for a plain
//    decode, 1 + draft nodes for a verify step), an exponential moving average per size;
//  - each method's own proposal cost per step;
//  - each method's per-token acceptance rate a (accepted / (accepted + early stops): the
//    estimate of a geometric acceptance along a path).
// For each method m and draft size k it predicts tokens per step E = 1 + a + ... + a^k and picks
// the (m, k) maximising E / (t_step(1 + k) + t_propose(m)) — or no draft when nothing beats a plain
// step's 1 / t_step(1). Untried choices get an optimistic prior so they are tried; when speculation
// is off it probes again after a back-off that doubles each time a probe does not pay (up to 64
// steps), so text where nothing is accepted costs at most a small verify every 64 steps.
#ifndef KESTREL_RUNTIME_SPECULATIVE_CONTROLLER_H_
#define KESTREL_RUNTIME_SPECULATIVE_CONTROLLER_H_

#include <array>
#include <cstdint>
#include <vector>

#include "runtime/speculative/spec_config.h"

namespace kestrel {
namespace runtime {

struct ControllerChoice {
  SpecMethod method = SpecMethod::kOff;  // kOff: a plain step
  uint32_t draft = 0;                    // draft size (path length; nodes for tree methods)
};

class Controller {
 public:
  // `methods`: the methods it may choose from (a fixed method: just that one). `max_draft`: the
  // largest draft size. `adaptive` false: always the fixed method at max_draft.
  Controller(std::vector<SpecMethod> methods, uint32_t max_draft, bool adaptive);

  ControllerChoice Choose();
  // After a step: its size in tokens (1 + draft nodes), its time, the proposal's time, and for a
  // speculative step the drafted path length and the accepted count.
  void RecordStep(uint32_t n_tokens, double step_ms);
  // A proposal of method m asked for draft size k: its time and its node count (0: nothing).
  void RecordProposal(SpecMethod m, double ms, uint32_t k, uint32_t nodes);
  void RecordAcceptance(SpecMethod m, uint32_t depth, uint32_t accepted);

  double StepMs(uint32_t n_tokens) const;
  double Acceptance(SpecMethod m) const;

 private:
  struct MethodStats {
    double accepted = 0, stops = 0;  // decayed counts
    double propose_ms = 0;
    double empty_rate = 0;           // fraction of proposals that came back empty
    double nodes_per_k = 1;          // tree nodes per unit of draft size (1 for chains)
    uint32_t tries = 0;
  };
  double ExpectedRate(SpecMethod m, uint32_t k) const;

  std::vector<SpecMethod> methods_;
  uint32_t max_draft_;
  bool adaptive_;
  std::vector<double> step_ms_;   // [n_tokens] EMA, 0 = unknown
  std::array<MethodStats, kNumSpecMethods> stats_{};
  uint64_t step_ = 0;
  uint64_t next_probe_ = 0;
  uint32_t backoff_ = 4;
  bool probing_ = false;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_CONTROLLER_H_
