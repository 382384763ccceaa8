#include "runtime/model/llama_model.h"

#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/gguf/half.h"
#include "runtime/tokenizer/tokenizer_loader.h"

namespace kestrel {
namespace runtime {

absl::StatusOr<kestrel_dtype_t> DtypeForGgml(GgmlType type, const std::string& tensor_name) {
  switch (type) {
    case GgmlType::F32: return KESTREL_DTYPE_F32;
    case GgmlType::F16: return KESTREL_DTYPE_F16;
    case GgmlType::BF16: return KESTREL_DTYPE_BF16;
    case GgmlType::Q8_0: return KESTREL_DTYPE_Q8_0;
    case GgmlType::Q4_0: return KESTREL_DTYPE_Q4_0;
    case GgmlType::Q4_1: return KESTREL_DTYPE_Q4_1;
    case GgmlType::Q5_0: return KESTREL_DTYPE_Q5_0;
    case GgmlType::Q5_1: return KESTREL_DTYPE_Q5_1;
    case GgmlType::Q2_K: return KESTREL_DTYPE_Q2_K;
    case GgmlType::Q3_K: return KESTREL_DTYPE_Q3_K;
    case GgmlType::Q4_K: return KESTREL_DTYPE_Q4_K;
    case GgmlType::Q5_K: return KESTREL_DTYPE_Q5_K;
    case GgmlType::Q6_K: return KESTREL_DTYPE_Q6_K;
    default:
      return absl::UnimplementedError(absl::StrCat(
          "tensor '", tensor_name, "' has type ", GgmlTypeName(type),
          ", which Kestrel cannot compute with yet (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
          "Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"));
  }
}

namespace {

std::string DimsString(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

}  // namespace

LlamaModel::~LlamaModel() {
  std::lock_guard<std::mutex> lock(prepared_mu_);
  prepared_.clear();  // release device weights before the file mapping goes away
}

absl::StatusOr<int> LlamaModel::AddWeight(const std::string& name, std::vector<int64_t> expect,
                                          bool require_f32) {
  const GgufTensorInfo* info = file_->FindTensor(name);
  if (info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("required tensor '", name, "' is missing"));
  }
  // GGUF stores ne order (innermost first); the plugin ABI is outermost first.
  std::vector<int64_t> dims(info->dims.rbegin(), info->dims.rend());
  if (dims != expect) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                   DimsString(dims), ", expected ",
                                                   DimsString(expect), " from the metadata"));
  }
  absl::StatusOr<kestrel_dtype_t> dtype = DtypeForGgml(info->type, name);
  if (!dtype.ok()) return dtype.status();
  WeightTensor w;
  w.name = name;
  w.desc.struct_size = sizeof(kestrel_tensor_desc_t);
  w.desc.rank = static_cast<uint32_t>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) w.desc.dims[i] = dims[i];
  w.desc.dtype = *dtype;
  w.host_data = file_->TensorData(*info);
  w.bytes = info->size_bytes;
  if (require_f32 && *dtype != KESTREL_DTYPE_F32) {
    // Norm weights are tiny; the ops take them as F32, so convert once here.
    if (*dtype != KESTREL_DTYPE_F16 && *dtype != KESTREL_DTYPE_BF16) {
      return absl::UnimplementedError(absl::StrCat("tensor '", name, "' must be F32, F16 or BF16, not ",
                                                   GgmlTypeName(info->type)));
    }
    auto f32 = std::make_unique<std::vector<float>>(info->n_elements);
    const uint16_t* src = reinterpret_cast<const uint16_t*>(w.host_data);
    for (uint64_t i = 0; i < info->n_elements; ++i) {
      uint16_t h;
      std::memcpy(&h, src + i, 2);
      (*f32)[i] = *dtype == KESTREL_DTYPE_F16 ? F16ToF32(h) : Bf16ToF32(h);
    }
    w.desc.dtype = KESTREL_DTYPE_F32;
    w.host_data = reinterpret_cast<const uint8_t*>(f32->data());
    w.bytes = f32->size() * sizeof(float);
    converted_.push_back(std::move(f32));
  }
  weights_.push_back(std::move(w));
  return static_cast<int>(weights_.size() - 1);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& path,
                                                             hal::Device* device,
                                                             const ModelLoadOptions& options) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  m->device_ = device;
  auto report = [&](float p) -> absl::Status {
    if (options.progress && !options.progress(p)) {
      return absl::CancelledError(absl::StrFormat("model load cancelled by the progress callback at %.0f%%", p * 100));
    }
    return absl::OkStatus();
  };
  if (auto s = report(0.0f); !s.ok()) return s;
  GgufOpenOptions open;
  open.use_mmap = options.use_mmap;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path, open);
  if (!file.ok()) return file.status();
  m->file_ = std::move(*file);
  absl::StatusOr<LlamaConfig> config = ReadLlamaConfig(*m->file_);
  if (!config.ok()) return config.status();
  m->config_ = *config;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(*m->file_);
  if (!tok.ok()) return tok.status();
  m->tokenizer_ = std::move(*tok);
  LlamaConfig& c = m->config_;
  c.n_vocab = static_cast<uint32_t>(m->tokenizer_->vocab_size());

  const int64_t D = c.n_embd, V = c.n_vocab, F = c.n_ff;
  const int64_t QD = int64_t{c.n_heads} * c.head_dim, KVD = int64_t{c.n_kv_heads} * c.head_dim;
#define KESTREL_WEIGHT(lhs, name, dims, f32)                 \
  do {                                                       \
    absl::StatusOr<int> _id = m->AddWeight(name, dims, f32); \
    if (!_id.ok()) return _id.status();                      \
    lhs = *_id;                                              \
  } while (0)
  KESTREL_WEIGHT(m->token_embd_, "token_embd.weight", (std::vector<int64_t>{V, D}), false);
  KESTREL_WEIGHT(m->output_norm_, "output_norm.weight", (std::vector<int64_t>{D}), true);
  if (m->file_->FindTensor("output.weight") != nullptr) {
    KESTREL_WEIGHT(m->output_, "output.weight", (std::vector<int64_t>{V, D}), false);
  } else {
    m->output_ = m->token_embd_;  // tied embeddings
  }
  m->layers_.resize(c.n_layers);
  for (uint32_t l = 0; l < c.n_layers; ++l) {
    const std::string b = absl::StrCat("blk.", l, ".");
    LayerWeightIds& L = m->layers_[l];
    KESTREL_WEIGHT(L.attn_norm, b + "attn_norm.weight", (std::vector<int64_t>{D}), true);
    KESTREL_WEIGHT(L.wq, b + "attn_q.weight", (std::vector<int64_t>{QD, D}), false);
    KESTREL_WEIGHT(L.wk, b + "attn_k.weight", (std::vector<int64_t>{KVD, D}), false);
    KESTREL_WEIGHT(L.wv, b + "attn_v.weight", (std::vector<int64_t>{KVD, D}), false);
    KESTREL_WEIGHT(L.wo, b + "attn_output.weight", (std::vector<int64_t>{D, QD}), false);
    KESTREL_WEIGHT(L.ffn_norm, b + "ffn_norm.weight", (std::vector<int64_t>{D}), true);
    if (c.n_experts == 0) {
      KESTREL_WEIGHT(L.w_gate, b + "ffn_gate.weight", (std::vector<int64_t>{F, D}), false);
      KESTREL_WEIGHT(L.w_up, b + "ffn_up.weight", (std::vector<int64_t>{F, D}), false);
      KESTREL_WEIGHT(L.w_down, b + "ffn_down.weight", (std::vector<int64_t>{D, F}), false);
      continue;
    }
    // Mixtral-style experts, stacked per layer (GGUF ne [D, F, E] -> dims [E, F, D]).
    const int64_t E = c.n_experts;
    if (m->file_->FindTensor(b + "ffn_gate_exps.weight") == nullptr &&
        m->file_->FindTensor(b + "ffn_gate.0.weight") != nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          "tensor '", b, "ffn_gate.0.weight': per-expert tensors (the pre-2024 Mixtral GGUF "
          "layout) are not supported; convert the model again to get stacked '", b,
          "ffn_gate_exps.weight'"));
    }
    KESTREL_WEIGHT(L.ffn_gate_inp, b + "ffn_gate_inp.weight", (std::vector<int64_t>{E, D}), false);
    KESTREL_WEIGHT(L.ffn_gate_exps, b + "ffn_gate_exps.weight", (std::vector<int64_t>{E, F, D}), false);
    KESTREL_WEIGHT(L.ffn_up_exps, b + "ffn_up_exps.weight", (std::vector<int64_t>{E, F, D}), false);
    KESTREL_WEIGHT(L.ffn_down_exps, b + "ffn_down_exps.weight", (std::vector<int64_t>{E, D, F}), false);
  }
#undef KESTREL_WEIGHT

  // Summary over every tensor in the file (what `kestrel info` shows).
  std::map<std::string, TensorTypeSummary> by_type;
  for (const GgufTensorInfo& t : m->file_->tensors()) {
    TensorTypeSummary& s = by_type[GgmlTypeName(t.type)];
    s.type_name = GgmlTypeName(t.type);
    ++s.n_tensors;
    s.n_elements += t.n_elements;
    s.n_bytes += t.size_bytes;
    m->n_params_ += t.n_elements;
    m->weight_bytes_ += t.size_bytes;
  }
  for (auto& [name, s] : by_type) m->tensor_types_.push_back(s);

  // Prepare every weight on the device once (the plugin may repack it).
  uint64_t done = 0, total = 0;
  for (const WeightTensor& w : m->weights_) total += w.bytes;
  for (size_t i = 0; i < m->weights_.size(); ++i) {
    // A dtype the device does not take as a weight (e.g. K-quants on opencl) is prepared on the
    // fallback device when an op first needs it there (Executor::Place -> Prepared).
    if ((device->caps().weight_dtype_mask & KESTREL_DTYPE_BIT(m->weights_[i].desc.dtype)) == 0) {
      continue;
    }
    absl::StatusOr<const hal::PreparedWeight*> p = m->Prepared(static_cast<int>(i), device);
    if (!p.ok()) return p.status();
    // The device holds its own copy now: drop this tensor's file pages from the resident set, so
    // peak memory during load is about one copy of the weights, not two.
    m->file_->ReleaseResidentRange(m->weights_[i].host_data, m->weights_[i].bytes);
    done += m->weights_[i].bytes;
    if (auto s = report(0.05f + 0.95f * static_cast<float>(done) / static_cast<float>(total ? total : 1));
        !s.ok()) {
      return s;
    }
  }
  // Plugins copy (or repack) weights in weight_prepare, so the mapped file pages are no longer
  // needed resident; without this a loaded model costs the file size twice in RSS.
  m->file_->ReleaseResidentPages();
  if (auto s = report(1.0f); !s.ok()) return s;
  return m;
}

absl::StatusOr<const hal::PreparedWeight*> LlamaModel::Prepared(int id, hal::Device* device) const {
  std::lock_guard<std::mutex> lock(prepared_mu_);
  auto key = std::make_pair(id, device);
  auto it = prepared_.find(key);
  if (it != prepared_.end()) return &it->second;
  const WeightTensor& w = weights_[id];
  absl::StatusOr<hal::PreparedWeight> p = device->PrepareWeight(w.desc, w.host_data, w.bytes);
  if (!p.ok()) {
    return absl::Status(p.status().code(),
                        absl::StrCat("preparing weight '", w.name, "': ", p.status().message()));
  }
  return &(prepared_[key] = std::move(*p));
}

}  // namespace runtime
}  // namespace kestrel
