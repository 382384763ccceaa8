#include "runtime/speculative/draft_model_proposer.h"

#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {

absl::Status CheckSameVocab(const Model& target, const Model& draft) {
  const Tokenizer& a = target.tokenizer();
  const Tokenizer& b = draft.tokenizer();
  if (a.vocab_size() != b.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the draft model's vocab has %d tokens but the target's has %d: a draft model must share "
        "the target's vocab",
        b.vocab_size(), a.vocab_size()));
  }
  for (int32_t i = 0; i < a.vocab_size(); ++i) {
    if (a.TokenText(i) != b.TokenText(i)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the draft model's token %d is '%s' but the target's is '%s': a draft model must share "
          "the target's vocab",
          i, b.TokenText(i), a.TokenText(i)));
    }
  }
  if (a.eos_id() != b.eos_id() || a.bos_id() != b.bos_id()) {
    return absl::InvalidArgumentError("the draft model's BOS/EOS ids differ from the target's");
  }
  return absl::OkStatus();
}

absl::Status DraftModelProposer::Propose(const ProposeRequest& req, DraftTree* out) {
  if (req.max_nodes == 0 || req.max_depth == 0) return absl::OkStatus();
  // Room in the draft's own context for the history and the chain.
  if (req.history.size() + req.max_depth > runner_->context_length()) return absl::OkStatus();
  absl::StatusOr<absl::Span<const float>> logits = runner_->Sync(req.history);
  if (!logits.ok()) return logits.status();
  const bool sampling = req.sampling != nullptr && req.sampling->temperature > 0.0f;
  if (sampling && !sampler_) {
    SamplerConfig c = *req.sampling;
    c.seed ^= 0x5eed5eedULL;  // the draft's own stream
    c.repetition_penalty = 1.0f;
    absl::StatusOr<Sampler> s = Sampler::Create(c);
    if (!s.ok()) return s.status();
    sampler_ = std::make_unique<Sampler>(std::move(*s));
  }
  const uint32_t n = std::min(req.max_depth, req.max_nodes);
  int32_t parent = -1;
  for (uint32_t i = 0; i < n; ++i) {
    int32_t token = 0;
    if (!sampling) {
      const absl::Span<const float> l = *logits;
      for (size_t v = 1; v < l.size(); ++v) {
        if (l[v] > l[token]) token = static_cast<int32_t>(v);
      }
      token = runner_->token(static_cast<uint32_t>(token));
      parent = out->Add(parent, token);
    } else {
      if (auto s = sampler_->Distribution(*logits, &ids_, &probs_); !s.ok()) return s;
      const double u = sampler_->Uniform();
      double acc = 0;
      token = ids_.back();
      for (size_t k = 0; k < ids_.size(); ++k) {
        acc += probs_[k];
        if (u < acc) {
          token = ids_[k];
          break;
        }
      }
      // Logit indices are draft-vocab indices when the runner has one; q is over the full vocab
      // (0 outside the subset).
      token = runner_->token(static_cast<uint32_t>(token));
      parent = out->Add(parent, token);
      out->q.resize(out->size());
      std::vector<float>& q = out->q[parent];
      q.assign(runner_->model().config().n_vocab, 0.0f);
      for (size_t k = 0; k < ids_.size(); ++k) q[runner_->token(static_cast<uint32_t>(ids_[k]))] = static_cast<float>(probs_[k]);
    }
    if (i + 1 == n) break;
    logits = runner_->Feed(token);
    if (!logits.ok()) return logits.status();
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
