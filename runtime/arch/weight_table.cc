#include "runtime/arch/weight_table.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/gguf/half.h"

namespace kestrel {
namespace runtime {
namespace {

std::string DimsString(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

}  // namespace

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
      return absl::UnimplementedError(
          absl::StrCat("tensor '", tensor_name, "' has type ", GgmlTypeName(type),
                       ", which Kestrel cannot compute with yet (supported: ", SupportedGgmlTypes(),
                       ")"));
  }
}

std::string SupportedGgmlTypes() {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
}

WeightTableBuilder::WeightTableBuilder(const GgufFile& file, bool check_types)
    : file_(file), check_types_(check_types) {}

absl::StatusOr<const GgufTensorInfo*> WeightTableBuilder::Find(
    const std::string& name, const std::vector<int64_t>& expect) const {
  const GgufTensorInfo* info = file_.FindTensor(name);
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
  return info;
}

absl::StatusOr<int> WeightTableBuilder::Add(const GgufTensorInfo& info, std::string name,
                                            std::vector<int64_t> dims, const uint8_t* data,
                                            uint64_t bytes, bool as_f32) {
  WeightTensor w;
  w.name = std::move(name);
  w.ggml_type = info.type;
  w.desc.struct_size = sizeof(kestrel_tensor_desc_t);
  w.desc.rank = static_cast<uint32_t>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) w.desc.dims[i] = dims[i];
  absl::StatusOr<kestrel_dtype_t> dtype = DtypeForGgml(info.type, w.name);
  if (!dtype.ok()) {
    if (check_types_) return dtype.status();
    w.desc.dtype = KESTREL_DTYPE_INVALID;  // metadata only: recorded, never prepared
    table_.tensors.push_back(std::move(w));
    return static_cast<int>(table_.tensors.size() - 1);
  }
  w.desc.dtype = *dtype;
  w.host_data = data;
  w.bytes = bytes;
  if (as_f32 && *dtype != KESTREL_DTYPE_F32) {
    // Norm weights, biases and RoPE factors are tiny; the ops take them as F32, so convert once.
    if (*dtype != KESTREL_DTYPE_F16 && *dtype != KESTREL_DTYPE_BF16) {
      return absl::UnimplementedError(absl::StrCat("tensor '", w.name, "' must be F32, F16 or BF16, not ",
                                                   GgmlTypeName(info.type)));
    }
    const uint64_t n = bytes / 2;
    auto f32 = std::make_unique<std::vector<float>>(n);
    for (uint64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      (*f32)[i] = *dtype == KESTREL_DTYPE_F16 ? F16ToF32(h) : Bf16ToF32(h);
    }
    w.desc.dtype = KESTREL_DTYPE_F32;
    w.host_data = reinterpret_cast<const uint8_t*>(f32->data());
    w.bytes = f32->size() * sizeof(float);
    table_.converted.push_back(std::move(f32));
  }
  table_.tensors.push_back(std::move(w));
  return static_cast<int>(table_.tensors.size() - 1);
}

absl::StatusOr<int> WeightTableBuilder::Matrix(const std::string& name, std::vector<int64_t> dims) {
  absl::StatusOr<const GgufTensorInfo*> info = Find(name, dims);
  if (!info.ok()) return info.status();
  return Add(**info, name, std::move(dims), file_.TensorData(**info), (*info)->size_bytes, false);
}

absl::StatusOr<int> WeightTableBuilder::Vector(const std::string& name, int64_t n) {
  absl::StatusOr<const GgufTensorInfo*> info = Find(name, {n});
  if (!info.ok()) return info.status();
  return Add(**info, name, {n}, file_.TensorData(**info), (*info)->size_bytes, true);
}

absl::StatusOr<int> WeightTableBuilder::OptionalMatrix(const std::string& name,
                                                       std::vector<int64_t> dims) {
  if (!Has(name)) return -1;
  return Matrix(name, std::move(dims));
}

absl::StatusOr<int> WeightTableBuilder::OptionalVector(const std::string& name, int64_t n) {
  if (!Has(name)) return -1;
  return Vector(name, n);
}

absl::StatusOr<int> WeightTableBuilder::MatrixRows(const std::string& name,
                                                   std::vector<int64_t> dims, int64_t row0,
                                                   int64_t n_rows) {
  absl::StatusOr<const GgufTensorInfo*> info = Find(name, dims);
  if (!info.ok()) return info.status();
  if (dims.size() != 2 || row0 < 0 || n_rows <= 0 || row0 + n_rows > dims[0]) {
    return absl::InternalError(absl::StrCat("row range [", row0, ", ", row0 + n_rows,
                                            ") of tensor '", name, "' ", DimsString(dims)));
  }
  const uint64_t row_bytes = (*info)->size_bytes / static_cast<uint64_t>(dims[0]);
  std::vector<int64_t> part{n_rows, dims[1]};
  return Add(**info, absl::StrCat(name, "[rows ", row0, ":", row0 + n_rows, "]"), std::move(part),
             file_.TensorData(**info) + static_cast<uint64_t>(row0) * row_bytes,
             static_cast<uint64_t>(n_rows) * row_bytes, false);
}

}  // namespace runtime
}  // namespace kestrel
