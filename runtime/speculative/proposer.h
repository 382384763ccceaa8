// runtime/speculative/proposer.h: the interface every proposer implements.
#ifndef KESTREL_RUNTIME_SPECULATIVE_PROPOSER_H_
#define KESTREL_RUNTIME_SPECULATIVE_PROPOSER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/sampler/sampler.h"
#include "runtime/speculative/draft_tree.h"
#include "runtime/speculative/spec_config.h"

namespace kestrel {
namespace runtime {

struct ProposeRequest {
  // The sequence's history: every committed token, then the pending one (the tree's root).
  absl::Span<const int32_t> history;
  uint32_t max_depth = 4;   // longest path
  uint32_t max_nodes = 4;   // most nodes
  // The target samples (not greedy): proposers that have a distribution attach it (q).
  const SamplerConfig* sampling = nullptr;
  // No device here runs the tree mask: only the first path of the tree will be verified.
  bool chains_only = false;
  // The target's final hidden state (after the output norm) at the last committed position, for
  // proposers that read it (needs_hidden()); empty until the first step.
  absl::Span<const float> hidden;
};

// What the verifier learnt about a proposal: for each node, the target's greedy choice after it
// (argmax of its logits, also for rejected nodes; only for proposers that want it), and the
// accepted path (node indices).
struct VerifyFeedback {
  const DraftTree* tree = nullptr;
  absl::Span<const int32_t> node_argmax;  // [tree->size()]
  int32_t root_argmax = -1;               // the target's argmax after the pending token
  absl::Span<const int32_t> accepted;     // node indices along the accepted path
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  virtual SpecMethod method() const = 0;
  // Whether Propose reads ProposeRequest::hidden (the driver then reads it back after each step).
  virtual bool needs_hidden() const { return false; }
  // Whether Observe reads VerifyFeedback::node_argmax / root_argmax (they cost a vocab scan per
  // row; without this they are empty).
  virtual bool wants_argmax() const { return false; }
  // Fills `out` (cleared by the caller) with at most max_nodes nodes; an empty tree means no
  // guess this step (the step runs as a plain decode).
  virtual absl::Status Propose(const ProposeRequest& request, DraftTree* out) = 0;
  // After the verify step (the sequence's history now holds the emitted tokens).
  virtual void Observe(const VerifyFeedback& feedback) { (void)feedback; }
  // The sequence was truncated or restarted: forget state past `n_tokens` of history.
  virtual void Reset() {}
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_PROPOSER_H_
