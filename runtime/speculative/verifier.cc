#include "runtime/speculative/verifier.h"

#include <algorithm>
#include <atomic>

namespace kestrel {
namespace runtime {
namespace {

std::atomic<bool> g_skip_residual{false};

int32_t Argmax(const float* row, size_t n) {
  int32_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (row[i] > row[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

// Draws from the (unnormalised, non-negative) weights.
int32_t Draw(const std::vector<int32_t>& ids, const std::vector<double>& w, double u) {
  double total = 0;
  for (double x : w) total += x;
  double target = u * total, acc = 0;
  int32_t last = -1;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (w[i] <= 0) continue;
    acc += w[i];
    last = ids[i];
    if (target < acc) return ids[i];
  }
  return last;
}

}  // namespace

void Verifier::SetSkipResidualForTesting(bool skip) { g_skip_residual.store(skip); }

absl::Status Verifier::Verify(const DraftTree& tree, const float* rows, size_t V,
                              Sampler& sampler, uint32_t max_tokens,
                              const std::function<bool(int32_t)>& is_end, VerifyOutcome* out,
                              int32_t n_logprobs) {
  out->accepted.clear();
  out->tokens.clear();
  out->logprobs.clear();
  const size_t n = tree.size();
  out->node_argmax.clear();
  out->root_argmax = -1;
  if (argmax_ && n > 0) {
    out->node_argmax.resize(n);
    for (size_t i = 0; i < n; ++i) out->node_argmax[i] = Argmax(rows + (i + 1) * V, V);
    out->root_argmax = Argmax(rows, V);
  }
  children_.assign(n + 1, {});  // children_[0]: the root's; children_[1 + i]: node i's
  for (size_t i = 0; i < n; ++i) children_[tree.parents[i] + 1].push_back(static_cast<int32_t>(i));
  const bool greedy = sampler.config().temperature == 0.0f;
  const bool skip_residual = g_skip_residual.load();
  int32_t cur = -1;  // the root
  while (out->tokens.size() < max_tokens) {
    const float* row = rows + static_cast<size_t>(cur + 1) * V;
    const std::vector<int32_t>& kids = children_[cur + 1];
    int32_t token = -1, next = -1;
    if (greedy || kids.empty()) {
      // Greedy, or nothing to verify here (a plain step, a bonus token): the sampler's own draw.
      absl::StatusOr<int32_t> t = sampler.Sample(absl::MakeConstSpan(row, V));
      if (!t.ok()) return t.status();
      token = *t;
      for (int32_t k : kids) {
        if (tree.tokens[k] == token) next = k;
      }
    } else {
      if (auto s = sampler.Distribution(absl::MakeConstSpan(row, V), &ids_, &probs_); !s.ok()) return s;
      const std::vector<double> p0 = probs_;
      for (int32_t k : kids) {
        const int32_t x = tree.tokens[k];
        const bool has_q = static_cast<size_t>(k) < tree.q.size() && !tree.q[k].empty();
        double px = 0;
        for (size_t j = 0; j < ids_.size(); ++j) {
          if (ids_[j] == x) px = probs_[j];
        }
        double total = 0;
        for (double w : probs_) total += w;
        px /= total;
        const double qx = has_q ? tree.q[k][x] : 1.0;
        const double u = sampler.Uniform();
        if (qx > 0 && u < std::min(1.0, px / qx)) {
          token = x;
          next = k;
          break;
        }
        // Rejected: the residual norm(max(0, p - q)) (unnormalised here).
        for (size_t j = 0; j < ids_.size(); ++j) {
          const double qj = has_q ? tree.q[k][ids_[j]] : (ids_[j] == x ? 1.0 : 0.0);
          probs_[j] = std::max(0.0, probs_[j] / total - qj);
        }
      }
      if (next < 0) {
        const std::vector<double>& from = skip_residual ? p0 : probs_;
        token = Draw(ids_, from, sampler.Uniform());
        if (token < 0) token = Draw(ids_, p0, sampler.Uniform());  // residual vanished by rounding
      }
    }
    if (n_logprobs >= 0) {
      // The sampler's prepared row is still this node's (Sample and Distribution prepare it).
      out->logprobs.emplace_back();
      sampler.Logprobs(token, static_cast<size_t>(n_logprobs), &out->logprobs.back());
    }
    sampler.Accept(token);
    out->tokens.push_back(token);
    if (next < 0 || is_end(token)) break;
    out->accepted.push_back(next);
    cur = next;
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
