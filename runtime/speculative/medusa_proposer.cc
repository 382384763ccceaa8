#include "runtime/speculative/medusa_proposer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/speculative/heads_file.h"

namespace kestrel {
namespace runtime {

absl::StatusOr<std::unique_ptr<MedusaHeads>> LoadMedusaHeads(const std::string& path,
                                                             const Model& target) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = OpenHeadsFile(path, "medusa");
  if (!f.ok()) return f.status();
  auto h = std::make_unique<MedusaHeads>();
  const GgufFile& file = **f;
  for (auto [key, dst] : {std::make_pair("medusa.n_heads", &h->n_heads),
                          std::make_pair("medusa.n_embd", &h->n_embd),
                          std::make_pair("medusa.n_vocab", &h->n_vocab)}) {
    if (auto s = ReadHeadsU32(file, path, key, dst); !s.ok()) return s;
  }
  if (auto s = CheckHeadsFitModel(path, h->n_embd, h->n_vocab, target); !s.ok()) return s;
  if (h->n_heads == 0 || h->n_heads > 16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heads file '%s': medusa.n_heads = %u is outside [1, 16]", path, h->n_heads));
  }
  const uint64_t D = h->n_embd;
  h->weight.resize(h->n_heads);
  h->bias.resize(h->n_heads);
  for (uint32_t k = 0; k < h->n_heads; ++k) {
    if (auto s = ReadHeadsF32(file, path, absl::StrCat("medusa.", k, ".weight"), {D, D}, &h->weight[k]); !s.ok()) return s;
    if (auto s = ReadHeadsF32(file, path, absl::StrCat("medusa.", k, ".bias"), {D}, &h->bias[k]); !s.ok()) return s;
  }
  absl::StatusOr<std::vector<float>> out = TargetMatrixF32(target, {"output.weight", "token_embd.weight"}, "medusa");
  if (!out.ok()) return out.status();
  h->output = std::move(*out);
  return h;
}

void MedusaProposer::HeadLogits(uint32_t k, const float* h, std::vector<float>* logits) const {
  const MedusaHeads& m = *heads_;
  const uint32_t D = m.n_embd;
  std::vector<float>& hk = const_cast<std::vector<float>&>(hk_);
  hk.resize(D);
  const float* W = m.weight[k].data();
  for (uint32_t o = 0; o < D; ++o) {
    double acc = m.bias[k][o];
    for (uint32_t i = 0; i < D; ++i) acc += static_cast<double>(W[o * D + i]) * h[i];
    const double silu = acc / (1.0 + std::exp(-acc));
    hk[o] = static_cast<float>(h[o] + silu);
  }
  logits->resize(m.n_vocab);
  // Eight independent partial sums: the compiler vectorises them (one sequential sum cannot be
  // reordered), and this product over the whole vocab is most of a proposal's cost.
  constexpr uint32_t kLanes = 8;
  for (uint32_t v = 0; v < m.n_vocab; ++v) {
    const float* row = m.output.data() + uint64_t{v} * D;
    float part[kLanes] = {};
    uint32_t i = 0;
    for (; i + kLanes <= D; i += kLanes) {
      for (uint32_t l = 0; l < kLanes; ++l) part[l] += row[i + l] * hk[i + l];
    }
    float acc = 0;
    for (; i < D; ++i) acc += row[i] * hk[i];
    for (uint32_t l = 0; l < kLanes; ++l) acc += part[l];
    (*logits)[v] = acc;
  }
}

absl::Status MedusaProposer::Propose(const ProposeRequest& req, DraftTree* out) {
  const MedusaHeads& m = *heads_;
  if (req.hidden.size() != m.n_embd || req.max_nodes == 0 || req.max_depth == 0) {
    return absl::OkStatus();  // no hidden state yet: a plain step
  }
  // Tree widths per depth: 3, 2, then chains, within the budget.
  static constexpr uint32_t kWidths[] = {3, 2, 1, 1, 1, 1, 1, 1};
  const uint32_t depth = std::min<uint32_t>({m.n_heads, req.max_depth, 8});
  std::vector<int32_t> frontier = {-1};
  for (uint32_t k = 0; k < depth && out->size() < req.max_nodes; ++k) {
    HeadLogits(k, req.hidden.data(), &logits_);
    const uint32_t w = req.chains_only ? 1 : kWidths[k];
    std::vector<int32_t> order(logits_.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + w, order.end(),
                      [&](int32_t a, int32_t b) { return logits_[a] > logits_[b]; });
    std::vector<int32_t> next;
    for (int32_t parent : frontier) {
      for (uint32_t i = 0; i < w && out->size() < req.max_nodes; ++i) {
        next.push_back(out->Add(parent, order[i]));
      }
    }
    frontier = std::move(next);
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
