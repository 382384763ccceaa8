#include "runtime/arch/phi3/phi3_architecture.h"

#include "runtime/arch/common/decoder_architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& Phi3Architecture() {
  static const DecoderArchitecture kPhi3 = [] {
    DecoderConfigRules config;
    config.rope_style = KESTREL_ROPE_STYLE_NEOX;
    DecoderWeightRules weights;
    weights.fused_qkv = true;      // attn_qkv [QD + 2 KVD, D] (separate Q/K/V also accepted)
    weights.fused_gate_up = true;  // ffn_up [2F, D]: gate rows, then up rows
    return DecoderArchitecture("phi3", config, weights);
  }();
  return kPhi3;
}

}  // namespace runtime
}  // namespace kestrel
