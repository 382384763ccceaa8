// runtime/sequence/: the one sequence core that a Session drives alone and the Engine drives by
// the hundred. A Sequence is one stream of tokens: its KV blocks (a BlockTable over a pool it does
// not own), its token history, its sampler, its StreamText and the stop policy of the current
// generation. The step builder (step_builder.h) turns the pending tokens of any number of
// sequences (chains or speculative trees) into one step's inputs.
//
// This folder owns the rules every driver shares: what a sampled token does (end of generation,
// history, held-back text, stop strings, token budget, full context), in one place. It may not
// run the model, schedule, or touch device memory: drivers run the executor.
//
// Thread-safety: single-user (the driver's stepping thread).
#ifndef KESTREL_RUNTIME_SEQUENCE_SEQUENCE_H_
#define KESTREL_RUNTIME_SEQUENCE_SEQUENCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/grammar/constraint.h"
#include "runtime/grammar/grammar.h"
#include "runtime/grammar/token_mask.h"
#include "runtime/kv_cache/block_table.h"
#include "runtime/sampler/sampler.h"
#include "runtime/sequence/stream_text.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kestrel {
namespace runtime {

enum class StopReason { kNone = 0, kEos = 1, kMaxTokens = 2, kStopString = 3, kCallback = 4,
                        kContextFull = 5, kCancelled = 6 };
const char* StopReasonName(StopReason reason);

// Token id of the final streaming call that only flushes held-back text (KESTREL_TOKEN_NONE).
constexpr int32_t kNoToken = -1;

// Where a sequence's output goes: (token or kNoToken, text made final by it) -> keep going?
using TokenSink = std::function<bool(int32_t, absl::string_view)>;

// Log-probabilities of each generated token (Sampler::Logprobs): `sink` (null: off) gets the
// chosen token and the `n_probs` most likely ones, before the token's text goes to the TokenSink.
struct LogprobsRequest {
  uint32_t n_probs = 0;
  std::function<void(const TokenLogprobs&)> sink;
};

// When a generation stops (besides end of generation and the sink saying no).
struct StopPolicy {
  uint32_t max_new_tokens = 128;
  std::vector<std::string> stop_strings;
  uint32_t context_length = 0;  // the KV may hold at most this many tokens
};

// The vocabulary a grammar constraint masks: every token's generated text (control tokens have
// none, so a grammar never allows them) and the end-of-generation ids. O(vocab) to build: a
// driver builds it once and shares it between its sequences.
std::shared_ptr<const grammar::TokenVocab> BuildGrammarVocab(const Tokenizer& tokenizer);

class Sequence {
 public:
  Sequence(BlockPool* pool, const Tokenizer* tokenizer, Sampler sampler);

  // ---- KV and history. History = the tokens whose KV is in the table, then the pending ones
  // (sampled or given, not computed yet; usually one).
  BlockTable& table() { return table_; }
  const BlockTable& table() const { return table_; }
  uint32_t n_computed() const { return table_.n_tokens(); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  uint32_t n_pending() const { return static_cast<uint32_t>(tokens_.size()) - n_computed(); }
  absl::Span<const int32_t> pending() const {
    return absl::MakeConstSpan(tokens_).subspan(n_computed());
  }
  // Appends given tokens (a prompt) to the history as pending, and to the sampler's repetition
  // window unless `to_sampler` is false (the caller accepts them once they are computed).
  void AddTokens(absl::Span<const int32_t> tokens, bool to_sampler = true);
  // Keeps the first n tokens of history and KV (n <= history size).
  void Truncate(uint32_t n);
  // Drops pending tokens: the history ends where the KV does.
  void DropPending() { tokens_.resize(n_computed()); }
  // A saved history coming back (session state): the history becomes `tokens`, all computed (the
  // table holds exactly their positions; the caller writes their KV), nothing pending. On failure
  // (the pool has too few blocks) the sequence is empty.
  absl::Status RestoreComputed(absl::Span<const int32_t> tokens);

  Sampler& sampler() { return sampler_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

  // ---- One generation.
  // Starts one: new stream text and counters. `n_prompt` is the prompt's length.
  void Begin(StopPolicy policy, uint32_t n_prompt, LogprobsRequest logprobs = {});
  const StopPolicy& policy() const { return policy_; }
  const LogprobsRequest& logprobs() const { return logprobs_; }
  bool wants_logprobs() const { return static_cast<bool>(logprobs_.sink); }
  uint32_t n_prompt() const { return n_prompt_; }
  uint32_t n_generated() const { return n_generated_; }
  // Constrains the current generation (until the next Begin) to `grammar`: Sample() then draws
  // only tokens the grammar allows next (end of generation only once the output is complete)
  // and advances the grammar over each. Null: unconstrained.
  void Constrain(std::shared_ptr<const grammar::Grammar> grammar,
                 std::shared_ptr<const grammar::TokenVocab> vocab);
  bool constrained() const { return constraint_ != nullptr; }
  // kMaxTokens when the budget is spent before anything is sampled, else kNone.
  StopReason BeforeSample() const;
  // Samples from one row of logits and records the token in the repetition window (and the
  // grammar, when constrained: FAILED_PRECONDITION when no token can continue it).
  absl::StatusOr<int32_t> Sample(absl::Span<const float> logits);
  // What a token chosen by the sampler does, the rules every driver shares: end of generation
  // (held-back text flushed to the sink, token not kept), else the token joins the history as
  // pending, its final text goes to the sink (with held-back text flushed when it is known to be
  // the last), and the generation stops for a stop string, the sink's refusal, the token budget
  // or a full context. `n_computed` is the KV length the token was sampled after (the table's by
  // default; a speculative step passes the position along its accepted path). kNone: go on.
  // When the generation reports log-probabilities, the token's go to the LogprobsRequest's sink
  // first: `logprobs` when given (a speculative step computes them while verifying), else the
  // sampler's for the row it last prepared, so a token without `logprobs` must come from
  // Sample() right before.
  StopReason Emit(int32_t token, const TokenSink& sink) { return Emit(token, n_computed(), sink); }
  StopReason Emit(int32_t token, uint32_t n_computed, const TokenSink& sink,
                  const TokenLogprobs* logprobs = nullptr);
  // Delivers the held-back text (cancellation, end of generation) with token kNoToken.
  void FlushHeld(const TokenSink& sink);

 private:
  BlockTable table_;
  const Tokenizer* tokenizer_;
  Sampler sampler_;
  std::vector<int32_t> tokens_;
  StopPolicy policy_;
  LogprobsRequest logprobs_;
  TokenLogprobs logprobs_scratch_;
  std::unique_ptr<StreamText> stream_;
  std::unique_ptr<grammar::GrammarConstraint> constraint_;
  std::vector<float> masked_;  // the constrained copy of a row of logits
  uint32_t n_prompt_ = 0, n_generated_ = 0;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SEQUENCE_SEQUENCE_H_
