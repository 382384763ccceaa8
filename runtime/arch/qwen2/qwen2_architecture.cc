#include "runtime/arch/qwen2/qwen2_architecture.h"

#include "runtime/arch/common/decoder_plan.h"
#include "runtime/arch/common/decoder_weights.h"
#include "runtime/arch/common/metadata.h"

namespace kestrel {
namespace runtime {
namespace {

class Qwen2 final : public Architecture {
 public:
  absl::string_view name() const override { return "qwen2"; }

  absl::StatusOr<ModelConfig> ReadConfig(const GgufFile& file) const override {
    DecoderConfigRules rules;
    rules.rope_style = KESTREL_ROPE_STYLE_NEOX;
    return ReadDecoderConfig(file, rules);
  }

  absl::Status DeclareWeights(const ModelConfig& config, WeightTableBuilder& builder) const override {
    DecoderWeightRules rules;
    rules.qkv_bias = true;  // Q/K/V projections carry biases
    return DeclareDecoderWeights(config, rules, builder);
  }

  absl::StatusOr<ExecutionPlan> BuildPlan(const ModelConfig& config, const WeightTable& weights,
                                          const PlanOptions& options) const override {
    return BuildDecoderPlan(config, weights, options);
  }
};

}  // namespace

const Architecture& Qwen2Architecture() {
  static const Qwen2 kArchitecture;
  return kArchitecture;
}

}  // namespace runtime
}  // namespace kestrel
