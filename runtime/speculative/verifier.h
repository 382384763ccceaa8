// runtime/speculative/verifier.h: decides, from the target's logits over a whole draft tree (one
// forward step with the tree mask), which path to keep and which token follows it, so that the
// output is exactly what the target alone would produce:
//  - greedy (temperature 0): the longest path whose every token is the target's choice (the
//    sampler's argmax, repetition penalty included), then the target's choice after it (bonus);
//  - sampling: at each node, its children are tried in order with rejection sampling — a child x
//    drawn from the proposer's q is accepted with probability min(1, p(x)/q(x)) (a deterministic
//    child: q = a point mass, so with p(x)), and on rejection p becomes norm(max(0, p - q)); when
//    no child is accepted the token is drawn from the residual p (the multi-candidate form of
//    speculative sampling, SpecInfer), and after an accepted leaf from p itself (bonus). p is the
//    sampler's own distribution (top-k/top-p/min-p/temperature/penalty), so every emitted token
//    has the target's distribution.
// Rows: row 0 holds the logits after the pending token (the tree's root), row 1 + i those after
// draft node i.
#ifndef KESTREL_RUNTIME_SPECULATIVE_VERIFIER_H_
#define KESTREL_RUNTIME_SPECULATIVE_VERIFIER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "runtime/sampler/sampler.h"
#include "runtime/speculative/draft_tree.h"

namespace kestrel {
namespace runtime {

struct VerifyOutcome {
  std::vector<int32_t> accepted;  // draft node indices along the kept path
  std::vector<int32_t> tokens;    // emitted: the accepted nodes' tokens, then the bonus token
  // The target's argmax after each draft node and after the pending token: only filled when
  // Verifier::set_argmax(true) (a proposer that learns from them, lookahead); a scan of the whole
  // vocab per row is too much to pay on every plain step.
  std::vector<int32_t> node_argmax;
  int32_t root_argmax = -1;
  // Verify with n_logprobs >= 0: Sampler::Logprobs of each emitted token (with that many top
  // tokens), from the row it was chosen at, as plain decoding reports them.
  std::vector<TokenLogprobs> logprobs;
};

class Verifier {
 public:
  // `max_tokens` >= 1 caps the emitted tokens (the generation's remaining budget); the walk also
  // ends after an end-of-generation token (`is_end`). The sampler's window records every emitted
  // token, as Sample + Accept would. `n_logprobs` >= 0 fills VerifyOutcome::logprobs.
  absl::Status Verify(const DraftTree& tree, const float* rows, size_t n_vocab, Sampler& sampler,
                      uint32_t max_tokens, const std::function<bool(int32_t)>& is_end,
                      VerifyOutcome* out, int32_t n_logprobs = -1);

  // Whether Verify fills VerifyOutcome::node_argmax / root_argmax (default off).
  void set_argmax(bool on) { argmax_ = on; }

  // Test only: on rejection draw from p instead of the residual (a biased verifier, which the
  // distribution test must catch).
  static void SetSkipResidualForTesting(bool skip);

 private:
  std::vector<std::vector<int32_t>> children_;
  std::vector<int32_t> ids_;
  std::vector<double> probs_;
  bool argmax_ = false;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_VERIFIER_H_
