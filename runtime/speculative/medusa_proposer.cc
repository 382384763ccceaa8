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
                                                             const Model& target,
                                                             uint32_t draft_vocab) {
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
  absl::StatusOr<std::unique_ptr<DraftVocabHead>> vocab =
      DraftVocabHead::Create(target, draft_vocab, {"output.weight", "token_embd.weight"}, "medusa");
  if (!vocab.ok()) return vocab.status();
  h->vocab = std::move(*vocab);
  return h;
}

void MedusaProposer::HeadState(uint32_t k, const float* h, float* hk) const {
  const MedusaHeads& m = *heads_;
  const uint32_t D = m.n_embd;
  const float* W = m.weight[k].data();
  for (uint32_t o = 0; o < D; ++o) {
    const float* row = W + uint64_t{o} * D;
    float acc = m.bias[k][o];
    for (uint32_t i = 0; i < D; ++i) acc += row[i] * h[i];
    const float silu = acc / (1.0f + std::exp(-acc));
    hk[o] = h[o] + silu;
  }
}

absl::Status MedusaProposer::Propose(const ProposeRequest& req, DraftTree* out) {
  MedusaHeads& m = *heads_;
  if (req.hidden.size() != m.n_embd || req.max_nodes == 0 || req.max_depth == 0) {
    return absl::OkStatus();  // no hidden state yet: a plain step
  }
  // Tree widths per depth: 3, 2, then chains, within the budget.
  static constexpr uint32_t kWidths[] = {3, 2, 1, 1, 1, 1, 1, 1};
  const uint32_t depth = std::min<uint32_t>({m.n_heads, req.max_depth, req.max_nodes, 8});
  // Every head's state, then one product with the draft vocab's rows for all of them.
  hk_.resize(uint64_t{depth} * m.n_embd);
  for (uint32_t k = 0; k < depth; ++k) HeadState(k, req.hidden.data(), hk_.data() + uint64_t{k} * m.n_embd);
  if (auto s = m.vocab->Logits(hk_.data(), depth, &logits_); !s.ok()) return s;
  const uint32_t K = m.vocab->size();
  std::vector<int32_t> frontier = {-1};
  for (uint32_t k = 0; k < depth && out->size() < req.max_nodes; ++k) {
    const float* l = logits_.data() + uint64_t{k} * K;
    const uint32_t w = std::min(req.chains_only ? 1 : kWidths[k], K);
    order_.resize(K);
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + w, order_.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    std::vector<int32_t> next;
    for (int32_t parent : frontier) {
      for (uint32_t i = 0; i < w && out->size() < req.max_nodes; ++i) {
        next.push_back(out->Add(parent, m.vocab->token(static_cast<uint32_t>(order_[i]))));
      }
    }
    frontier = std::move(next);
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
