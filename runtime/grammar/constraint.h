// runtime/grammar/: one sequence's grammar constraint, what the sequence core applies to each
// row of logits before sampling and advances with each sampled token.
#ifndef KESTREL_RUNTIME_GRAMMAR_CONSTRAINT_H_
#define KESTREL_RUNTIME_GRAMMAR_CONSTRAINT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/grammar/grammar.h"
#include "runtime/grammar/matcher.h"
#include "runtime/grammar/token_mask.h"

namespace kestrel {
namespace runtime {
namespace grammar {

class GrammarConstraint {
 public:
  GrammarConstraint(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenVocab> vocab);

  // Sets the logit of every token the grammar does not allow next to -inf (ids past the
  // vocabulary too). End-of-generation tokens stay only when the output so far is complete.
  // FAILED_PRECONDITION when no token of the vocabulary can continue (the grammar needs a
  // character no token spells).
  absl::Status Apply(absl::Span<float> logits);
  // Advances over `token`'s text (end of generation: nothing). INVALID_ARGUMENT, state
  // unchanged, when the grammar does not allow it.
  absl::Status Accept(int32_t token);
  // Is the output so far a complete sentence of the grammar?
  bool accepting() const { return matcher_.accepting(); }

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenVocab> vocab_;
  Matcher matcher_;
  std::vector<uint8_t> allowed_;
  MaskCache cache_;
  uint32_t n_accepted_ = 0;
};

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GRAMMAR_CONSTRAINT_H_
