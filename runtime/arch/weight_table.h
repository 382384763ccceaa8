// runtime/arch/weight_table.h: which tensor of the file plays which role in the plan. An
// Architecture declares its weights through a WeightTableBuilder, which finds each tensor in the
// GGUF, checks its shape against the config and its type against what the plugins compute with,
// and records where its bytes are. The model prepares the table's tensors on devices; plans refer
// to them by id. Nothing here touches a device.
#ifndef KESTREL_RUNTIME_ARCH_WEIGHT_TABLE_H_
#define KESTREL_RUNTIME_ARCH_WEIGHT_TABLE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/include/kestrel/plugin_api.h"
#include "runtime/gguf/gguf_file.h"

namespace kestrel {
namespace runtime {

// One weight tensor as the ops see it: row-major dims (outermost first) and its bytes.
struct WeightTensor {
  std::string name;  // the GGUF tensor; "name[rows a:b]" for a row range of a fused tensor
  kestrel_tensor_desc_t desc{};
  GgmlType ggml_type = GgmlType::F32;  // the file's type (desc.dtype is what the ops get)
  const uint8_t* host_data = nullptr;  // points into the GGUF image or into converted storage
  uint64_t bytes = 0;
  // A fused matrix (runtime/arch/fused_weights.h) whose parts are not adjacent in the file has no
  // host_data: its bytes are those of `parts`, in order, assembled only while it is prepared.
  std::vector<int> parts;
  int fused_into = -1;  // a part of this fused matrix: prepared only if a plan uses it alone
};

// The weights of one decoder layer; -1 where the layer has none. A dense layer has
// w_gate/w_up/w_down; a mixture-of-experts layer has the router ffn_gate_inp [E, D] and the stacked
// experts gate/up [E, F, D] and down [E, D, F] instead.
struct LayerWeights {
  int attn_norm = -1, wq = -1, wk = -1, wv = -1, wo = -1;
  int bq = -1, bk = -1, bv = -1;         // Q/K/V biases F32 [N] (qwen2)
  int q_norm = -1, k_norm = -1;          // per-head RMSNorm of Q and K, F32 [head_dim] (qwen3, gemma3)
  int attn_post_norm = -1;               // RMSNorm of the attention output before the residual (gemma)
  int ffn_norm = -1;
  int w_gate = -1, w_up = -1, w_down = -1;
  int ffn_post_norm = -1;                // RMSNorm of the FFN output before the residual (gemma)
  int ffn_gate_inp = -1, ffn_gate_exps = -1, ffn_up_exps = -1, ffn_down_exps = -1;
  // Fused matrices (AddFusedWeights; -1 without): [Wq; Wk; Wv] [QD + 2 KVD, D] with its bias
  // [bq; bk; bv] when the layer has biases, and [Wgate; Wup] [2 F, D].
  int wqkv = -1, bqkv = -1, w_gate_up = -1;
};

struct WeightTable {
  std::vector<WeightTensor> tensors;
  int token_embd = -1, output_norm = -1;
  int output = -1;  // == token_embd when the embeddings are tied
  // RoPE frequency divisors F32 [rope_dim / 2]: Llama 3's rope_freqs, Phi-3's short/long factors.
  int rope_freqs = -1, rope_factors_short = -1, rope_factors_long = -1;
  std::vector<LayerWeights> layers;
  // F32 copies of norm vectors stored as F16/BF16 in the file (owned here, pointed to above).
  std::vector<std::unique_ptr<std::vector<float>>> converted;
};

// Maps a GGML tensor type to the plugin ABI dtype; UNIMPLEMENTED naming the tensor and the type
// otherwise.
absl::StatusOr<kestrel_dtype_t> DtypeForGgml(GgmlType type, const std::string& tensor_name);
// "F32, F16, BF16, Q8_0, Q4_0, Q4_1, ...": the GGML types DtypeForGgml maps.
std::string SupportedGgmlTypes();

class WeightTableBuilder {
 public:
  // With check_types false (metadata-only models) a tensor of a type the plugins cannot compute
  // with is recorded anyway (desc.dtype INVALID, no data): shapes are still checked.
  WeightTableBuilder(const GgufFile& file, bool check_types);

  bool Has(const std::string& name) const { return file_.FindTensor(name) != nullptr; }

  // A matrix (any weight type) of `dims` (outermost first). INVALID_ARGUMENT naming the tensor
  // when it is missing or has another shape, UNIMPLEMENTED for an unsupported type.
  absl::StatusOr<int> Matrix(const std::string& name, std::vector<int64_t> dims);
  // A vector F32 [n] (norm weights, biases, RoPE factors), converted once from F16/BF16.
  absl::StatusOr<int> Vector(const std::string& name, int64_t n);
  // As above, but -1 when the file has no such tensor (a present one is still checked).
  absl::StatusOr<int> OptionalMatrix(const std::string& name, std::vector<int64_t> dims);
  absl::StatusOr<int> OptionalVector(const std::string& name, int64_t n);
  // Rows [row0, row0 + n_rows) of the matrix `name` of `dims` as a weight of its own (phi3's fused
  // attn_qkv and gate/up tensors): rows of a GGUF matrix are contiguous in any type, so the range
  // is a byte range of the file and costs nothing.
  absl::StatusOr<int> MatrixRows(const std::string& name, std::vector<int64_t> dims, int64_t row0,
                                 int64_t n_rows);

  WeightTable& table() { return table_; }
  WeightTable Finish() { return std::move(table_); }

 private:
  absl::StatusOr<const GgufTensorInfo*> Find(const std::string& name,
                                             const std::vector<int64_t>& dims) const;
  absl::StatusOr<int> Add(const GgufTensorInfo& info, std::string name, std::vector<int64_t> dims,
                          const uint8_t* data, uint64_t bytes, bool as_f32);

  const GgufFile& file_;
  bool check_types_;
  WeightTable table_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_WEIGHT_TABLE_H_
