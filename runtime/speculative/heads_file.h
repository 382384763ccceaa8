// runtime/speculative/heads_file.h: what the draft heads' sidecar GGUFs (Medusa, EAGLE) share:
// opening one and checking its architecture, reading its F32 tensors with their exact shapes, and
// the target's own matrices (output head, token embeddings) on the host in f32. Errors name the
// file and the key or tensor at fault.
#ifndef KESTREL_RUNTIME_SPECULATIVE_HEADS_FILE_H_
#define KESTREL_RUNTIME_SPECULATIVE_HEADS_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/model/model.h"

namespace kestrel {
namespace runtime {

// Opens `path`; fails unless general.architecture is `arch`.
absl::StatusOr<std::unique_ptr<GgufFile>> OpenHeadsFile(const std::string& path, const std::string& arch);
// general.architecture of a heads file ("medusa", "eagle", ...).
absl::StatusOr<std::string> HeadsArchitecture(const std::string& path);
absl::Status ReadHeadsU32(const GgufFile& f, const std::string& path, const std::string& key, uint32_t* out);
// OK when heads trained for `n_embd` and `n_vocab` fit `target`; the message names both sides.
absl::Status CheckHeadsFitModel(const std::string& path, uint32_t n_embd, uint32_t n_vocab,
                                const Model& target);
// Tensor `name`, F32 with exactly `dims` (ggml order: dims[0] is the row length).
absl::Status ReadHeadsF32(const GgufFile& f, const std::string& path, const std::string& name,
                          const std::vector<uint64_t>& dims, std::vector<float>* out);
// The first of `names` the model has (INVALID_ARGUMENT naming `who` and the names if none).
absl::StatusOr<const WeightTensor*> FindTargetMatrix(const Model& target, const std::vector<std::string>& names,
                                                     const std::string& who);
// The first of `names` the model has, as f32 [rows][n_embd] (F32, F16 or BF16 weights; a
// quantized one is UNIMPLEMENTED naming `who`).
absl::StatusOr<std::vector<float>> TargetMatrixF32(const Model& target, const std::vector<std::string>& names,
                                                   const std::string& who);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_HEADS_FILE_H_
