#include "runtime/speculative/heads_file.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kestrel/plugin_sdk/dtype.h"

namespace kestrel {
namespace runtime {

absl::StatusOr<std::unique_ptr<GgufFile>> OpenHeadsFile(const std::string& path, const std::string& arch) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path, {});
  if (!f.ok()) {
    return absl::Status(f.status().code(), absl::StrCat("heads file '", path, "': ", f.status().message()));
  }
  absl::StatusOr<std::string> a = (*f)->GetString("general.architecture");
  if (!a.ok() || *a != arch) {
    return absl::InvalidArgumentError(absl::StrCat("heads file '", path, "': general.architecture must be \"",
                                                   arch, "\"", a.ok() ? absl::StrCat(", not \"", *a, "\"") : ""));
  }
  return f;
}

absl::StatusOr<std::string> HeadsArchitecture(const std::string& path) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path, {});
  if (!f.ok()) {
    return absl::Status(f.status().code(), absl::StrCat("heads file '", path, "': ", f.status().message()));
  }
  absl::StatusOr<std::string> a = (*f)->GetString("general.architecture");
  if (!a.ok()) return absl::InvalidArgumentError(absl::StrCat("heads file '", path, "': no general.architecture"));
  return *a;
}

absl::Status CheckHeadsFitModel(const std::string& path, uint32_t n_embd, uint32_t n_vocab,
                                const Model& target) {
  const ModelConfig& c = target.config();
  if (n_embd == c.n_embd && n_vocab == c.n_vocab) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "heads file '%s' was trained for n_embd %u and vocab %u, but the model has %u and %u", path,
      n_embd, n_vocab, c.n_embd, c.n_vocab));
}

absl::Status ReadHeadsU32(const GgufFile& f, const std::string& path, const std::string& key, uint32_t* out) {
  absl::StatusOr<uint32_t> v = f.GetU32(key);
  if (!v.ok()) return absl::Status(v.status().code(), absl::StrCat("heads file '", path, "': ", v.status().message()));
  *out = *v;
  return absl::OkStatus();
}

absl::Status ReadHeadsF32(const GgufFile& f, const std::string& path, const std::string& name,
                          const std::vector<uint64_t>& dims, std::vector<float>* out) {
  const GgufTensorInfo* t = f.FindTensor(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("heads file '", path, "': tensor '", name, "' is missing"));
  }
  if (t->type != GgmlType::F32 || t->dims != dims) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heads file '", path, "': tensor '", name, "' must be F32 with ggml dims [",
        absl::StrJoin(dims, ", "), "], it has [", absl::StrJoin(t->dims, ", "), "]",
        t->type != GgmlType::F32 ? " and is not F32" : ""));
  }
  out->resize(t->n_elements);
  std::memcpy(out->data(), f.TensorData(*t), t->n_elements * sizeof(float));
  return absl::OkStatus();
}

absl::StatusOr<const WeightTensor*> FindTargetMatrix(const Model& target, const std::vector<std::string>& names,
                                                     const std::string& who) {
  for (const std::string& name : names) {
    for (const WeightTensor& t : target.weights().tensors) {
      if (t.name == name) return &t;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(who, ": the model has no ", absl::StrJoin(names, " or ")));
}

absl::StatusOr<std::vector<float>> TargetMatrixF32(const Model& target, const std::vector<std::string>& names,
                                                   const std::string& who) {
  absl::StatusOr<const WeightTensor*> found = FindTargetMatrix(target, names, who);
  if (!found.ok()) return found.status();
  const WeightTensor* w = *found;
  const uint64_t n_embd = target.config().n_embd;
  const uint64_t n = n_embd * target.config().n_vocab;
  const uint32_t dtype = w->desc.dtype;
  // Any weight format the model loads (Q4_1, Q8_0, K-quants, ...): the plugin SDK's
  // dequantization is their numerical definition, row by row.
  if (!plugin_sdk::IsWeightDtype(dtype) || n_embd % plugin_sdk::DtypeBlockElements(dtype) != 0) {
    return absl::UnimplementedError(absl::StrCat(who, ": the model's matrix '", w->name, "' is ",
                                                 plugin_sdk::DtypeName(dtype),
                                                 ", which draft heads cannot read"));
  }
  std::vector<float> out(n);
  const uint64_t row_bytes = plugin_sdk::RowBytes(dtype, static_cast<int64_t>(n_embd));
  for (uint64_t r = 0; r < target.config().n_vocab; ++r) {
    plugin_sdk::DequantizeRow(dtype, w->host_data + r * row_bytes, static_cast<int64_t>(n_embd),
                              out.data() + r * n_embd);
  }
  return out;
}

}  // namespace runtime
}  // namespace kestrel
