#include "runtime/arch/llama/llama_architecture.h"

#include "runtime/arch/common/decoder_architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& LlamaArchitecture() {
  static const DecoderArchitecture kLlama = [] {
    DecoderConfigRules config;
    config.rope_style = KESTREL_ROPE_STYLE_NORM;
    config.allow_experts = true;  // Mixtral is a llama GGUF
    return DecoderArchitecture("llama", config, DecoderWeightRules{});
  }();
  return kLlama;
}

}  // namespace runtime
}  // namespace kestrel
