#include "runtime/arch/qwen3/qwen3_architecture.h"

#include "runtime/arch/common/decoder_architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& Qwen3Architecture() {
  static const DecoderArchitecture kQwen3 = [] {
    DecoderConfigRules config;
    config.rope_style = KESTREL_ROPE_STYLE_NEOX;
    DecoderWeightRules weights;
    weights.qk_norm = true;  // attn_q_norm / attn_k_norm, [head_dim] each
    return DecoderArchitecture("qwen3", config, weights);
  }();
  return kQwen3;
}

}  // namespace runtime
}  // namespace kestrel
