// runtime/offload/model_memory.h: what the planner and the expert cache need to know about one
// model, read from its config, weight table and file: which weights are expert stacks, the KV
// bytes per token, and where each layer's experts lie in the file. Reads; never touches a device.
#ifndef KESTREL_RUNTIME_OFFLOAD_MODEL_MEMORY_H_
#define KESTREL_RUNTIME_OFFLOAD_MODEL_MEMORY_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/arch/model_config.h"
#include "runtime/arch/weight_table.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/offload/expert_cache.h"
#include "runtime/offload/memory_planner.h"

namespace kestrel {
namespace runtime {
namespace offload {

// The request's tensors, experts and KV fields (device and budgets are the caller's). A layer's
// attention and FFN matrices are marked streamable (the caller clears what its device cannot
// take).
// kv_element_bytes: 4 for an F32 cache, 2 for F16. kv_block_size: the KV block the window
// layers' pools are counted in (sessions' default 16).
PlanRequest ModelPlanRequest(const ModelConfig& config, const WeightTable& weights,
                             uint64_t weight_bytes, uint32_t kv_element_bytes,
                             uint32_t kv_block_size = 16);

// Per MoE layer (in layer order), the file location of its expert stacks. INVALID_ARGUMENT
// when a stack is not one whole tensor of the file (a converted or row-range weight).
absl::StatusOr<std::vector<ExpertLayerSource>> ExpertSources(const GgufFile& file,
                                                            const WeightTable& weights,
                                                            uint32_t n_experts);

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_MODEL_MEMORY_H_
