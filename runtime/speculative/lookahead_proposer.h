// runtime/speculative/lookahead_proposer.h: lookahead decoding (Fu et al., "Break the Sequential
// Dependency of LLM Inference Using Lookahead Decoding") in the form a tree mask can express.
// Each step carries two kinds of branches under the pending token:
//  - the lookahead branch: a Jacobi window of W guessed tokens as one chain. The verify step
//    returns the target's greedy token after every window node, which becomes the next guess at
//    the following position (one Jacobi iteration per step; the window shifts by the tokens the
//    step emitted). The window is also verified as a draft, so a converged window is accepted
//    outright.
//  - verification branches: up to G n-grams from the pool whose first token is the pending token.
// The pool collects the n-grams of the Jacobi trajectories: the token guessed at position p in
// iteration t-N+2, at p+1 in t-N+3, ..., and the target's output at p+N-1 in iteration t — the
// diagonals of the paper's 2-D window, with one level per step instead of N-1 levels per step
// (the paper's per-level mask is not a tree).
#ifndef KESTREL_RUNTIME_SPECULATIVE_LOOKAHEAD_PROPOSER_H_
#define KESTREL_RUNTIME_SPECULATIVE_LOOKAHEAD_PROPOSER_H_

#include <deque>
#include <map>
#include <unordered_map>
#include <vector>

#include "runtime/speculative/proposer.h"

namespace kestrel {
namespace runtime {

class LookaheadProposer : public Proposer {
 public:
  // window W, n-gram size N (>= 2), verification candidates G.
  LookaheadProposer(uint32_t window = 4, uint32_t ngram = 3, uint32_t candidates = 3)
      : W_(window), N_(ngram), G_(candidates) {}
  SpecMethod method() const override { return SpecMethod::kLookahead; }
  absl::Status Propose(const ProposeRequest& request, DraftTree* out) override;
  bool wants_argmax() const override { return true; }
  void Observe(const VerifyFeedback& feedback) override;
  void Reset() override;
  size_t pool_size() const;

 private:
  void AddNgram(const std::vector<int32_t>& gram);

  uint32_t W_, N_, G_;
  int64_t root_pos_ = -1;                   // position of the pending token at the last proposal
  std::map<int64_t, int32_t> guess_;        // absolute position -> current Jacobi guess
  std::deque<std::map<int64_t, int32_t>> levels_;  // the last N-2 iterations' windows
  std::vector<int32_t> window_nodes_;       // node index of each window position (last proposal)
  std::unordered_map<int32_t, std::vector<std::vector<int32_t>>> pool_;  // first token -> rests
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_LOOKAHEAD_PROPOSER_H_
