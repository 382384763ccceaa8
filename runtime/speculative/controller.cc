#include "runtime/speculative/controller.h"

#include <algorithm>
#include <cmath>

namespace kestrel {
namespace runtime {
namespace {
constexpr double kEma = 0.1;       // weight of a new step-time sample
constexpr double kDecay = 0.97;    // acceptance counts forget old text
constexpr uint32_t kMaxBackoff = 64;
constexpr uint32_t kWarmup = 4;    // proposals a method gets before its measurements rule
}  // namespace

Controller::Controller(std::vector<SpecMethod> methods, uint32_t max_draft, bool adaptive)
    : methods_(std::move(methods)), max_draft_(std::max<uint32_t>(max_draft, 1)), adaptive_(adaptive),
      step_ms_(max_draft_ * 4 + 2, 0.0) {}

double Controller::StepMs(uint32_t n) const {
  if (n < step_ms_.size() && step_ms_[n] > 0) return step_ms_[n];
  // Interpolate between the nearest known sizes; unknown above: grow with the last known slope,
  // and with no data at all assume a step over n tokens costs a little more than one.
  int lo = -1, hi = -1;
  for (int i = std::min<int>(n, static_cast<int>(step_ms_.size()) - 1); i >= 1; --i) {
    if (step_ms_[i] > 0) { lo = i; break; }
  }
  for (size_t i = n + 1; i < step_ms_.size(); ++i) {
    if (step_ms_[i] > 0) { hi = static_cast<int>(i); break; }
  }
  if (lo > 0 && hi > 0) {
    const double f = static_cast<double>(n - lo) / (hi - lo);
    return step_ms_[lo] + f * (step_ms_[hi] - step_ms_[lo]);
  }
  const double base = lo > 0 ? step_ms_[lo] : (hi > 0 ? step_ms_[hi] : 1.0);
  const int from = lo > 0 ? lo : (hi > 0 ? hi : 1);
  return base * (1.0 + 0.05 * (static_cast<double>(n) - from));
}

double Controller::Acceptance(SpecMethod m) const {
  const MethodStats& s = stats_[static_cast<uint32_t>(m)];
  const double prior_a = 1.0, prior_s = 1.0;  // optimistic 0.5 until measured
  return (s.accepted + prior_a) / (s.accepted + s.stops + prior_a + prior_s);
}

double Controller::ExpectedRate(SpecMethod m, uint32_t k) const {
  const MethodStats& s = stats_[static_cast<uint32_t>(m)];
  const double a = Acceptance(m);
  double e = 0, ak = 1;
  for (uint32_t i = 0; i <= k; ++i) {
    e += ak;
    ak *= a;
  }
  // A proposer that often finds nothing runs plain steps then: mix the two.
  const double hit = 1.0 - s.empty_rate;
  const uint32_t nodes = static_cast<uint32_t>(std::lround(k * s.nodes_per_k));
  const double t_spec = StepMs(1 + std::max(nodes, k)) + s.propose_ms;
  const double t_plain = StepMs(1) + s.propose_ms;
  return (hit * e + (1 - hit)) / (hit * t_spec + (1 - hit) * t_plain);
}

ControllerChoice Controller::Choose() {
  ++step_;
  if (methods_.empty()) return {};
  if (!adaptive_) return {methods_.front(), max_draft_};
  // Untried methods first (each gets a few tries at a mid size).
  for (SpecMethod m : methods_) {
    if (stats_[static_cast<uint32_t>(m)].tries < kWarmup) {
      return {m, std::max<uint32_t>(1, std::min<uint32_t>(max_draft_, 2))};
    }
  }
  const double plain = 1.0 / StepMs(1);
  ControllerChoice best;
  double best_rate = plain;
  for (SpecMethod m : methods_) {
    for (uint32_t k = 1; k <= max_draft_; ++k) {
      const double r = ExpectedRate(m, k);
      if (r > best_rate) {
        best_rate = r;
        best = {m, k};
      }
    }
  }
  if (best.method != SpecMethod::kOff) {
    probing_ = false;
    backoff_ = 4;
    return best;
  }
  // Off: probe the most promising method with one token now and then.
  if (step_ >= next_probe_) {
    if (probing_) backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    probing_ = true;
    next_probe_ = step_ + backoff_;
    SpecMethod pick = methods_.front();
    for (SpecMethod m : methods_) {
      if (ExpectedRate(m, 1) > ExpectedRate(pick, 1)) pick = m;
    }
    return {pick, 1};
  }
  return {};
}

void Controller::RecordStep(uint32_t n, double ms) {
  if (n >= step_ms_.size()) step_ms_.resize(n + 1, 0.0);
  double& e = step_ms_[n];
  e = e > 0 ? (1 - kEma) * e + kEma * ms : ms;
}

void Controller::RecordProposal(SpecMethod m, double ms, uint32_t k, uint32_t nodes) {
  MethodStats& s = stats_[static_cast<uint32_t>(m)];
  const bool proposed = nodes > 0;
  if (proposed && k > 0) {
    const double r = static_cast<double>(nodes) / k;
    s.nodes_per_k = s.tries == 0 ? r : (1 - kEma) * s.nodes_per_k + kEma * r;
  }
  ++s.tries;
  s.propose_ms = s.tries == 1 ? ms : (1 - kEma) * s.propose_ms + kEma * ms;
  s.empty_rate = (1 - kEma) * s.empty_rate + kEma * (proposed ? 0.0 : 1.0);
}

void Controller::RecordAcceptance(SpecMethod m, uint32_t depth, uint32_t accepted) {
  MethodStats& s = stats_[static_cast<uint32_t>(m)];
  s.accepted = s.accepted * kDecay + accepted;
  s.stops = s.stops * kDecay + (accepted < depth ? 1.0 : 0.0);
}

}  // namespace runtime
}  // namespace kestrel
