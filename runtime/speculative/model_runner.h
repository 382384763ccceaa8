// runtime/speculative/model_runner.h: a draft model over one token stream, with its own small KV
// cache and executor: the draft-model and self-draft proposers run it. It follows the target's
// history lazily: Sync keeps the longest common prefix of its KV and recomputes the rest.
#ifndef KESTREL_RUNTIME_SPECULATIVE_MODEL_RUNNER_H_
#define KESTREL_RUNTIME_SPECULATIVE_MODEL_RUNNER_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/kv_cache/block_table.h"
#include "runtime/model/model.h"
#include "runtime/plan/executor.h"
#include "runtime/sequence/step_builder.h"
#include "runtime/speculative/draft_vocab.h"

namespace kestrel {
namespace runtime {

class ModelRunner {
 public:
  // `n_layers` > 0 runs only the model's first n_layers layers, then its output head (self-draft).
  // `draft_vocab` > 0 scores only that many tokens (draft_vocab.h) on the final hidden state
  // instead of running the model's full output head: logits index the subset (token()); a model
  // whose output matrix or plan cannot serve it keeps the full head.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(const Model* model,
                                                             hal::Device* fallback,
                                                             uint32_t context_length,
                                                             uint32_t n_layers = 0,
                                                             uint32_t draft_vocab = 0);
  // Makes the KV hold `history` (its longest common prefix with what it holds is kept) and
  // returns the logits after its last token (over the draft vocab when it has one).
  absl::StatusOr<absl::Span<const float>> Sync(absl::Span<const int32_t> history);
  // Appends one token; logits after it.
  absl::StatusOr<absl::Span<const float>> Feed(int32_t token);
  uint32_t n_tokens() const { return table_->n_tokens(); }
  uint32_t context_length() const { return context_length_; }
  // The token id of logit index i.
  int32_t token(uint32_t i) const { return vocab_ ? vocab_->token(i) : static_cast<int32_t>(i); }
  const Model& model() const { return *model_; }

 private:
  ModelRunner() = default;
  absl::StatusOr<absl::Span<const float>> Run(absl::Span<const int32_t> tokens);

  const Model* model_ = nullptr;
  uint32_t context_length_ = 0;
  std::unique_ptr<BlockPool> pool_;
  std::unique_ptr<BlockTable> table_;
  std::unique_ptr<Executor> executor_;
  StepBuilder step_;
  std::vector<int32_t> history_;  // tokens in the KV
  std::vector<float> logits_, hidden_;
  std::unique_ptr<DraftVocabHead> vocab_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_MODEL_RUNNER_H_
