// runtime/speculative/ngram_proposer.h: n-gram / prompt lookup. The longest suffix of the history
// (up to max_ngram tokens) that occurred before proposes what followed it there; several earlier
// occurrences with different continuations become branches of the tree. Costs microseconds and
// proposes nothing when the text does not repeat, so it is always safe to try.
#ifndef KESTREL_RUNTIME_SPECULATIVE_NGRAM_PROPOSER_H_
#define KESTREL_RUNTIME_SPECULATIVE_NGRAM_PROPOSER_H_

#include "runtime/speculative/proposer.h"

namespace kestrel {
namespace runtime {

class NgramProposer : public Proposer {
 public:
  explicit NgramProposer(uint32_t max_ngram = 3, uint32_t min_ngram = 1, uint32_t max_branches = 4)
      : max_ngram_(max_ngram), min_ngram_(min_ngram), max_branches_(max_branches) {}
  SpecMethod method() const override { return SpecMethod::kNgram; }
  absl::Status Propose(const ProposeRequest& request, DraftTree* out) override;

 private:
  uint32_t max_ngram_, min_ngram_, max_branches_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_NGRAM_PROPOSER_H_
