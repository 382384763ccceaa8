// runtime/session/: a one-sequence driver of the sequence core (runtime/sequence/): it owns one
// Sequence (KV blocks, history, sampler, stream text, stop policy), its own KV pool and executor,
// the last logits, and the generate loop (prefill, decode, cancellation). The rules of what a
// sampled token does live in Sequence::Emit, shared with the engine. It owns no device memory
// directly (the executor does) and never talks to plugins except through the executor.
//
// Thread-safety: single-user, except Cancel(), which any thread may call at any time.
#ifndef KESTREL_RUNTIME_SESSION_SESSION_H_
#define KESTREL_RUNTIME_SESSION_SESSION_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "hal/include/kestrel/plugin_api.h"
#include "runtime/kv_cache/block_pool.h"
#include "runtime/kv_cache/block_table.h"
#include "runtime/kv_cache/window_tables.h"
#include "runtime/model/model.h"
#include "runtime/package/session_state_format.h"
#include "runtime/plan/executor.h"
#include "runtime/sampler/sampler.h"
#include "runtime/sequence/sequence.h"
#include "runtime/sequence/step_builder.h"
#include "runtime/speculative/speculator.h"

namespace kestrel {
namespace runtime {

struct SessionConfig {
  uint32_t context_length = 0;  // 0: the model's trained context
  uint32_t block_size = 16;
  SamplerConfig sampler;
  uint32_t n_threads = 0;
  uint32_t kv_dtype = KESTREL_DTYPE_F32;  // KV cache element type: F32 or F16
  SpecConfig spec;                        // speculative decoding (off by default)
};

// How Embed reduces the hidden states of a text's tokens to one vector.
enum class Pooling { kMean = 0, kLast = 1 };

struct GenerateRequest {
  // Token ids, used as given. May be empty with keep_context to continue the context the session
  // holds: the token the last generation stopped on (still pending, see Session::pending()) is
  // computed first, else the session's logits (after LoadState or Decode) are sampled.
  std::vector<int32_t> prompt;
  uint32_t max_new_tokens = 128;
  std::vector<std::string> stop_strings;
  // Streaming: (token, text made final by it) -> keep going?
  std::function<bool(int32_t, absl::string_view)> on_token;
  bool keep_context = false;
  // Log-probabilities (Sampler::Logprobs): called once per generated token, before on_token for
  // it, with the chosen token and the n_probs most likely ones (the end-of-generation token that
  // stops the run is not reported, as in on_token).
  std::function<void(const TokenLogprobs&)> on_logprobs;
  uint32_t n_probs = 0;
  // Constrained output (null: none): only tokens the grammar allows next are sampled, and the
  // generation ends (end of generation) only where the grammar accepts. Speculative decoding is
  // off for a constrained generation (its drafts are not grammar-checked); plain decoding runs.
  std::shared_ptr<const grammar::Grammar> grammar;
};

struct GenerateResult {
  uint32_t n_prompt = 0;
  uint32_t n_generated = 0;
  uint32_t n_decode_steps = 0;  // tokens produced by decode steps (all but the first)
  double prefill_ms = 0, decode_ms = 0;
  StopReason stop_reason = StopReason::kNone;
  std::vector<int32_t> tokens;  // generated ids (the end-of-generation token excluded)
  std::string text;             // the text delivered to on_token, stop string excluded
  SpecStats spec;               // speculative decoding of this generation
};

class Session {
 public:
  // `fallback` runs ops the model's device does not support (may be null).
  static absl::StatusOr<std::unique_ptr<Session>> Create(const Model* model,
                                                         hal::Device* fallback,
                                                         const SessionConfig& config);
  ~Session();

  // One forward step over `tokens` appended to the context; logits of the last position.
  absl::Status Decode(absl::Span<const int32_t> tokens);
  bool has_logits() const { return has_logits_; }
  const std::vector<float>& logits() const { return logits_; }
  uint32_t n_tokens() const { return seq_->n_computed(); }
  uint32_t context_length() const { return context_length_; }
  absl::Status Truncate(uint32_t n_tokens);
  absl::StatusOr<int32_t> Sample();

  // The embedding of `tokens`: the final hidden state (after the output norm, what the output
  // head multiplies) of every token, mean-pooled or the last token's, L2-normalised to length 1.
  // Runs from an empty context and leaves the session empty. FAILED_PRECONDITION unless the
  // session was created with SessionConfig::embeddings; INVALID_ARGUMENT for no tokens or more
  // than the context; OUT_OF_RANGE for an id outside the vocab.
  absl::Status Embed(absl::Span<const int32_t> tokens, Pooling pooling, std::vector<float>* out);

  // Runs a whole generation. A cancelled run returns OK with stop_reason kCancelled.
  absl::StatusOr<GenerateResult> Generate(const GenerateRequest& request);
  void Cancel() { cancel_.store(true, std::memory_order_relaxed); }

  const Executor& executor() const { return *executor_; }
  // The final hidden state (after the output norm) of the last `n_last` positions of the last
  // forward step ([n_last, n_embd] row-major; n_last = 0: every position of that step).
  // FAILED_PRECONDITION before any step; OUT_OF_RANGE when the step had fewer positions.
  absl::Status Hidden(uint32_t n_last, std::vector<float>* out);
  // Speculative decoding statistics of the last Generate (zero when speculation is off).
  const SpecStats& last_spec_stats() const { return last_spec_; }

  // The tokens in the KV cache, in order.
  absl::Span<const int32_t> history() const {
    return absl::MakeConstSpan(seq_->tokens()).first(seq_->n_computed());
  }
  // The token the last Generate sampled (and the sampler accepted) but did not compute: the one
  // it stopped on (max tokens, stop string, callback, cancellation; an end-of-generation token is
  // never kept). Dropped by Decode, Truncate and a Generate with a prompt; a keep_context
  // Generate with an empty prompt computes it first.
  absl::Span<const int32_t> pending() const { return seq_->pending(); }

  // ---- session state (session_state.cc; format: runtime/package/session_state_format.h) ----
  // Writes the state (model fingerprint, tokens, pending token, logits, sampler config and RNG,
  // the KV cache in its element type) into the memory `reserve` returns for the state's size;
  // `reserve` returning nullptr only measures. Returns the size. The speculator's state is not
  // saved: drafts only decide how fast the target's tokens come, so a state saved with or without
  // speculative decoding restores into a session with or without it. Greedy continuations are
  // token-identical; sampled ones keep the target's distribution, but their draws depend on the
  // drafts (lookahead's window, a draft model's own sampler, the controller's adaptation), which
  // start over on restore.
  absl::StatusOr<uint64_t> SaveState(const std::function<uint8_t*(uint64_t)>& reserve);
  // Restores a state SaveState wrote, in this or another process, into this session: the same
  // model (fingerprint) and KV geometry and element type are required, the context must fit.
  // A pending token is decoded (not accepted again), so the next sample continues exactly where
  // the saved session would have. The speculator's proposers start over from the restored
  // history. Bad input (damaged bytes, another model, ...) is refused with a message naming it
  // and leaves the session unchanged; a device failure while writing the KV cache leaves it
  // empty. `data` may have any alignment (an unaligned state is copied first).
  absl::Status LoadState(const uint8_t* data, uint64_t size);
  // KV blocks this session holds in each KV group of its plan (group 0: the full-context layers;
  // then one per sliding window whose KV is capped at the window).
  std::vector<uint32_t> kv_blocks_held() const;
  // Mixture of experts: restarts the per-expert routing counts (Executor::expert_counts).
  void ResetExpertStats() { executor_->ResetExpertCounts(); }

 private:
  Session() = default;
  absl::Status CheckTokens(absl::Span<const int32_t> tokens) const;
  // Replaces the context with `tokens` whose KV `layers` of the state at `data` hold (the
  // checks done): on failure the session is empty.
  absl::Status RestoreKv(const uint8_t* data, const std::vector<int32_t>& tokens,
                         const std::vector<KvLayerLayout>& layers);
  // The block table of `layer`'s KV group (the sequence's, or a sliding-window group's).
  const BlockTable& TableOfLayer(uint32_t layer) const;
  // One forward step over the sequence's pending tokens; logits of the last one. Runs them in
  // steps of at most max_step_ tokens when window groups are capped. On failure the KV is as
  // before (the pending tokens stay pending), or empty when a window group moved past it.
  absl::Status RunPending();
  // One forward step over the first `n` pending tokens.
  absl::Status RunPendingStep(uint32_t n);
  // Appends `n` positions to the KV of every group (group 0 and the window groups). On failure
  // nothing changed.
  absl::Status AppendKv(uint32_t n);
  // Back to n_past tokens of KV in every group (a failed or rejected step) if the window groups
  // still allow it, else empty.
  void RollBack(uint32_t n_past);
  // One decode step with speculation: the pending token plus a draft tree in one forward, the
  // verified tokens emitted through the sequence. *stop: the stop reason (kNone: go on).
  absl::Status SpeculativeStep(const TokenSink& sink, StopReason* stop, uint32_t* n_emitted);
  // Moves the accepted tree path onto consecutive KV positions in every group.
  absl::Status KeepAcceptedPath(uint32_t n_past);
  // Hands the speculator the hidden state of row `row` of the last step, if it reads it.
  absl::Status FeedHidden(size_t row);

  const Model* model_ = nullptr;
  uint32_t context_length_ = 0;
  std::unique_ptr<BlockPool> pool_;
  std::unique_ptr<Sequence> seq_;
  // Sliding-window KV groups with their own pools (null when every layer uses the sequence's
  // table), kept at the sequence's KV length, and the step size that keeps their pools
  // sufficient (longer inputs run in pieces, draft trees are capped).
  std::unique_ptr<WindowTables> window_tables_;
  uint32_t max_step_ = 0;
  uint32_t last_step_tokens_ = 0;  // tokens of the last RunPendingStep (its hidden-state rows)
  std::unique_ptr<Executor> executor_;
  std::vector<float> logits_;
  bool has_logits_ = false;
  std::atomic<bool> cancel_{false};
  StepBuilder step_;
  std::unique_ptr<Speculator> spec_;  // null: plain decoding
  SpecStats last_spec_;
  DraftTree tree_;
  VerifyOutcome outcome_;
  std::vector<int32_t> verify_tokens_, verify_parents_;
  std::vector<float> hidden_;
  std::shared_ptr<const grammar::TokenVocab> grammar_vocab_;  // built at the first constrained run
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SESSION_SESSION_H_
