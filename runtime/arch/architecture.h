// runtime/arch/: one folder per model architecture (llama/, qwen2/, qwen3/, phi3/, ...) behind
// the Architecture interface, the registry that maps general.architecture to one, and common/,
// the pieces the llama-like families share (metadata reading, decoder weights, the decoder block
// plan). An architecture turns a GGUF's metadata into a ModelConfig, declares which tensors the
// plan uses (WeightTable), and builds the ExecutionPlan. It owns no state: the Model holds the
// file, config, weights and tokenizer. This folder may not touch devices, tokenizers, sessions or
// the executor.
#ifndef KESTREL_RUNTIME_ARCH_ARCHITECTURE_H_
#define KESTREL_RUNTIME_ARCH_ARCHITECTURE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/arch/model_config.h"
#include "runtime/arch/weight_table.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/plan/execution_plan.h"
#include "runtime/plan/plan_options.h"

namespace kestrel {
namespace runtime {

// Implementations are stateless singletons (thread-safe, live for the process).
class Architecture {
 public:
  virtual ~Architecture() = default;

  // The general.architecture value this implementation runs ("llama").
  virtual absl::string_view name() const = 0;

  // Metadata -> config, with the family's defaults. INVALID_ARGUMENT / NOT_FOUND naming the key
  // and value.
  virtual absl::StatusOr<ModelConfig> ReadConfig(const GgufFile& file) const = 0;

  // Declares every tensor the plan uses through `builder` (which checks presence, shape and
  // type) and records their ids in builder.table(). Errors name the tensor.
  virtual absl::Status DeclareWeights(const ModelConfig& config,
                                      WeightTableBuilder& builder) const = 0;

  // The plan of one forward step. UNIMPLEMENTED when the config asks for something the op set
  // cannot express yet; INVALID_ARGUMENT for bad options (a layer count beyond the model's).
  virtual absl::StatusOr<ExecutionPlan> BuildPlan(const ModelConfig& config,
                                                  const WeightTable& weights,
                                                  const PlanOptions& options) const = 0;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_ARCHITECTURE_H_
