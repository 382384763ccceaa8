// runtime/sampler/: turns one row of logits into one token id.
//
// Owns the sampling chain (repetition penalty, top-k, top-p, min-p, temperature, seeded draw) and
// the per-sequence state it needs (the repetition window and the RNG). It sees only a span of float
// logits and token ids: it knows nothing about models, tokenizers, sessions, devices or the HAL, and
// may not include anything from runtime/model, hal or plugins.

#ifndef KESTREL_RUNTIME_SAMPLER_SAMPLER_H_
#define KESTREL_RUNTIME_SAMPLER_SAMPLER_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kestrel::runtime {

// Sampling parameters. The defaults are llama.cpp's. Every "off" value makes its stage a no-op.
// \since 0.1.0
struct SamplerConfig {
  float temperature = 0.8f;         // >= 0; exactly 0 (or -0) means greedy; negative is invalid
  int32_t top_k = 40;               // >= 0; 0 = off
  float top_p = 0.95f;              // (0, 1]; 1 = off
  float min_p = 0.05f;              // [0, 1]; 0 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off
  int32_t repetition_window = 64;   // >= 0; 0 = off (number of last accepted tokens penalised)
  uint64_t seed = 0xC0FFEE;         // seeds std::mt19937_64
  // Added to the logit of each token id before every other stage; -inf bans the token. Values
  // must be finite or -inf; ids outside the row are ignored (the API checks them against the vocab).
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// A token and its log-probability.
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

// The log-probabilities of one sampling step (Sampler::Logprobs).
struct TokenLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // most likely first (ties towards the lower id)
};

// OK, or INVALID_ARGUMENT naming the first bad field and its value, e.g.
// "sampler top_p = 1.5 is outside (0, 1]". NaN and infinities are rejected for every float field.
absl::Status ValidateSamplerConfig(const SamplerConfig& config);

// Per-sequence token sampler.
//
// Sample() on a row of logits works on a private copy of it, in this order (llama.cpp's default chain):
//   1. NaN logits count as -inf; the logit bias is added. If any logit is +inf, only the +inf
//      tokens stay, equally likely.
//   2. Repetition penalty, once per distinct token among the last `repetition_window` accepted tokens
//      (ids outside [0, logits.size()) are ignored): logit > 0 ? logit / penalty : logit * penalty.
//   Greedy (temperature == 0) then returns the argmax, ties to the lowest id, and stops here.
//   3. top-k: keep the k highest logits (ties broken towards the lower id).
//   4. top-p: softmax (temperature 1) over what is left; keep the smallest prefix, in descending
//      order, whose cumulative probability is >= top_p (at least one token).
//   5. min-p: keep the tokens whose probability is >= min_p * the highest probability.
//   6. temperature, softmax, and one draw u in [0, 1) from the RNG.
//
// Determinism: the draw uses the top 53 bits of one std::mt19937_64 output (fully specified by the
// standard), candidates are visited in a canonical order (descending logit with ties by id, or id
// order when nothing sorted them), and sums run in double in that order; so the same seed, config,
// accepted tokens and logits give the same tokens on every platform whose exp() agrees (IEEE double,
// no -ffast-math). Every non-greedy Sample() that returns OK consumes exactly one RNG output; greedy
// and failing calls consume none.
//
// Cost: O(vocab) per call plus O(k log k) for top-k (O(vocab log vocab) worst case for top-p with
// top-k off, usually far less). After the first call for a given vocab size, Sample() and Accept()
// allocate nothing: all scratch is kept in members.
//
// Thread-safety: not thread-safe; use one Sampler per sequence. Copyable and movable (a copy carries
// the window and the RNG state, so it continues the same stream).
// \since 0.1.0
class Sampler {
 public:
  // INVALID_ARGUMENT if ValidateSamplerConfig() rejects `config`.
  static absl::StatusOr<Sampler> Create(const SamplerConfig& config);

  // Picks a token id in [0, logits.size()). INVALID_ARGUMENT if `logits` is empty, longer than
  // INT32_MAX, or has no token with a logit other than -inf/NaN (after filtering nothing would be
  // left). Does not record the token: call Accept() with the token actually used.
  absl::StatusOr<int32_t> Sample(absl::Span<const float> logits);

  // The distribution Sample() draws from: the surviving candidates `ids` and their probabilities
  // `probs` (summing to 1, in the order Draw visits them), after the whole chain above. Greedy:
  // the argmax alone with probability 1. Errors as Sample(). Consumes no RNG output. Speculative
  // verification samples from it (and residuals of it) to keep the target distribution exact.
  absl::Status Distribution(absl::Span<const float> logits, std::vector<int32_t>* ids,
                            std::vector<double>* probs);
  // One uniform double in [0, 1) from the sampler's RNG (the top 53 bits of one output).
  double Uniform() { return NextUniform(); }

  // After a successful Sample() or Distribution(): log-probabilities of the distribution it
  // sampled from before truncation, i.e. log-softmax at temperature 1 of the logits after step 1 and 2 (bias and
  // repetition penalty applied; top-k/top-p/min-p and temperature not), the usual meaning of
  // "logprobs" (OpenAI, vLLM). Fills `chosen` for `token` and the `n_top` most likely tokens
  // (fewer if the row is shorter). O(vocab) plus O(vocab log n_top); allocates only to grow.
  void Logprobs(int32_t token, size_t n_top, TokenLogprobs* out);

  // Records `token` as the newest entry of the repetition window (dropping the oldest when full).
  // No-op when repetition_window == 0. Never allocates.
  void Accept(int32_t token);

  // Clears the repetition window and re-seeds the RNG from config().seed, so the sampler repeats the
  // token sequence it produced since Create().
  void Reset();

  const SamplerConfig& config() const { return config_; }

  // What continues this sampler's stream in another process (session state): the RNG state in
  // the standard's text form of std::mt19937_64, and the repetition window, oldest first.
  std::string RngState() const;
  std::vector<int32_t> Window() const;
  // Restores them. INVALID_ARGUMENT when `rng_state` is not a mt19937_64 state or the window is
  // longer than config().repetition_window; the sampler is unchanged then.
  absl::Status Restore(const std::string& rng_state, absl::Span<const int32_t> window);

 private:
  explicit Sampler(const SamplerConfig& config);

  // The chain up to the draw: greedy returns the argmax; otherwise -1 with cand_ holding the
  // candidates left by top-k, top-p and min-p. Errors as Sample().
  absl::StatusOr<int32_t> Filter(absl::Span<const float> logits);
  // weights_[i] = exp((logit - max) / temperature) of cand_[i]; *total their sum (in order).
  void Weights(double* total);
  // Copies `logits` into logits_ with NaN -> -inf, the +inf rule and the repetition penalty applied.
  void PrepareLogits(absl::Span<const float> logits);
  // Makes cand_[0, m) the m best candidates in descending order, given cand_[0, sorted_) already is.
  void EnsureSortedPrefix(size_t m);
  void ApplyTopK();
  void ApplyTopP();
  void ApplyMinP();
  int32_t Draw();
  // Uniform double in [0, 1) from the top 53 bits of one mt19937_64 output.
  double NextUniform();

  SamplerConfig config_;
  std::mt19937_64 rng_;

  // Repetition window: ring buffer of the last `repetition_window` accepted tokens, grown as
  // tokens are accepted (so a huge window costs only the tokens it holds).
  std::vector<int32_t> window_;
  size_t window_head_ = 0;   // index of the next write
  size_t window_count_ = 0;  // valid entries, <= window_.size()

  // Scratch reused across calls (grown on the first call for a vocab size, never shrunk).
  std::vector<float> logits_;          // prepared logits, indexed by token id
  std::vector<int32_t> cand_;          // surviving candidate ids
  std::vector<double> weights_;        // per-candidate weights during the draw
  std::vector<int32_t> distinct_;      // distinct tokens of the window (capacity = window size)
  size_t sorted_ = 0;                  // cand_[0, sorted_) is the sorted best prefix
  std::vector<int32_t> top_ids_;       // Logprobs scratch
};

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_SAMPLER_SAMPLER_H_
