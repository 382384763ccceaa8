// runtime/model/llama_model.h: a loaded llama-architecture model: the mapped GGUF file, its
// config, tokenizer and weights prepared on the chosen device (and, on demand, on the fallback
// device for ops the chosen device does not run).
//
// Thread-safety: immutable after Load except the lazy per-device weight cache, which is guarded.
#ifndef KESTREL_RUNTIME_MODEL_LLAMA_MODEL_H_
#define KESTREL_RUNTIME_MODEL_LLAMA_MODEL_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/model/llama_config.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kestrel {
namespace runtime {

// One weight tensor as the ops see it: row-major dims (outermost first) and the file's bytes.
struct WeightTensor {
  std::string name;
  kestrel_tensor_desc_t desc{};
  const uint8_t* host_data = nullptr;  // points into the GGUF image or into converted storage
  uint64_t bytes = 0;
};

// Which weight of the model: the plan refers to weights by these ids. A dense layer has
// w_gate/w_up/w_down; a mixture-of-experts layer (config().n_experts > 0) has the router
// ffn_gate_inp [E, D] and the stacked experts gate/up [E, F, D] and down [E, D, F] instead. Ids
// a layer does not have are -1.
struct LayerWeightIds {
  int attn_norm = -1, wq = -1, wk = -1, wv = -1, wo = -1, ffn_norm = -1;
  int w_gate = -1, w_up = -1, w_down = -1;
  int ffn_gate_inp = -1, ffn_gate_exps = -1, ffn_up_exps = -1, ffn_down_exps = -1;
};

struct TensorTypeSummary {
  std::string type_name;
  uint32_t n_tensors = 0;
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
};

struct ModelLoadOptions {
  bool use_mmap = true;
  // Progress in [0, 1]; returning false cancels the load.
  std::function<bool(float)> progress;
};

class LlamaModel {
 public:
  // Opens `path`, validates everything, and prepares every weight on `device`.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& path,
                                                          hal::Device* device,
                                                          const ModelLoadOptions& options);
  ~LlamaModel();

  const LlamaConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  hal::Device* device() const { return device_; }
  const GgufFile& file() const { return *file_; }

  const WeightTensor& weight(int id) const { return weights_[id]; }
  int token_embedding() const { return token_embd_; }
  int output_norm() const { return output_norm_; }
  int output() const { return output_; }
  const LayerWeightIds& layer(uint32_t l) const { return layers_[l]; }

  // The weight prepared on `device`; prepares it on first use (for the fallback device).
  absl::StatusOr<const hal::PreparedWeight*> Prepared(int id, hal::Device* device) const;

  uint64_t n_params() const { return n_params_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  const std::vector<TensorTypeSummary>& tensor_types() const { return tensor_types_; }

 private:
  LlamaModel() = default;
  absl::StatusOr<int> AddWeight(const std::string& name, std::vector<int64_t> expect_dims,
                                bool require_f32);

  std::unique_ptr<GgufFile> file_;
  LlamaConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  hal::Device* device_ = nullptr;
  std::vector<WeightTensor> weights_;
  std::vector<std::unique_ptr<std::vector<float>>> converted_;  // F32 copies of non-F32 norms
  int token_embd_ = -1, output_norm_ = -1, output_ = -1;
  std::vector<LayerWeightIds> layers_;
  uint64_t n_params_ = 0, weight_bytes_ = 0;
  std::vector<TensorTypeSummary> tensor_types_;

  mutable std::mutex prepared_mu_;
  mutable std::map<std::pair<int, hal::Device*>, hal::PreparedWeight> prepared_;
};

// Maps a GGML tensor type to the plugin ABI dtype; UNIMPLEMENTED naming the type otherwise.
absl::StatusOr<kestrel_dtype_t> DtypeForGgml(GgmlType type, const std::string& tensor_name);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_MODEL_LLAMA_MODEL_H_
