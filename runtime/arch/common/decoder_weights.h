// runtime/arch/common/decoder_weights.h: the weight table of a llama-like decoder, with the
// variations the families differ in, so each architecture only states its rules.
#ifndef KESTREL_RUNTIME_ARCH_COMMON_DECODER_WEIGHTS_H_
#define KESTREL_RUNTIME_ARCH_COMMON_DECODER_WEIGHTS_H_

#include "absl/status/status.h"
#include "runtime/arch/model_config.h"
#include "runtime/arch/weight_table.h"

namespace kestrel {
namespace runtime {

struct DecoderWeightRules {
  bool qkv_bias = false;       // blk.N.attn_{q,k,v}.bias required (qwen2); optional otherwise
  bool qk_norm = false;        // blk.N.attn_{q,k}_norm.weight [head_dim] required (qwen3)
  bool fused_qkv = false;      // blk.N.attn_qkv.weight [QD + 2 KVD, D] accepted (phi3)
  bool fused_gate_up = false;  // blk.N.ffn_up.weight [2 F, D] = gate rows then up rows (phi3)
  bool post_norms = false;     // blk.N.post_attention_norm / post_ffw_norm required (gemma)
};

// Declares token_embd [V, D], output_norm [D], output [V, D] (absent: tied to token_embd), the
// optional RoPE factor vectors (rope_freqs, rope_factors_short, rope_factors_long, each
// [rope_dim / 2]) and per layer attn_norm, Q/K/V (separate or a fused attn_qkv split by rows),
// attn_output, ffn_norm and the FFN: gate/up/down (or a fused gate+up split by rows), or for
// n_experts > 0 the router and stacked experts (Mixtral layout).
absl::Status DeclareDecoderWeights(const ModelConfig& config, const DecoderWeightRules& rules,
                                   WeightTableBuilder& builder);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_COMMON_DECODER_WEIGHTS_H_
