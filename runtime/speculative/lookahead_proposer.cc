#include "runtime/speculative/lookahead_proposer.h"

#include <algorithm>

namespace kestrel {
namespace runtime {
namespace {
constexpr size_t kMaxPerKey = 8;  // newest continuations kept per first token
}  // namespace

void LookaheadProposer::Reset() {
  root_pos_ = -1;
  guess_.clear();
  levels_.clear();
  window_nodes_.clear();
  pool_.clear();
}

size_t LookaheadProposer::pool_size() const {
  size_t n = 0;
  for (const auto& [k, v] : pool_) n += v.size();
  return n;
}

void LookaheadProposer::AddNgram(const std::vector<int32_t>& gram) {
  std::vector<std::vector<int32_t>>& rests = pool_[gram[0]];
  std::vector<int32_t> rest(gram.begin() + 1, gram.end());
  auto it = std::find(rests.begin(), rests.end(), rest);
  if (it != rests.end()) rests.erase(it);
  rests.insert(rests.begin(), std::move(rest));  // newest first
  if (rests.size() > kMaxPerKey) rests.pop_back();
}

absl::Status LookaheadProposer::Propose(const ProposeRequest& req, DraftTree* out) {
  const absl::Span<const int32_t> h = req.history;
  if (h.empty() || req.max_nodes == 0 || req.max_depth == 0) return absl::OkStatus();
  const int64_t root = static_cast<int64_t>(h.size()) - 1;
  if (root < root_pos_) Reset();  // the sequence went back: the trajectories are stale
  root_pos_ = root;
  // Guesses before the root are settled history now.
  guess_.erase(guess_.begin(), guess_.lower_bound(root + 1));
  const uint32_t w = std::min({W_, req.max_depth, req.max_nodes});
  // Positions without a guess start from earlier history tokens (the paper seeds from the prompt).
  for (uint32_t i = 1; i <= w; ++i) {
    if (guess_.count(root + i)) continue;
    const int64_t src = root - static_cast<int64_t>(w) + i - 1;
    guess_[root + i] = h[static_cast<size_t>(std::max<int64_t>(src, 0))];
  }
  // Verification branches first (they are what usually gets accepted), then the window.
  const uint32_t budget_for_pool = req.max_nodes > w ? req.max_nodes - w : 0;
  auto it = pool_.find(h.back());
  window_nodes_.clear();
  if (req.chains_only && it != pool_.end() && !it->second.empty()) {
    // One chain only: the newest pool n-gram (the window waits for a step without one).
    const std::vector<int32_t>& rest = it->second.front();
    out->AddChain(-1, rest.data(), std::min<size_t>(rest.size(), req.max_depth), req.max_nodes);
    return absl::OkStatus();
  }
  if (it != pool_.end()) {
    uint32_t used = 0;
    for (const std::vector<int32_t>& rest : it->second) {
      if (used >= G_) break;
      const size_t len = std::min<size_t>(rest.size(), req.max_depth);
      const size_t before = out->size();
      out->AddChain(-1, rest.data(), len, budget_for_pool);
      if (out->size() > before) ++used;
    }
  }
  int32_t parent = -1;
  for (uint32_t i = 1; i <= w && out->size() < req.max_nodes + 0u; ++i) {
    parent = out->Add(parent, guess_[root + i]);
    window_nodes_.push_back(parent);
  }
  return absl::OkStatus();
}

void LookaheadProposer::Observe(const VerifyFeedback& fb) {
  if (window_nodes_.empty() || fb.tree == nullptr || fb.root_argmax < 0) return;
  // This iteration's window and the target's outputs after each window node.
  std::map<int64_t, int32_t> window;
  std::map<int64_t, int32_t> output;  // position -> the target's token there given the window
  output[root_pos_ + 1] = fb.root_argmax;
  for (size_t i = 0; i < window_nodes_.size(); ++i) {
    // The tree may have been cut (chains only): use the window as far as it survived.
    if (static_cast<size_t>(window_nodes_[i]) >= fb.tree->size()) break;
    const int64_t pos = root_pos_ + 1 + static_cast<int64_t>(i);
    window[pos] = fb.tree->tokens[window_nodes_[i]];
    output[pos + 1] = fb.node_argmax[window_nodes_[i]];
  }
  // n-grams along the diagonals: levels_[k] is the window k + 1 iterations back.
  if (N_ >= 2 && levels_.size() + 1 >= N_ - 1) {
    for (const auto& [pos, tok] : output) {
      std::vector<int32_t> gram(N_);
      bool ok = true;
      gram[N_ - 1] = tok;
      // gram[N-2] from this window at pos-1, gram[N-3] from one iteration back at pos-2, ...
      for (uint32_t j = 0; j + 1 < N_ && ok; ++j) {
        const int64_t p = pos - 1 - j;
        const std::map<int64_t, int32_t>& lv = j == 0 ? window : levels_[j - 1];
        auto f = lv.find(p);
        ok = f != lv.end();
        if (ok) gram[N_ - 2 - j] = f->second;
      }
      if (ok) AddNgram(gram);
    }
  }
  levels_.push_front(window);
  while (levels_.size() > std::max<uint32_t>(N_, 2) - 2) levels_.pop_back();
  // Jacobi update: each position takes the target's output given the guesses before it.
  for (const auto& [pos, tok] : output) guess_[pos] = tok;
}

}  // namespace runtime
}  // namespace kestrel
