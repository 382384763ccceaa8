// runtime/speculative/controller.h: the adaptive choice of method and draft size. It measures
// online, on the device in hand:
//  - the wall time of a plain decode step t1 (EMA), and the cost of a speculative step over n
//    tokens (1 pending + draft nodes) as a ratio r(n) to t1 measured at the same time (a ratio
//    survives load changes that move both; r(n) >= 1, interpolated between measured sizes and
//    extrapolated with the measured slope);
//  - each method's own proposal cost, how often its proposals come back empty (an empty proposal
//    costs only the proposal: the step is a plain decode step), its nodes per unit of draft size;
//  - each method's per-token acceptance rate a (counts that decay per step, a weak 0.5 prior).
// For method m and draft size k it predicts tokens per step E = 1 + a + ... + a^k and picks the
// (m, k) maximising E / (t1 r(1 + nodes) + t_propose(m)) if that beats plain decoding (1 / t1) by
// a margin; otherwise the step is plain. Once off, only a probe that was accepted can turn it back
// on. While speculation is off it re-probes one method at a
// time (round robin) with a one-token draft (one node), after a back-off that doubles
// with every probe that did not turn speculation back on (32 -> 1024 steps); a probe of a method
// whose proposal comes back empty costs nothing and waits for a proposal. So on text where
// nothing is accepted speculation costs a few small verify steps per thousand tokens.
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
  uint32_t max_nodes = 0;                // most draft nodes; 0: the method's default budget
  bool probe = false;                    // a warm-up or re-probe step while speculation is off
};

// What the controller measured and believes (the speculation stats carry it).
struct ControllerReport {
  double plain_step_ms = 0;        // t1, EMA of plain decode steps
  uint32_t verify_tokens = 0;      // size of the last speculative step (1 + draft nodes)
  double verify_ratio = 0;         // its measured cost r(verify_tokens) (0: none yet)
  double expected_speedup = 1;     // predicted tokens/s of the current choice over plain
  std::array<double, kNumSpecMethods> acceptance{};  // per-token acceptance estimate
  uint64_t probes = 0;             // speculative steps run to warm up or re-probe
  uint32_t probe_interval = 0;     // current back-off between probes while off (steps)
};

class Controller {
 public:
  // `methods`: the methods it may choose from (a fixed method: just that one). `max_draft`: the
  // largest draft size. `adaptive` false: always the fixed method at max_draft.
  Controller(std::vector<SpecMethod> methods, uint32_t max_draft, bool adaptive);

  ControllerChoice Choose();
  // A cheap proposer (n-gram) already holds a confident proposal of `depth` nodes along its
  // first path (a long match in the history): whether to verify it, and how deep. Confident
  // proposals keep their own acceptance statistics (trusted before any data: the full draft;
  // then by the cost model, with a back-off of their own when they stop paying). A choice with
  // kOff declines without counting a step: the caller then asks Choose().
  ControllerChoice ChooseConfident(SpecMethod m, uint32_t depth);
  // After a step: its size in tokens (1: plain; 1 + draft nodes) and its wall time without the
  // proposal (forward, verification, commit).
  void RecordStep(uint32_t n_tokens, double step_ms);
  // A proposal of method m asked for draft size k: its time and its node count (0: nothing).
  void RecordProposal(SpecMethod m, double ms, uint32_t k, uint32_t nodes);
  // `depth`: the draft's longest path; `accepted`: tokens kept. After ChooseConfident's choice,
  // the record goes to the confident statistics.
  void RecordAcceptance(SpecMethod m, uint32_t depth, uint32_t accepted);

  double StepMs(uint32_t n_tokens) const;  // t1 * r(n); 1.0 * r(n) before any plain step
  double Ratio(uint32_t n_tokens) const;
  double Acceptance(SpecMethod m) const;
  ControllerReport Report() const;

 private:
  struct MethodStats {
    double accepted = 0, stops = 0;  // decayed counts
    double propose_ms = 0;
    double empty_rate = 0;           // fraction of proposals that came back empty
    double nodes_per_k = 1;          // tree nodes per unit of draft size (1 for chains)
    uint32_t tries = 0;              // non-empty proposals
    uint32_t asks = 0;               // proposals asked for
    uint64_t last_step = 0;          // step of the last acceptance record
    bool last_ok = false;            // whether that record accepted anything
    // Per draft depth j (1-based): decayed counts of node j accepted / rejected when node j - 1
    // was. Proposals are not geometric (a quoted passage: all or nothing), so E(k) uses the
    // first node's rate and the deeper nodes' rate apart.
    std::vector<double> depth_acc, depth_stop;
  };
  // Confident proposals (ChooseConfident) of method m keep their statistics in slot
  // kNumSpecMethods + m.
  static constexpr size_t kSlots = 2 * kNumSpecMethods;
  double ExpectedRate(size_t slot, uint32_t k) const;
  double SlotAcceptance(size_t slot) const;
  double DepthAcceptance(size_t slot, uint32_t j) const;
  uint32_t BestDraft(size_t slot, uint32_t max_k, double* rate) const;
  ControllerChoice Probe(SpecMethod m);
  ControllerChoice Decide();

  std::vector<SpecMethod> methods_;
  uint32_t max_draft_;
  bool adaptive_;
  double plain_ms_ = 0;
  uint32_t plain_samples_ = 0;
  std::vector<double> ratio_;      // [n_tokens] EMA of r(n), 0 = unknown
  std::array<MethodStats, kSlots> stats_{};
  bool confident_ = false;          // the current step came from ChooseConfident
  std::array<uint64_t, kNumSpecMethods> confident_next_{};     // back-off of confident proposals
  std::array<uint32_t, kNumSpecMethods> confident_backoff_{};
  uint64_t step_ = 0;
  uint64_t next_probe_ = 0;
  uint32_t backoff_;
  size_t probe_turn_ = 0;
  SpecMethod pending_probe_ = SpecMethod::kOff;  // a probe waiting for a non-empty proposal
  uint32_t pending_asks_ = 0;
  uint64_t probes_ = 0;
  bool last_probe_ = false;
  bool on_ = false;                // the last decision drafted
  uint32_t last_verify_ = 0;
  double expected_speedup_ = 1;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_CONTROLLER_H_
