#include "runtime/sequence/sequence.h"

#include <algorithm>
#include <utility>

namespace kestrel {
namespace runtime {

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kEos: return "eos";
    case StopReason::kMaxTokens: return "max_tokens";
    case StopReason::kStopString: return "stop_string";
    case StopReason::kCallback: return "callback";
    case StopReason::kContextFull: return "context_full";
    case StopReason::kCancelled: return "cancelled";
    default: return "none";
  }
}

std::shared_ptr<const grammar::TokenVocab> BuildGrammarVocab(const Tokenizer& tokenizer) {
  std::vector<std::string> texts(static_cast<size_t>(std::max(tokenizer.vocab_size(), 0)));
  for (size_t id = 0; id < texts.size(); ++id) {
    texts[id] = std::string(tokenizer.PieceView(static_cast<int32_t>(id)));
  }
  return grammar::TokenVocab::Build(std::move(texts), tokenizer.EndOfGenerationIds());
}

Sequence::Sequence(BlockPool* pool, const Tokenizer* tokenizer, Sampler sampler)
    : table_(pool), tokenizer_(tokenizer), sampler_(std::move(sampler)),
      stream_(std::make_unique<StreamText>(std::vector<std::string>{})) {}

void Sequence::AddTokens(absl::Span<const int32_t> tokens, bool to_sampler) {
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  if (!to_sampler) return;
  for (int32_t t : tokens) sampler_.Accept(t);
}

void Sequence::Truncate(uint32_t n) {
  if (n < tokens_.size()) tokens_.resize(n);
  table_.Truncate(n);
}

absl::Status Sequence::RestoreComputed(absl::Span<const int32_t> tokens) {
  Truncate(0);
  if (auto s = table_.Append(static_cast<uint32_t>(tokens.size())); !s.ok()) return s;
  tokens_.assign(tokens.begin(), tokens.end());
  return absl::OkStatus();
}

void Sequence::Begin(StopPolicy policy, uint32_t n_prompt, LogprobsRequest logprobs) {
  policy_ = std::move(policy);
  logprobs_ = std::move(logprobs);
  stream_ = std::make_unique<StreamText>(policy_.stop_strings);
  n_prompt_ = n_prompt;
  n_generated_ = 0;
  constraint_.reset();
}

void Sequence::Constrain(std::shared_ptr<const grammar::Grammar> grammar,
                         std::shared_ptr<const grammar::TokenVocab> vocab) {
  constraint_.reset();
  if (grammar) constraint_ = std::make_unique<grammar::GrammarConstraint>(std::move(grammar), std::move(vocab));
}

StopReason Sequence::BeforeSample() const {
  return n_generated_ >= policy_.max_new_tokens ? StopReason::kMaxTokens : StopReason::kNone;
}

absl::StatusOr<int32_t> Sequence::Sample(absl::Span<const float> logits) {
  if (constraint_) {
    masked_.assign(logits.begin(), logits.end());
    if (auto s = constraint_->Apply(absl::MakeSpan(masked_)); !s.ok()) return s;
    logits = masked_;
  }
  absl::StatusOr<int32_t> t = sampler_.Sample(logits);
  if (!t.ok()) return t;
  if (constraint_) {
    if (auto s = constraint_->Accept(*t); !s.ok()) return s;
  }
  sampler_.Accept(*t);
  return t;
}

void Sequence::FlushHeld(const TokenSink& sink) {
  std::string rest = stream_->Flush();
  if (!rest.empty() && sink) sink(kNoToken, rest);
}

StopReason Sequence::Emit(int32_t token, uint32_t n_computed, const TokenSink& sink,
                          const TokenLogprobs* logprobs) {
  if (tokenizer_->IsEndOfGeneration(token)) {
    FlushHeld(sink);
    return StopReason::kEos;
  }
  if (logprobs_.sink) {
    if (logprobs == nullptr) {
      sampler_.Logprobs(token, logprobs_.n_probs, &logprobs_scratch_);
      logprobs = &logprobs_scratch_;
    }
    logprobs_.sink(*logprobs);
  }
  tokens_.push_back(token);
  ++n_generated_;
  bool stopped = false;
  std::string text = stream_->Push(tokenizer_->PieceView(token), &stopped);
  // The last token of the run flushes what was held back.
  const bool full = n_computed >= policy_.context_length;
  const bool last = !stopped && (n_generated_ >= policy_.max_new_tokens || full);
  if (last) text += stream_->Flush();
  if (sink && !sink(token, text)) return StopReason::kCallback;
  if (stopped) return StopReason::kStopString;
  if (n_generated_ >= policy_.max_new_tokens) return StopReason::kMaxTokens;
  if (full) return StopReason::kContextFull;
  return StopReason::kNone;
}

}  // namespace runtime
}  // namespace kestrel
