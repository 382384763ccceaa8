#include "runtime/speculative/eagle_proposer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "runtime/speculative/heads_file.h"

namespace kestrel {
namespace runtime {
namespace {

// y[o] = sum_i W[o * n_in + i] x[i] (+ b[o]).
void MatVec(const std::vector<float>& W, const float* x, size_t n_out, size_t n_in, float* y,
            const float* b = nullptr) {
  // Eight independent partial sums: the compiler vectorises them (one sequential sum cannot be
  // reordered).
  constexpr size_t kLanes = 8;
  for (size_t o = 0; o < n_out; ++o) {
    const float* row = W.data() + o * n_in;
    float part[kLanes] = {};
    size_t i = 0;
    for (; i + kLanes <= n_in; i += kLanes) {
      for (size_t l = 0; l < kLanes; ++l) part[l] += row[i + l] * x[i + l];
    }
    float acc = b != nullptr ? b[o] : 0.0f;
    for (; i < n_in; ++i) acc += row[i] * x[i];
    for (size_t l = 0; l < kLanes; ++l) acc += part[l];
    y[o] = acc;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<EagleHead>> LoadEagleHead(const std::string& path, const Model& target,
                                                          uint32_t draft_vocab) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = OpenHeadsFile(path, "eagle");
  if (!f.ok()) return f.status();
  const GgufFile& file = **f;
  auto h = std::make_unique<EagleHead>();
  for (auto [key, dst] : {std::make_pair("eagle.n_embd", &h->n_embd), std::make_pair("eagle.n_vocab", &h->n_vocab),
                          std::make_pair("eagle.n_head", &h->n_head), std::make_pair("eagle.n_ff", &h->n_ff),
                          std::make_pair("eagle.window", &h->window)}) {
    if (auto s = ReadHeadsU32(file, path, key, dst); !s.ok()) return s;
  }
  if (auto s = CheckHeadsFitModel(path, h->n_embd, h->n_vocab, target); !s.ok()) return s;
  if (h->n_head == 0 || h->n_embd % h->n_head != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heads file '%s': eagle.n_head = %u does not divide eagle.n_embd = %u", path, h->n_head, h->n_embd));
  }
  if (h->n_ff == 0 || h->n_ff > 16 * h->n_embd) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heads file '%s': eagle.n_ff = %u is outside [1, 16 * n_embd]", path, h->n_ff));
  }
  if (h->window == 0 || h->window > 4096) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heads file '%s': eagle.window = %u is outside [1, 4096]", path, h->window));
  }
  const uint64_t D = h->n_embd, F = h->n_ff;
  const struct {
    const char* name;
    std::vector<uint64_t> dims;
    std::vector<float>* dst;
  } tensors[] = {
      {"eagle.fc.weight", {2 * D, D}, &h->fc},        {"eagle.fc.bias", {D}, &h->fc_b},
      {"eagle.attn_q.weight", {D, D}, &h->wq},        {"eagle.attn_k.weight", {D, D}, &h->wk},
      {"eagle.attn_v.weight", {D, D}, &h->wv},        {"eagle.attn_output.weight", {D, D}, &h->wo},
      {"eagle.ffn_up.weight", {D, F}, &h->up},        {"eagle.ffn_down.weight", {F, D}, &h->down},
  };
  for (const auto& t : tensors) {
    if (auto s = ReadHeadsF32(file, path, t.name, t.dims, t.dst); !s.ok()) return s;
  }
  absl::StatusOr<std::vector<float>> embd = TargetMatrixF32(target, {"token_embd.weight"}, "eagle");
  if (!embd.ok()) return embd.status();
  absl::StatusOr<std::unique_ptr<DraftVocabHead>> vocab =
      DraftVocabHead::Create(target, draft_vocab, {"output.weight", "token_embd.weight"}, "eagle");
  if (!vocab.ok()) return vocab.status();
  h->embd = std::move(*embd);
  h->vocab = std::move(*vocab);
  return h;
}

void EagleProposer::Reset() {
  window_.clear();
  next_pos_ = -1;
  last_f_hat_.clear();
}

void EagleProposer::Step(int64_t pos, int32_t token, const float* feature, std::vector<float>* f_hat) {
  const EagleHead& m = *head_;
  const size_t D = m.n_embd, F = m.n_ff, H = m.n_head, dh = D / H;
  in_.resize(2 * D);
  std::copy_n(m.embd.data() + static_cast<size_t>(token) * D, D, in_.data());
  std::copy_n(feature, D, in_.data() + D);
  u_.resize(D);
  MatVec(m.fc, in_.data(), D, 2 * D, u_.data(), m.fc_b.data());
  Entry e;
  e.pos = pos;
  e.token = token;
  e.k.resize(D);
  e.v.resize(D);
  q_.resize(D);
  MatVec(m.wq, u_.data(), D, D, q_.data());
  MatVec(m.wk, u_.data(), D, D, e.k.data());
  MatVec(m.wv, u_.data(), D, D, e.v.data());
  window_.push_back(std::move(e));
  // Causal attention over the last `window` entries (this one included).
  const size_t first = window_.size() > m.window ? window_.size() - m.window : 0;
  const size_t n = window_.size() - first;
  att_.assign(D, 0.0f);
  scores_.resize(n);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  for (size_t hd = 0; hd < H; ++hd) {
    const size_t o = hd * dh;
    float mx = -INFINITY;
    for (size_t j = 0; j < n; ++j) {
      const std::vector<float>& k = window_[first + j].k;
      float s = 0;
      for (size_t i = 0; i < dh; ++i) s += q_[o + i] * k[o + i];
      scores_[j] = s * scale;
      mx = std::max(mx, scores_[j]);
    }
    float sum = 0;
    for (size_t j = 0; j < n; ++j) sum += scores_[j] = std::exp(scores_[j] - mx);
    for (size_t j = 0; j < n; ++j) {
      const std::vector<float>& v = window_[first + j].v;
      const float w = scores_[j] / sum;
      for (size_t i = 0; i < dh; ++i) att_[o + i] += w * v[o + i];
    }
  }
  h_.resize(D);
  MatVec(m.wo, att_.data(), D, D, h_.data());
  for (size_t i = 0; i < D; ++i) h_[i] += u_[i];
  ff_.resize(F);
  MatVec(m.up, h_.data(), F, D, ff_.data());
  for (float& x : ff_) x = x / (1.0f + std::exp(-x));
  f_hat->resize(D);
  MatVec(m.down, ff_.data(), D, F, f_hat->data());
  for (size_t i = 0; i < D; ++i) (*f_hat)[i] += h_[i];
}

absl::Status EagleProposer::Logits(const float* f_hat) { return head_->vocab->Logits(f_hat, 1, &logits_); }

absl::Status EagleProposer::Propose(const ProposeRequest& req, DraftTree* out) {
  const EagleHead& m = *head_;
  const absl::Span<const int32_t> h = req.history;
  if (req.hidden.size() != m.n_embd || h.size() < 2 || req.max_nodes == 0 || req.max_depth == 0) {
    return absl::OkStatus();  // no hidden state yet: a plain step
  }
  const int64_t pend = static_cast<int64_t>(h.size()) - 1;
  for (int32_t t : h.subspan(h.size() - 2)) {
    if (t < 0 || static_cast<uint32_t>(t) >= m.n_vocab) return absl::OkStatus();
  }
  // The sequence went back or changed under the window: start over from here.
  if (next_pos_ > pend || (!window_.empty() && (window_.back().pos >= pend ||
                                                h[static_cast<size_t>(window_.back().pos)] != window_.back().token))) {
    Reset();
  }
  if (next_pos_ < 0) next_pos_ = pend;
  // Commit the positions emitted since the last proposal. The feature before each is the head's
  // own f^ there, except before the pending token, where the target's true one is known.
  for (int64_t p = next_pos_; p <= pend; ++p) {
    const int32_t tok = h[static_cast<size_t>(p)];
    if (tok < 0 || static_cast<uint32_t>(tok) >= m.n_vocab) {
      Reset();
      return absl::OkStatus();
    }
    const float* feature = p == pend ? req.hidden.data() : last_f_hat_.data();
    if (p != pend && last_f_hat_.size() != m.n_embd) feature = req.hidden.data();
    Step(p, tok, feature, &f_);
    last_f_hat_ = f_;
  }
  next_pos_ = pend + 1;
  while (window_.size() > m.window) window_.pop_front();
  // Draft: the argmax chain, each step feeding its f^ back with the drafted token.
  const size_t committed = window_.size();
  int32_t parent = -1, runner_up = -1;
  for (uint32_t d = 0; d < req.max_depth && out->size() < req.max_nodes; ++d) {
    if (auto s = Logits(f_.data()); !s.ok()) {
      window_.erase(window_.begin() + static_cast<std::ptrdiff_t>(committed), window_.end());
      return s;
    }
    const uint32_t K = m.vocab->size();
    int32_t best = 0;  // subset indices until added
    for (uint32_t v = 1; v < K; ++v) {
      if (logits_[v] > logits_[best]) best = static_cast<int32_t>(v);
    }
    if (d == 0) {
      for (uint32_t v = 0; v < K; ++v) {
        if (static_cast<int32_t>(v) != best && (runner_up < 0 || logits_[v] > logits_[runner_up])) {
          runner_up = static_cast<int32_t>(v);
        }
      }
      if (runner_up >= 0) runner_up = m.vocab->token(static_cast<uint32_t>(runner_up));
    }
    best = m.vocab->token(static_cast<uint32_t>(best));
    parent = out->Add(parent, best);
    if (d + 1 < req.max_depth) Step(pend + 1 + d, best, f_.data(), &f_);
  }
  window_.erase(window_.begin() + static_cast<std::ptrdiff_t>(committed), window_.end());
  if (!req.chains_only && runner_up >= 0 && out->size() < req.max_nodes) out->Add(-1, runner_up);
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
