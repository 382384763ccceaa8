// runtime/speculative/speculator.h: speculation for one sequence — its proposers, its controller
// and its statistics — and the shared steps a driver (Session, Engine) runs around its own forward
// step:
//   1. Propose: the controller picks method and size; the chosen proposer fills the draft tree.
//   2. (driver) one forward over [pending token, draft nodes] with the tree's parents, all rows.
//   3. Verify: the Verifier picks the path and the bonus token.
//   4. (driver) KvPlan's slot copies move the kept path onto consecutive positions
//      (Executor::CopySlots), then Commit truncates the KV past the path (rejected nodes'
//      blocks go back to the pool) and emits the tokens through Sequence::Emit.
#ifndef KESTREL_RUNTIME_SPECULATIVE_SPECULATOR_H_
#define KESTREL_RUNTIME_SPECULATIVE_SPECULATOR_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "runtime/model/model.h"
#include "runtime/sequence/sequence.h"
#include "runtime/speculative/controller.h"
#include "runtime/speculative/draft_tree.h"
#include "runtime/speculative/proposer.h"
#include "runtime/speculative/spec_config.h"
#include "runtime/speculative/verifier.h"

namespace kestrel {
namespace runtime {

// Validates a speculative configuration for `target` (method known and available, sizes in
// range, the draft model's vocab); the message names the bad field.
absl::Status ValidateSpecConfig(const SpecConfig& config, const Model& target);

class Speculator {
 public:
  // nullptr (OK) when config.method is kOff.
  static absl::StatusOr<std::unique_ptr<Speculator>> Create(const SpecConfig& config,
                                                            const Model* target,
                                                            hal::Device* fallback,
                                                            uint32_t context_length);

  // Step 1. `room`: most draft nodes the caller can take (context, budget, batch). The tree's
  // parents are relative to the draft nodes (-1: child of the pending token). With
  // `chains_only` (no device here runs the tree mask) a branching proposal is cut to its first
  // path, which plain causal attention verifies.
  absl::Status Propose(const Sequence& seq, uint32_t room, bool chains_only, DraftTree* tree);
  // Step 3, after the forward over the tree (rows as Verifier::Verify).
  absl::Status Verify(Sequence& seq, const DraftTree& tree, const float* rows, size_t n_vocab,
                      VerifyOutcome* out);
  // The forward step's size and time (for the controller's cost model).
  void RecordStep(uint32_t n_tokens, double ms, bool speculative);

  // Whether a proposer reads the target's hidden state; the driver then passes the row of the
  // last committed position after each step (SetHidden).
  bool needs_hidden() const { return needs_hidden_; }
  void SetHidden(const float* row, size_t n) { hidden_.assign(row, row + n); }

  // `auto` with n-gram as its only proposer: tokens per step a draft of kShadowDepth nodes would
  // have had accepted, measured (EMA) on the steps Propose was given no room for (the engine's
  // gate off): the proposal costs microseconds, so it is asked anyway and checked against what
  // the plain step emitted. 0 before any such step; infinity for other configurations (their
  // proposals are not free to ask).
  static constexpr uint32_t kShadowDepth = 2;
  double ShadowAccepted() const;
  const SpecStats& stats() const { return stats_; }
  void ResetStats() { stats_ = SpecStats{}; }
  // The sequence went back (truncated, new generation): proposers drop their state.
  void Reset();

 private:
  Speculator() = default;
  Proposer* ProposerFor(SpecMethod m);
  ControllerChoice Choose(const Sequence& seq, uint32_t room);
  void Shadow(const Sequence& seq);
  void CheckShadow(const VerifyOutcome& out);

  SpecConfig config_;
  std::vector<std::unique_ptr<Proposer>> proposers_;
  std::unique_ptr<Controller> controller_;
  Verifier verifier_;
  SpecStats stats_;
  SpecMethod last_method_ = SpecMethod::kOff;
  bool needs_hidden_ = false;
  std::vector<float> hidden_;
  uint32_t last_depth_ = 0;
  bool last_confident_ = false;     // this step verifies a confident n-gram proposal
  bool last_confident_ok_ = false;  // the latest confident proposal had a token accepted
  std::vector<int32_t> shadow_;     // this step's shadow proposal (Shadow)
  int32_t shadow_second_ = -1;      // its second node, after the first was right: checked next step
  double shadow_rate_ = 0;          // EMA of the tokens shadow proposals had accepted
  uint32_t shadow_samples_ = 0;
};

// Keeps only the path from the first root to its first leaf (node 0, its first child, ...).
void CutToFirstPath(DraftTree* tree);

// Step 4a: the (source, destination) slot pairs that move the accepted draft nodes onto the
// positions right after the pending token (n_past), in an order safe to apply one by one.
std::vector<int32_t> KvPlan(const BlockTable& table, uint32_t n_past,
                            const std::vector<int32_t>& accepted);

// Step 4b: keeps the pending token and the accepted path in the KV, then emits the outcome's
// tokens through seq.Emit (each with the KV length it was sampled after) until one stops the
// generation or `cancelled()` turns true; the KV then ends right before the last emitted token,
// as after plain decoding. Returns the stop reason (kNone: go on).
StopReason Commit(Sequence& seq, uint32_t n_past, const VerifyOutcome& outcome,
                  const TokenSink& sink, const std::function<bool()>& cancelled);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_SPECULATOR_H_
