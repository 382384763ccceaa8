#include "runtime/sampler/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <locale>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel::runtime {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr double kNegInfD = -std::numeric_limits<double>::infinity();
// Initial sorted prefix for top-p with top-k off: the nucleus is usually a few dozen tokens, so
// sorting the whole vocabulary would be wasted work; the prefix doubles until it is big enough.
constexpr size_t kTopPInitialPrefix = 64;

absl::Status Invalid(const char* field, float value, const char* rule) {
  return absl::InvalidArgumentError(absl::StrCat("sampler ", field, " = ", value, " ", rule));
}

}  // namespace

absl::Status ValidateSamplerConfig(const SamplerConfig& c) {
  if (!std::isfinite(c.temperature)) {
    return Invalid("temperature", c.temperature, "must be finite");
  }
  if (c.temperature < 0.0f) {
    return Invalid("temperature", c.temperature, "must be >= 0 (0 means greedy)");
  }
  if (c.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler top_k = ", c.top_k, " must be >= 0 (0 means off)"));
  }
  // Written as !(inside) so that NaN fails too.
  if (!(c.top_p > 0.0f && c.top_p <= 1.0f)) {
    return Invalid("top_p", c.top_p, "is outside (0, 1]");
  }
  if (!(c.min_p >= 0.0f && c.min_p <= 1.0f)) {
    return Invalid("min_p", c.min_p, "is outside [0, 1]");
  }
  if (!std::isfinite(c.repetition_penalty) || !(c.repetition_penalty > 0.0f)) {
    return Invalid("repetition_penalty", c.repetition_penalty, "must be finite and > 0 (1 means off)");
  }
  for (const auto& [token, bias] : c.logit_bias) {
    if (std::isnan(bias) || bias == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(absl::StrCat("sampler logit_bias for token ", token, " = ", bias,
                                                     " must be finite or -inf (-inf bans the token)"));
    }
  }
  if (c.repetition_window < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sampler repetition_window = ", c.repetition_window,
                                                   " must be >= 0 (0 means off)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Sampler> Sampler::Create(const SamplerConfig& config) {
  absl::Status status = ValidateSamplerConfig(config);
  if (!status.ok()) return status;
  return Sampler(config);
}

Sampler::Sampler(const SamplerConfig& config) : config_(config), rng_(config.seed) {}

void Sampler::Logprobs(int32_t token, size_t n_top, TokenLogprobs* out) {
  const size_t n = logits_.size();
  float max_logit = kNegInf;
  for (float l : logits_) max_logit = std::max(max_logit, l);
  double sum = 0.0;
  for (float l : logits_) sum += std::exp(static_cast<double>(l) - max_logit);
  const double log_z = static_cast<double>(max_logit) + std::log(sum);
  auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(logits_[static_cast<size_t>(id)]) - log_z);
  };
  out->chosen = TokenLogprob{token, token >= 0 && static_cast<size_t>(token) < n ? logprob(token) : kNegInf};
  out->top.clear();
  n_top = std::min(n_top, n);
  if (n_top == 0) return;
  top_ids_.resize(n);
  for (size_t i = 0; i < n; ++i) top_ids_[i] = static_cast<int32_t>(i);
  std::partial_sort(top_ids_.begin(), top_ids_.begin() + static_cast<std::ptrdiff_t>(n_top), top_ids_.end(),
                    [this](int32_t a, int32_t b) {
                      const float la = logits_[static_cast<size_t>(a)], lb = logits_[static_cast<size_t>(b)];
                      return la > lb || (la == lb && a < b);
                    });
  for (size_t i = 0; i < n_top; ++i) out->top.push_back(TokenLogprob{top_ids_[i], logprob(top_ids_[i])});
}

void Sampler::Accept(int32_t token) {
  // The ring grows with the tokens accepted, up to the window: a window of 2^31 tokens (a
  // hostile saved state, an option) costs only what it holds (session_state_fuzzer found the
  // 8 GiB allocation the window's full size up front made).
  const size_t capacity = static_cast<size_t>(config_.repetition_window);
  if (capacity == 0) return;
  if (window_.size() < capacity) {
    window_.push_back(token);
    window_count_ = window_.size();
    window_head_ = window_.size() % capacity;
    return;
  }
  window_[window_head_] = token;
  window_head_ = (window_head_ + 1) % capacity;
}

std::string Sampler::RngState() const {
  std::ostringstream os;
  os.imbue(std::locale::classic());
  os << rng_;
  return os.str();
}

std::vector<int32_t> Sampler::Window() const {
  std::vector<int32_t> out;
  out.reserve(window_count_);
  const size_t start = (window_head_ + window_.size() - window_count_) % (window_.empty() ? 1 : window_.size());
  for (size_t i = 0; i < window_count_; ++i) out.push_back(window_[(start + i) % window_.size()]);
  return out;
}

absl::Status Sampler::Restore(const std::string& rng_state, absl::Span<const int32_t> window) {
  if (window.size() > static_cast<size_t>(config_.repetition_window)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sampler state: %u window tokens, more than the repetition window of %u", window.size(),
        config_.repetition_window));
  }
  std::mt19937_64 rng;
  std::istringstream is(rng_state);
  is.imbue(std::locale::classic());
  is >> rng;
  if (is.fail()) {
    return absl::InvalidArgumentError("sampler state: the RNG state is not a std::mt19937_64 state");
  }
  rng_ = rng;
  window_.clear();
  window_head_ = 0;
  window_count_ = 0;
  for (int32_t t : window) Accept(t);
  return absl::OkStatus();
}

void Sampler::Reset() {
  window_.clear();
  window_head_ = 0;
  window_count_ = 0;
  rng_.seed(config_.seed);
}

double Sampler::NextUniform() {
  // 53 bits fill a double's mantissa exactly, so every value is k * 2^-53 with k < 2^53: in [0, 1).
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

void Sampler::PrepareLogits(absl::Span<const float> logits) {
  const size_t n = logits.size();
  logits_.resize(n);
  bool any_pos_inf = false;
  for (size_t i = 0; i < n; ++i) {
    const float v = logits[i];
    if (std::isnan(v)) {
      logits_[i] = kNegInf;
    } else {
      logits_[i] = v;
      any_pos_inf |= (v == std::numeric_limits<float>::infinity());
    }
  }

  for (const auto& [token, bias] : config_.logit_bias) {
    if (token < 0 || static_cast<size_t>(token) >= n) continue;
    float& l = logits_[static_cast<size_t>(token)];
    l = bias == kNegInf ? kNegInf : l + bias;  // a ban holds even against a +inf logit
  }
  if (!config_.logit_bias.empty()) {  // a bias may have made or banned a +inf logit
    any_pos_inf = std::any_of(logits_.begin(), logits_.end(),
                              [](float l) { return l == std::numeric_limits<float>::infinity(); });
  }

  if (window_count_ > 0 && config_.repetition_penalty != 1.0f) {
    // The window holds the last window_count_ entries; order does not matter here.
    distinct_.clear();
    for (size_t i = 0; i < window_count_; ++i) distinct_.push_back(window_[i]);
    std::sort(distinct_.begin(), distinct_.end());
    distinct_.erase(std::unique(distinct_.begin(), distinct_.end()), distinct_.end());
    const float penalty = config_.repetition_penalty;
    for (int32_t t : distinct_) {
      if (t < 0 || static_cast<size_t>(t) >= n) continue;
      float& l = logits_[static_cast<size_t>(t)];
      l = l > 0.0f ? l / penalty : l * penalty;
    }
  }

  if (any_pos_inf) {
    // +inf would turn every softmax into NaN; the only sensible reading is "these tokens are certain".
    for (float& l : logits_) l = (l == std::numeric_limits<float>::infinity()) ? 0.0f : kNegInf;
  }
}

absl::StatusOr<int32_t> Sampler::Filter(absl::Span<const float> logits) {
  if (logits.empty()) {
    return absl::InvalidArgumentError("sampler: logits are empty");
  }
  if (logits.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: ", logits.size(), " logits exceed the int32 token id range"));
  }
  PrepareLogits(logits);
  const size_t n = logits_.size();

  if (config_.temperature == 0.0f) {
    int32_t best = -1;
    float best_value = kNegInf;
    for (size_t i = 0; i < n; ++i) {
      if (logits_[i] > best_value) {  // strict: ties keep the lowest id
        best_value = logits_[i];
        best = static_cast<int32_t>(i);
      }
    }
    if (best < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampler: all ", n, " logits are -inf or NaN"));
    }
    return best;
  }

  if (cand_.capacity() < n) cand_.reserve(n);
  if (weights_.capacity() < n) weights_.reserve(n);
  cand_.clear();
  for (size_t i = 0; i < n; ++i) {
    if (logits_[i] > kNegInf) cand_.push_back(static_cast<int32_t>(i));
  }
  if (cand_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sampler: all ", n, " logits are -inf or NaN"));
  }
  sorted_ = 0;

  ApplyTopK();
  ApplyTopP();
  ApplyMinP();
  return -1;
}

absl::StatusOr<int32_t> Sampler::Sample(absl::Span<const float> logits) {
  absl::StatusOr<int32_t> greedy = Filter(logits);
  if (!greedy.ok() || *greedy >= 0) return greedy;
  return Draw();
}

void Sampler::Weights(double* total) {
  double max_logit = kNegInfD;
  for (int32_t c : cand_) max_logit = std::max(max_logit, static_cast<double>(logits_[c]));
  const double temperature = static_cast<double>(config_.temperature);
  weights_.clear();
  *total = 0.0;
  for (int32_t c : cand_) {
    const double w = std::exp((static_cast<double>(logits_[c]) - max_logit) / temperature);
    weights_.push_back(w);
    *total += w;
  }
}

absl::Status Sampler::Distribution(absl::Span<const float> logits, std::vector<int32_t>* ids,
                                   std::vector<double>* probs) {
  ids->clear();
  probs->clear();
  absl::StatusOr<int32_t> greedy = Filter(logits);
  if (!greedy.ok()) return greedy.status();
  if (*greedy >= 0) {
    ids->push_back(*greedy);
    probs->push_back(1.0);
    return absl::OkStatus();
  }
  double total = 0.0;
  Weights(&total);
  ids->assign(cand_.begin(), cand_.end());
  probs->assign(weights_.begin(), weights_.end());
  for (double& p : *probs) p /= total;
  return absl::OkStatus();
}

void Sampler::EnsureSortedPrefix(size_t m) {
  m = std::min(m, cand_.size());
  if (m <= sorted_) return;
  // A strict total order (logit desc, then id asc), so the result does not depend on the standard
  // library's nth_element/sort internals. Candidate logits are never NaN.
  const float* l = logits_.data();
  auto better = [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
  auto first = cand_.begin() + static_cast<std::ptrdiff_t>(sorted_);
  auto mid = cand_.begin() + static_cast<std::ptrdiff_t>(m);
  if (mid != cand_.end()) std::nth_element(first, mid, cand_.end(), better);
  std::sort(first, mid, better);
  sorted_ = m;
}

void Sampler::ApplyTopK() {
  const size_t k = static_cast<size_t>(config_.top_k);
  if (k == 0 || k >= cand_.size()) return;
  EnsureSortedPrefix(k);
  cand_.resize(k);
}

void Sampler::ApplyTopP() {
  const size_t n = cand_.size();
  if (config_.top_p >= 1.0f || n <= 1) return;
  double max_logit = kNegInfD;
  for (int32_t c : cand_) max_logit = std::max(max_logit, static_cast<double>(logits_[c]));
  double total = 0.0;
  for (int32_t c : cand_) total += std::exp(static_cast<double>(logits_[c]) - max_logit);
  // cumulative / total >= p, kept free of a division per step.
  const double target = static_cast<double>(config_.top_p) * total;

  double cumulative = 0.0;
  size_t i = 0;
  size_t m = std::min(n, std::max(sorted_, kTopPInitialPrefix));
  for (;;) {
    EnsureSortedPrefix(m);
    for (; i < m; ++i) {
      cumulative += std::exp(static_cast<double>(logits_[cand_[i]]) - max_logit);
      if (cumulative >= target) {
        cand_.resize(i + 1);
        sorted_ = i + 1;
        return;
      }
    }
    if (m == n) return;  // rounding kept the sum just under the target: keep everything
    m = std::min(n, 2 * m);
  }
}

void Sampler::ApplyMinP() {
  if (config_.min_p <= 0.0f || cand_.size() <= 1) return;
  double max_logit = kNegInfD;
  for (int32_t c : cand_) max_logit = std::max(max_logit, static_cast<double>(logits_[c]));
  // prob_i >= min_p * prob_max  <=>  logit_i - logit_max >= log(min_p)  (as llama.cpp does it).
  const double threshold = std::log(static_cast<double>(config_.min_p));
  size_t kept = 0;
  size_t kept_sorted = 0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    const int32_t c = cand_[i];
    if (static_cast<double>(logits_[c]) - max_logit >= threshold) {
      cand_[kept++] = c;
      if (i < sorted_) ++kept_sorted;
    }
  }
  cand_.resize(kept);  // shrinking: never allocates
  sorted_ = kept_sorted;
}

int32_t Sampler::Draw() {
  double total = 0.0;
  Weights(&total);
  const double u = NextUniform() * total;
  double cumulative = 0.0;
  size_t last_positive = 0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    if (weights_[i] <= 0.0) continue;
    cumulative += weights_[i];
    last_positive = i;
    if (u < cumulative) return cand_[i];
  }
  // Only reachable through rounding (u is strictly below total); the max logit has weight 1, so
  // some weight is positive.
  return cand_[last_positive];
}

}  // namespace kestrel::runtime
