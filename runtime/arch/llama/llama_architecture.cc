#include "runtime/arch/llama/llama_architecture.h"

#include "runtime/arch/common/decoder_plan.h"
#include "runtime/arch/common/decoder_weights.h"
#include "runtime/arch/common/metadata.h"

namespace kestrel {
namespace runtime {
namespace {

class Llama final : public Architecture {
 public:
  absl::string_view name() const override { return "llama"; }

  absl::StatusOr<ModelConfig> ReadConfig(const GgufFile& file) const override {
    DecoderConfigRules rules;
    rules.rope_style = KESTREL_ROPE_STYLE_NORM;
    rules.allow_experts = true;  // Mixtral is a llama GGUF
    return ReadDecoderConfig(file, rules);
  }

  absl::Status DeclareWeights(const ModelConfig& config, WeightTableBuilder& builder) const override {
    return DeclareDecoderWeights(config, DecoderWeightRules{}, builder);
  }

  absl::StatusOr<ExecutionPlan> BuildPlan(const ModelConfig& config, const WeightTable& weights,
                                          const PlanOptions& options) const override {
    return BuildDecoderPlan(config, weights, options);
  }
};

}  // namespace

const Architecture& LlamaArchitecture() {
  static const Llama kLlama;
  return kLlama;
}

}  // namespace runtime
}  // namespace kestrel
