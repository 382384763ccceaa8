// runtime/speculative/draft_model_proposer.h: a smaller model (a second GGUF with the target's
// vocab: kDraft) or the target's own first layers plus its output head (kSelf) proposes a chain:
// its greedy tokens when the target is greedy, tokens sampled from its own distribution (attached
// as q, so the verifier's rejection rule stays exact) when the target samples.
#ifndef KESTREL_RUNTIME_SPECULATIVE_DRAFT_MODEL_PROPOSER_H_
#define KESTREL_RUNTIME_SPECULATIVE_DRAFT_MODEL_PROPOSER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "runtime/speculative/model_runner.h"
#include "runtime/speculative/proposer.h"

namespace kestrel {
namespace runtime {

// INVALID_ARGUMENT (naming both sizes / the first differing token) when `draft` cannot draft for
// `target`: another vocab size or other token texts.
absl::Status CheckSameVocab(const Model& target, const Model& draft);

class DraftModelProposer : public Proposer {
 public:
  DraftModelProposer(SpecMethod method, std::unique_ptr<ModelRunner> runner)
      : method_(method), runner_(std::move(runner)) {}
  SpecMethod method() const override { return method_; }
  absl::Status Propose(const ProposeRequest& request, DraftTree* out) override;

 private:
  SpecMethod method_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<Sampler> sampler_;  // the draft's own draws when the target samples
  std::vector<int32_t> ids_;
  std::vector<double> probs_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_DRAFT_MODEL_PROPOSER_H_
