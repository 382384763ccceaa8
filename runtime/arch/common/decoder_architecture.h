// runtime/arch/common/decoder_architecture.h: an Architecture made of the shared decoder pieces
// (ReadDecoderConfig, DeclareDecoderWeights, BuildDecoderPlan) and a family's rules. The
// llama-like families are one instance each; a family that needs more (Gemma 3's per-layer RoPE
// bases and windows) derives from it and overrides ReadConfig.
#ifndef KESTREL_RUNTIME_ARCH_COMMON_DECODER_ARCHITECTURE_H_
#define KESTREL_RUNTIME_ARCH_COMMON_DECODER_ARCHITECTURE_H_

#include <string>

#include "runtime/arch/architecture.h"
#include "runtime/arch/common/decoder_weights.h"
#include "runtime/arch/common/metadata.h"

namespace kestrel {
namespace runtime {

class DecoderArchitecture : public Architecture {
 public:
  DecoderArchitecture(std::string name, DecoderConfigRules config_rules,
                      DecoderWeightRules weight_rules)
      : name_(std::move(name)), config_rules_(config_rules), weight_rules_(weight_rules) {}

  absl::string_view name() const override { return name_; }
  absl::StatusOr<ModelConfig> ReadConfig(const GgufFile& file) const override;
  absl::Status DeclareWeights(const ModelConfig& config, WeightTableBuilder& builder) const override;
  absl::StatusOr<ExecutionPlan> BuildPlan(const ModelConfig& config, const WeightTable& weights,
                                          const PlanOptions& options) const override;

 private:
  std::string name_;
  DecoderConfigRules config_rules_;
  DecoderWeightRules weight_rules_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_COMMON_DECODER_ARCHITECTURE_H_
