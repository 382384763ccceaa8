#include "runtime/arch/phi3/phi3_architecture.h"

#include "runtime/arch/common/decoder_plan.h"
#include "runtime/arch/common/decoder_weights.h"
#include "runtime/arch/common/metadata.h"

namespace kestrel {
namespace runtime {
namespace {

class Phi3 final : public Architecture {
 public:
  absl::string_view name() const override { return "phi3"; }

  absl::StatusOr<ModelConfig> ReadConfig(const GgufFile& file) const override {
    DecoderConfigRules rules;
    rules.rope_style = KESTREL_ROPE_STYLE_NEOX;
    return ReadDecoderConfig(file, rules);
  }

  absl::Status DeclareWeights(const ModelConfig& config, WeightTableBuilder& builder) const override {
    DecoderWeightRules rules;
    rules.fused_qkv = true;      // attn_qkv [QD + 2 KVD, D] (separate Q/K/V also accepted)
    rules.fused_gate_up = true;  // ffn_up [2F, D]: gate rows, then up rows
    return DeclareDecoderWeights(config, rules, builder);
  }

  absl::StatusOr<ExecutionPlan> BuildPlan(const ModelConfig& config, const WeightTable& weights,
                                          const PlanOptions& options) const override {
    return BuildDecoderPlan(config, weights, options);
  }
};

}  // namespace

const Architecture& Phi3Architecture() {
  static const Phi3 kArchitecture;
  return kArchitecture;
}

}  // namespace runtime
}  // namespace kestrel
