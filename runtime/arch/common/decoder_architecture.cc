#include "runtime/arch/common/decoder_architecture.h"

#include "runtime/arch/common/decoder_plan.h"

namespace kestrel {
namespace runtime {

absl::StatusOr<ModelConfig> DecoderArchitecture::ReadConfig(const GgufFile& file) const {
  return ReadDecoderConfig(file, config_rules_);
}

absl::Status DecoderArchitecture::DeclareWeights(const ModelConfig& config,
                                                 WeightTableBuilder& builder) const {
  return DeclareDecoderWeights(config, weight_rules_, builder);
}

absl::StatusOr<ExecutionPlan> DecoderArchitecture::BuildPlan(const ModelConfig& config,
                                                             const WeightTable& weights,
                                                             const PlanOptions& options) const {
  return BuildDecoderPlan(config, weights, options);
}

}  // namespace runtime
}  // namespace kestrel
