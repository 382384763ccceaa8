#include "runtime/arch/qwen2/qwen2_architecture.h"

#include "runtime/arch/common/decoder_architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& Qwen2Architecture() {
  static const DecoderArchitecture kQwen2 = [] {
    DecoderConfigRules config;
    config.rope_style = KESTREL_ROPE_STYLE_NEOX;
    DecoderWeightRules weights;
    weights.qkv_bias = true;  // Q/K/V projections carry biases
    return DecoderArchitecture("qwen2", config, weights);
  }();
  return kQwen2;
}

}  // namespace runtime
}  // namespace kestrel
