#include "runtime/speculative/model_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/plan/plan_options.h"

namespace kestrel {
namespace runtime {
namespace {

constexpr uint32_t kBlockSize = 16;

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(const Model* model,
                                                                 hal::Device* fallback,
                                                                 uint32_t context_length,
                                                                 uint32_t n_layers,
                                                                 uint32_t draft_vocab) {
  std::unique_ptr<ModelRunner> r(new ModelRunner());
  r->model_ = model;
  r->context_length_ = std::min(context_length, model->config().context_length);
  if (r->context_length_ == 0) r->context_length_ = model->config().context_length;
  if (n_layers > model->config().n_layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "self-draft layers = %u exceeds the model's %u layers", n_layers, model->config().n_layers));
  }
  const uint32_t n_blocks = (r->context_length_ + kBlockSize - 1) / kBlockSize;
  r->pool_ = std::make_unique<BlockPool>(n_blocks, kBlockSize);
  r->table_ = std::make_unique<BlockTable>(r->pool_.get());
  PlanOptions options;
  options.block_size = kBlockSize;
  options.n_blocks = n_blocks;
  options.context_length = r->context_length_;
  options.n_layers = n_layers;  // self-draft: the first layers, then the output head
  absl::StatusOr<ExecutionPlan> plan = absl::UnknownError("no plan");
  if (draft_vocab > 0) {
    // A model whose output matrix or plan cannot serve it keeps its full output head.
    absl::StatusOr<std::unique_ptr<DraftVocabHead>> vocab =
        DraftVocabHead::Create(*model, draft_vocab, {"output.weight", "token_embd.weight"}, "draft");
    if (vocab.ok()) {
      PlanOptions hidden = options;
      hidden.hidden = HiddenState::kPostNorm;  // what the output head multiplies
      plan = model->BuildPlan(hidden);
      if (plan.ok()) r->vocab_ = std::move(*vocab);
    }
  }
  if (!r->vocab_) plan = model->BuildPlan(options);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<std::unique_ptr<Executor>> exec =
      Executor::Create(model, std::move(*plan), model->device(), fallback);
  if (!exec.ok()) return exec.status();
  r->executor_ = std::move(*exec);
  return r;
}

absl::StatusOr<absl::Span<const float>> ModelRunner::Run(absl::Span<const int32_t> tokens) {
  const uint32_t n_past = table_->n_tokens();
  if (uint64_t{n_past} + tokens.size() > context_length_) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "draft: %u tokens exceed its context of %u", n_past + tokens.size(), context_length_));
  }
  if (auto s = table_->Append(static_cast<uint32_t>(tokens.size())); !s.ok()) return s;
  step_.Reset();
  absl::StatusOr<int32_t> row =
      step_.Add({table_.get(), n_past, tokens, {}, vocab_ ? LogitRows::kNone : LogitRows::kLast});
  absl::Status s = row.status();
  if (s.ok()) s = executor_->Run(step_.Finish(), &logits_);
  if (s.ok() && vocab_) s = executor_->ReadHidden(&hidden_);
  if (s.ok() && vocab_) {
    const uint32_t D = vocab_->n_embd();
    s = hidden_.size() == tokens.size() * D
            ? vocab_->Logits(hidden_.data() + (tokens.size() - 1) * D, 1, &logits_)
            : absl::InternalError("draft: the plan's hidden state has an unexpected size");
  }
  if (!s.ok()) {
    table_->Truncate(n_past);
    history_.resize(n_past);
    return s;
  }
  history_.insert(history_.end(), tokens.begin(), tokens.end());
  return absl::MakeConstSpan(logits_);
}

absl::StatusOr<absl::Span<const float>> ModelRunner::Sync(absl::Span<const int32_t> history) {
  if (history.empty()) return absl::InvalidArgumentError("draft: empty history");
  size_t common = 0;
  while (common < history_.size() && common < history.size() && history_[common] == history[common]) {
    ++common;
  }
  // At least the last token is run, for its logits.
  if (common == history.size()) --common;
  table_->Truncate(static_cast<uint32_t>(common));
  history_.resize(common);
  return Run(history.subspan(common));
}

absl::StatusOr<absl::Span<const float>> ModelRunner::Feed(int32_t token) {
  return Run(absl::MakeConstSpan(&token, 1));
}

}  // namespace runtime
}  // namespace kestrel
