#include "runtime/speculative/draft_vocab.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "hal/src/op_desc.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "runtime/speculative/heads_file.h"

namespace kestrel {
namespace runtime {

DraftVocabHead::~DraftVocabHead() = default;

absl::StatusOr<std::unique_ptr<DraftVocabHead>> DraftVocabHead::Create(
    const Model& target, uint32_t k, const std::vector<std::string>& names, const std::string& who) {
  absl::StatusOr<const WeightTensor*> found = FindTargetMatrix(target, names, who);
  if (!found.ok()) return found.status();
  const WeightTensor* w = *found;
  const uint32_t D = target.config().n_embd, V = target.config().n_vocab;
  const uint32_t dtype = w->desc.dtype;
  if (w->host_data == nullptr || w->desc.rank != 2 || w->desc.dims[0] != V || w->desc.dims[1] != D ||
      !plugin_sdk::IsWeightDtype(dtype) || D % plugin_sdk::DtypeBlockElements(dtype) != 0) {
    return absl::UnimplementedError(absl::StrCat(who, ": the model's matrix '", w->name, "' (",
                                                 plugin_sdk::DtypeName(dtype),
                                                 ") cannot serve as a draft output head"));
  }
  std::unique_ptr<DraftVocabHead> h(new DraftVocabHead());
  h->k_ = std::max<uint32_t>(1, std::min(k, V));
  h->d_ = D;
  const uint64_t row_bytes = plugin_sdk::RowBytes(dtype, static_cast<int64_t>(D));
  // The subset is the first k_ ids (merge order): a prefix of the rows, in the weight's format.
  h->desc_ = w->desc;
  h->desc_.dims[0] = h->k_;
  h->device_ = target.device();
  if (h->device_ != nullptr) {
    absl::StatusOr<hal::PreparedWeight> p =
        h->device_->PrepareWeight(h->desc_, w->host_data, row_bytes * h->k_);
    if (p.ok()) h->weight_ = std::move(*p);
    if (h->weight_ && !h->DeviceRunsIt()) h->weight_.reset();
  }
  if (!h->weight_) {
    h->host_.resize(uint64_t{h->k_} * D);
    for (uint64_t r = 0; r < h->k_; ++r) {
      plugin_sdk::DequantizeRow(dtype, w->host_data + r * row_bytes, static_cast<int64_t>(D),
                                h->host_.data() + r * D);
    }
  }
  return h;
}

absl::Status DraftVocabHead::Logits(const float* x, uint32_t n, std::vector<float>* scores) {
  scores->resize(uint64_t{n} * k_);
  if (weight_) {
    for (uint32_t t = 0; t < n; t += kMaxRows) {
      const uint32_t m = std::min(kMaxRows, n - t);
      absl::Status s = DeviceLogits(x + uint64_t{t} * d_, m, scores->data() + uint64_t{t} * k_);
      if (!s.ok()) return absl::InternalError(absl::StrCat("draft vocab head on the device: ", s.message()));
    }
    return absl::OkStatus();
  }
  HostLogits(x, n, scores);
  return absl::OkStatus();
}

kestrel_op_desc_t DraftVocabHead::MatmulOp(uint32_t n, kestrel_tensor_arg_t* in, kestrel_tensor_arg_t* out) const {
  in[0] = hal::TensorArg(KESTREL_DTYPE_F32, {n, d_});
  in[0].buffer = in_ ? in_->handle() : nullptr;
  in[1] = kestrel_tensor_arg_t{};
  in[1].desc = desc_;
  in[1].weight = weight_ ? weight_->handle() : nullptr;
  *out = hal::TensorArg(KESTREL_DTYPE_F32, {n, k_});
  out->buffer = out_ ? out_->handle() : nullptr;
  return hal::OpDesc(KESTREL_OP_MATMUL, 1, in, 2, out, 1);
}

bool DraftVocabHead::DeviceRunsIt() {
  for (uint32_t n : {1u, kMaxRows}) {
    kestrel_tensor_arg_t in[2], out;
    absl::StatusOr<kestrel_op_support_t> q = device_->Query(MatmulOp(n, in, &out));
    if (!q.ok() || q->level == KESTREL_OP_UNSUPPORTED || q->workspace_bytes != 0) return false;
  }
  absl::StatusOr<hal::Buffer> in = device_->Allocate(uint64_t{kMaxRows} * d_ * sizeof(float));
  absl::StatusOr<hal::Buffer> out = device_->Allocate(uint64_t{kMaxRows} * k_ * sizeof(float));
  if (!in.ok() || !out.ok()) return false;
  in_ = std::move(*in);
  out_ = std::move(*out);
  return true;
}

absl::Status DraftVocabHead::DeviceLogits(const float* x, uint32_t n, float* scores) {
  if (auto s = device_->Write(*in_, 0, x, uint64_t{n} * d_ * sizeof(float)); !s.ok()) return s;
  kestrel_tensor_arg_t in[2], out;
  if (auto s = device_->Execute(MatmulOp(n, in, &out), nullptr); !s.ok()) return s;
  return device_->Read(*out_, 0, scores, uint64_t{n} * k_ * sizeof(float));
}

void DraftVocabHead::HostLogits(const float* x, uint32_t n, std::vector<float>* scores) const {
  // Eight independent partial sums: the compiler vectorises them.
  constexpr uint32_t kLanes = 8;
  for (uint32_t t = 0; t < n; ++t) {
    const float* xt = x + uint64_t{t} * d_;
    for (uint32_t v = 0; v < k_; ++v) {
      const float* row = host_.data() + uint64_t{v} * d_;
      float part[kLanes] = {};
      uint32_t i = 0;
      for (; i + kLanes <= d_; i += kLanes) {
        for (uint32_t l = 0; l < kLanes; ++l) part[l] += row[i + l] * xt[i + l];
      }
      float acc = 0;
      for (; i < d_; ++i) acc += row[i] * xt[i];
      for (uint32_t l = 0; l < kLanes; ++l) acc += part[l];
      (*scores)[uint64_t{t} * k_ + v] = acc;
    }
  }
}

}  // namespace runtime
}  // namespace kestrel
