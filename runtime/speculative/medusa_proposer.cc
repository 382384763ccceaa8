#include "runtime/speculative/medusa_proposer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/half.h"

namespace kestrel {
namespace runtime {
namespace {

absl::Status ReadF32(const GgufFile& f, const std::string& path, const std::string& name,
                     std::vector<uint64_t> dims, std::vector<float>* out) {
  const GgufTensorInfo* t = f.FindTensor(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("heads file '", path, "': tensor '", name, "' is missing"));
  }
  if (t->type != GgmlType::F32 || t->dims != dims) {
    return absl::InvalidArgumentError(absl::StrCat("heads file '", path, "': tensor '", name,
                                                   "' must be F32 with ", dims.size(), " dims of ",
                                                   dims[0]));
  }
  out->resize(t->n_elements);
  std::memcpy(out->data(), f.TensorData(*t), t->n_elements * sizeof(float));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MedusaHeads>> LoadMedusaHeads(const std::string& path,
                                                             const Model& target) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path, {});
  if (!f.ok()) {
    return absl::Status(f.status().code(), absl::StrCat("heads file '", path, "': ", f.status().message()));
  }
  auto h = std::make_unique<MedusaHeads>();
  const GgufFile& file = **f;
  absl::StatusOr<std::string> arch = file.GetString("general.architecture");
  if (!arch.ok() || *arch != "medusa") {
    return absl::InvalidArgumentError(absl::StrCat(
        "heads file '", path, "': general.architecture must be \"medusa\""));
  }
  for (auto [key, dst] : {std::make_pair("medusa.n_heads", &h->n_heads),
                          std::make_pair("medusa.n_embd", &h->n_embd),
                          std::make_pair("medusa.n_vocab", &h->n_vocab)}) {
    absl::StatusOr<uint32_t> v = file.GetU32(key);
    if (!v.ok()) return absl::Status(v.status().code(), absl::StrCat("heads file '", path, "': ", v.status().message()));
    *dst = *v;
  }
  const ModelConfig& c = target.config();
  if (h->n_embd != c.n_embd || h->n_vocab != c.n_vocab) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heads file '%s' was trained for n_embd %u and vocab %u, but the model has %u and %u",
        path, h->n_embd, h->n_vocab, c.n_embd, c.n_vocab));
  }
  if (h->n_heads == 0 || h->n_heads > 16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heads file '%s': medusa.n_heads = %u is outside [1, 16]", path, h->n_heads));
  }
  const uint64_t D = h->n_embd;
  h->weight.resize(h->n_heads);
  h->bias.resize(h->n_heads);
  for (uint32_t k = 0; k < h->n_heads; ++k) {
    if (auto s = ReadF32(file, path, absl::StrCat("medusa.", k, ".weight"), {D, D}, &h->weight[k]); !s.ok()) return s;
    if (auto s = ReadF32(file, path, absl::StrCat("medusa.", k, ".bias"), {D}, &h->bias[k]); !s.ok()) return s;
  }
  // The target's output head on the host, in f32.
  const WeightTensor* out = nullptr;
  for (const WeightTensor& w : target.weights().tensors) {
    if (w.name == "output.weight") out = &w;
  }
  if (out == nullptr) {
    for (const WeightTensor& w : target.weights().tensors) {
      if (w.name == "token_embd.weight") out = &w;  // tied embeddings
    }
  }
  if (out == nullptr) return absl::InvalidArgumentError("medusa: the model has no output matrix");
  const uint64_t n = uint64_t{h->n_vocab} * D;
  h->output.resize(n);
  switch (out->desc.dtype) {
    case KESTREL_DTYPE_F32:
      std::memcpy(h->output.data(), out->host_data, n * sizeof(float));
      break;
    case KESTREL_DTYPE_F16:
    case KESTREL_DTYPE_BF16: {
      const bool f16 = out->desc.dtype == KESTREL_DTYPE_F16;
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, out->host_data + 2 * i, 2);
        h->output[i] = f16 ? F16ToF32(v) : Bf16ToF32(v);
      }
      break;
    }
    default:
      return absl::UnimplementedError(absl::StrCat(
          "medusa: the model's output matrix '", out->name,
          "' is quantized; Medusa heads need an F32, F16 or BF16 output matrix for now"));
  }
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
  for (uint32_t v = 0; v < m.n_vocab; ++v) {
    const float* row = m.output.data() + uint64_t{v} * D;
    float acc = 0;
    for (uint32_t i = 0; i < D; ++i) acc += row[i] * hk[i];
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
