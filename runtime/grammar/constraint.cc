#include "runtime/grammar/constraint.h"

#include <limits>
#include <utility>

#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {
namespace grammar {

GrammarConstraint::GrammarConstraint(std::shared_ptr<const Grammar> grammar,
                                     std::shared_ptr<const TokenVocab> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)), matcher_(grammar_.get()) {}

absl::Status GrammarConstraint::Apply(absl::Span<float> logits) {
  vocab_->Mask(matcher_, &cache_, &allowed_);
  bool any = false;
  constexpr float kBanned = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (i < allowed_.size() && allowed_[i]) {
      any = true;
    } else {
      logits[i] = kBanned;
    }
  }
  if (!any) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "grammar: no token of the vocabulary can continue the output after %u generated tokens "
        "(the grammar needs a character that no token spells%s)",
        n_accepted_, vocab_->eog_ids().empty() ? ", or an end-of-generation token the model lacks" : ""));
  }
  return absl::OkStatus();
}

absl::Status GrammarConstraint::Accept(int32_t token) {
  if (vocab_->is_eog(token)) {
    if (!matcher_.accepting()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "grammar: end of generation (token %d) before the output is complete", token));
    }
    return absl::OkStatus();
  }
  if (token < 0 || token >= vocab_->size() || vocab_->text(token).empty() ||
      !matcher_.AcceptBytes(vocab_->text(token))) {
    return absl::InvalidArgumentError(absl::StrFormat("grammar: token %d is not allowed here", token));
  }
  ++n_accepted_;
  return absl::OkStatus();
}

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel
