#include "runtime/speculative/controller.h"

#include <algorithm>
#include <cmath>

namespace kestrel {
namespace runtime {
namespace {
constexpr double kEma = 0.2;         // weight of a new timing sample
constexpr double kDecay = 0.97;      // acceptance counts forget old text, per step
constexpr double kPriorSlope = 0.1;  // r(n) growth per token before any verify was measured
constexpr double kMinSlope = 0.01;   // a verify step never gets cheaper per extra token than this
constexpr double kMargin = 0.03;     // speculation must beat plain by this much (timing noise)
constexpr uint32_t kPlainFirst = 2;  // plain steps measured before anything speculative
constexpr uint32_t kWarmup = 2;      // non-empty proposals a method gets before its numbers rule
constexpr uint32_t kWarmupAsks = 32; // ... or proposals asked for (a method that rarely proposes)
constexpr uint32_t kProbeAsks = 8;   // asks a re-probe waits for a non-empty proposal
constexpr uint32_t kProbeNodes = 1;  // draft nodes of a warm-up or probe step
constexpr uint32_t kMinBackoff = 32;
constexpr uint32_t kMaxBackoff = 1024;

double Ema(double old, double sample, bool first) { return first ? sample : (1 - kEma) * old + kEma * sample; }
}  // namespace

Controller::Controller(std::vector<SpecMethod> methods, uint32_t max_draft, bool adaptive)
    : methods_(std::move(methods)), max_draft_(std::max<uint32_t>(max_draft, 1)), adaptive_(adaptive),
      ratio_(max_draft_ * 4 + 2, 0.0), backoff_(kMinBackoff) {}

double Controller::Ratio(uint32_t n) const {
  if (n <= 1) return 1.0;
  if (n < ratio_.size() && ratio_[n] > 0) return std::max(1.0, ratio_[n]);
  // Known neighbours; size 1 is the plain step (ratio 1 by definition).
  uint32_t lo = 1, hi = 0;
  for (uint32_t i = std::min<uint32_t>(n, static_cast<uint32_t>(ratio_.size()) - 1); i >= 2; --i) {
    if (ratio_[i] > 0) { lo = i; break; }
  }
  for (size_t i = n + 1; i < ratio_.size(); ++i) {
    if (ratio_[i] > 0) { hi = static_cast<uint32_t>(i); break; }
  }
  const double r_lo = lo == 1 ? 1.0 : ratio_[lo];
  double r;
  if (hi > 0) {
    r = r_lo + (ratio_[hi] - r_lo) * static_cast<double>(n - lo) / (hi - lo);
  } else {
    const double slope = lo == 1 ? kPriorSlope : std::max(kMinSlope, (r_lo - 1.0) / (lo - 1));
    r = r_lo + slope * (n - lo);
  }
  return std::max(1.0, r);
}

double Controller::StepMs(uint32_t n) const {
  return (plain_samples_ > 0 ? plain_ms_ : 1.0) * Ratio(n);
}

double Controller::Acceptance(SpecMethod m) const { return SlotAcceptance(static_cast<size_t>(m)); }

double Controller::SlotAcceptance(size_t slot) const {
  const MethodStats& s = stats_[slot];
  const double prior_a = 0.5, prior_s = 0.5;  // 0.5, weakly, until measured
  return (s.accepted + prior_a) / (s.accepted + s.stops + prior_a + prior_s);
}

double Controller::DepthAcceptance(size_t slot, uint32_t j) const {
  const MethodStats& s = stats_[slot];
  // Two rates: the first node's, and the deeper nodes' pooled (one per depth would be too few
  // observations, and a depth never drafted again would keep its first failure). The per-token
  // rate is their prior.
  const double pooled = SlotAcceptance(slot);
  const size_t lo = j <= 1 ? 1 : 2, hi = j <= 1 ? 2 : s.depth_acc.size();
  double acc = 0, stop = 0;
  for (size_t i = lo; i < hi && i < s.depth_acc.size(); ++i) {
    acc += s.depth_acc[i];
    stop += s.depth_stop[i];
  }
  const double w = j <= 1 ? 1.0 : 2.0;
  return (acc + w * pooled) / (acc + stop + w);
}

double Controller::ExpectedRate(size_t slot, uint32_t k) const {
  const MethodStats& s = stats_[slot];
  double e = 1, reach = 1;
  for (uint32_t j = 1; j <= k; ++j) {
    reach *= DepthAcceptance(slot, j);
    e += reach;
  }
  // An empty proposal makes the step a plain one: mix the two.
  const double hit = 1.0 - s.empty_rate;
  const uint32_t nodes = std::max(k, static_cast<uint32_t>(std::lround(k * s.nodes_per_k)));
  const double t = hit * StepMs(1 + nodes) + (1 - hit) * StepMs(1) + s.propose_ms;
  return (hit * e + (1 - hit)) / t;
}

uint32_t Controller::BestDraft(size_t slot, uint32_t max_k, double* rate) const {
  uint32_t best = 0;
  *rate = 0;
  for (uint32_t k = 1; k <= max_k; ++k) {
    const double r = ExpectedRate(slot, k);
    if (r > *rate) {
      *rate = r;
      best = k;
    }
  }
  return best;
}

ControllerChoice Controller::ChooseConfident(SpecMethod m, uint32_t depth) {
  if (!adaptive_ || plain_samples_ < kPlainFirst || depth == 0) return {};
  const size_t i = static_cast<size_t>(m);
  const MethodStats& s = stats_[kNumSpecMethods + i];
  const uint32_t full = std::min(depth, max_draft_);
  uint32_t k = 0;
  if (s.tries < kWarmup) {
    k = full;  // trusted before any data
  } else {
    double rate = 0;
    const uint32_t best = BestDraft(kNumSpecMethods + i, full, &rate);
    if (rate > (1 + kMargin) / StepMs(1)) {
      k = best;
      confident_backoff_[i] = 0;
    } else if (step_ >= confident_next_[i]) {
      // They stopped paying: try one at full depth again after a back-off that doubles.
      confident_backoff_[i] = std::min(std::max(confident_backoff_[i] * 2, kMinBackoff), kMaxBackoff);
      confident_next_[i] = step_ + confident_backoff_[i];
      k = full;
    } else {
      return {};
    }
  }
  ++step_;
  confident_ = true;
  last_probe_ = false;
  ControllerChoice c;
  c.method = m;
  c.draft = k;
  return c;
}

ControllerChoice Controller::Probe(SpecMethod m) {
  ControllerChoice c;
  c.method = m;
  c.draft = 1;
  c.max_nodes = kProbeNodes;
  c.probe = true;
  return c;
}

ControllerChoice Controller::Choose() {
  const ControllerChoice c = Decide();
  last_probe_ = c.probe;
  confident_ = false;
  return c;
}

ControllerChoice Controller::Decide() {
  ++step_;
  if (methods_.empty()) return {};
  if (!adaptive_) return {methods_.front(), max_draft_};
  if (plain_samples_ < kPlainFirst) return {};
  if (pending_probe_ != SpecMethod::kOff) return Probe(pending_probe_);
  for (SpecMethod m : methods_) {
    const MethodStats& s = stats_[static_cast<uint32_t>(m)];
    if (s.tries < kWarmup && s.asks < kWarmupAsks) return Probe(m);
  }
  const double plain = 1.0 / StepMs(1);
  ControllerChoice best;
  double best_rate = plain * (1 + kMargin);
  for (SpecMethod m : methods_) {
    // Off, only a method whose latest probe was accepted may turn speculation back on (the
    // prior alone must not: that would be probing every step).
    if (!on_ && !stats_[static_cast<uint32_t>(m)].last_ok) continue;
    double r = 0;
    const uint32_t k = BestDraft(static_cast<size_t>(m), max_draft_, &r);
    if (r > best_rate) {
      best_rate = r;
      best = {m, k, 0, false};
    }
  }
  on_ = best.method != SpecMethod::kOff;
  if (on_) {
    expected_speedup_ = best_rate / plain;
    backoff_ = kMinBackoff;
    next_probe_ = step_ + backoff_;
    return best;
  }
  expected_speedup_ = 1.0;
  // The warm-up has just measured every method: the first re-probe waits a back-off too.
  if (next_probe_ == 0) next_probe_ = step_ + backoff_;
  if (step_ < next_probe_) return {};
  // Off: re-probe one method, and wait twice as long before the next probe.
  pending_probe_ = methods_[probe_turn_++ % methods_.size()];
  pending_asks_ = 0;
  next_probe_ = step_ + backoff_;
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  return Probe(pending_probe_);
}

void Controller::RecordStep(uint32_t n, double ms) {
  if (n <= 1) {
    plain_ms_ = Ema(plain_ms_, ms, plain_samples_ == 0);
    ++plain_samples_;
    return;
  }
  last_verify_ = n;
  if (plain_samples_ == 0) return;  // nothing to compare with yet
  if (n >= ratio_.size()) ratio_.resize(n + 1, 0.0);
  ratio_[n] = Ema(ratio_[n], ms / plain_ms_, ratio_[n] <= 0);
}

void Controller::RecordProposal(SpecMethod m, double ms, uint32_t k, uint32_t nodes) {
  MethodStats& s = stats_[static_cast<uint32_t>(m) + (confident_ ? kNumSpecMethods : 0)];
  const bool proposed = nodes > 0;
  const bool probe = last_probe_;
  if (proposed && k > 0 && !(probe && s.tries > 0)) {
    // Probes are capped at kProbeNodes: only the first proposal seeds nodes_per_k from one.
    const double r = static_cast<double>(nodes) / k;
    s.nodes_per_k = Ema(s.nodes_per_k, r, s.tries == 0);
  }
  if (proposed && probe) ++probes_;
  s.propose_ms = Ema(s.propose_ms, ms, s.asks == 0);
  s.empty_rate = (1 - kEma) * s.empty_rate + kEma * (proposed ? 0.0 : 1.0);
  ++s.asks;
  if (proposed) ++s.tries;
  if (!confident_ && m == pending_probe_ && (proposed || ++pending_asks_ >= kProbeAsks)) {
    pending_probe_ = SpecMethod::kOff;
  }
}

void Controller::RecordAcceptance(SpecMethod m, uint32_t depth, uint32_t accepted) {
  MethodStats& s = stats_[static_cast<uint32_t>(m) + (confident_ ? kNumSpecMethods : 0)];
  // Evidence fades with the steps since the last record: after a long time off, a probe's own
  // result weighs most.
  const double f = std::pow(kDecay, static_cast<double>(step_ - s.last_step));
  s.last_step = step_;
  s.last_ok = accepted > 0;
  s.accepted = s.accepted * f + accepted;
  s.stops = s.stops * f + (accepted < depth ? 1.0 : 0.0);
  if (s.depth_acc.size() < depth + 1) {
    s.depth_acc.resize(depth + 1, 0.0);
    s.depth_stop.resize(depth + 1, 0.0);
  }
  for (size_t j = 1; j < s.depth_acc.size(); ++j) {
    s.depth_acc[j] *= f;
    s.depth_stop[j] *= f;
  }
  for (uint32_t j = 1; j <= std::min(depth, accepted + 1); ++j) {
    (j <= accepted ? s.depth_acc[j] : s.depth_stop[j]) += 1.0;
  }
}

ControllerReport Controller::Report() const {
  ControllerReport r;
  r.plain_step_ms = plain_ms_;
  r.verify_tokens = last_verify_;
  r.verify_ratio = last_verify_ > 1 && last_verify_ < ratio_.size() ? ratio_[last_verify_] : 0.0;
  r.expected_speedup = expected_speedup_;
  for (SpecMethod m : methods_) r.acceptance[static_cast<uint32_t>(m)] = Acceptance(m);
  r.probes = probes_;
  r.probe_interval = backoff_;
  return r;
}

}  // namespace runtime
}  // namespace kestrel
