// runtime/arch/model_config.h: the hyperparameters of a decoder-only transformer, the superset the
// supported families use. An Architecture fills it from GGUF metadata (ReadConfig); the model,
// sessions and the C API read it. Fields a family does not have keep their neutral defaults.
#ifndef KESTREL_RUNTIME_ARCH_MODEL_CONFIG_H_
#define KESTREL_RUNTIME_ARCH_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "hal/include/kestrel/plugin_api.h"

namespace kestrel {
namespace runtime {

// What can differ between the layers of one model (Gemma 3 alternates local and global layers).
struct LayerConfig {
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;
  // Attention window in tokens, 0: the whole context. Not runnable yet: plan building returns
  // UNIMPLEMENTED for a nonzero window until the attention op takes one.
  uint32_t sliding_window = 0;
};

// The FFN's gated activation.
enum class FfnActivation : uint8_t {
  kSwiGlu,  // down(silu(gate x) * up x): llama, qwen2, qwen3, phi3
  kGeGlu,   // down(gelu(gate x) * up x): gemma (no op for it yet)
};

struct ModelConfig {
  std::string architecture;  // general.architecture: "llama", "qwen2", ...
  std::string name;          // general.name, "" if absent
  uint32_t n_layers = 0;
  uint32_t n_embd = 0;
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;
  // Per-head width of Q and K (= V here). n_embd / n_heads unless the file says otherwise
  // (<arch>.attention.key_length: Qwen3, Gemma), so Q is n_heads * head_dim wide, not n_embd.
  uint32_t head_dim = 0;
  uint32_t n_ff = 0;
  uint32_t context_length = 0;
  uint32_t n_vocab = 0;
  uint32_t rope_dim = 0;
  uint32_t rope_style = KESTREL_ROPE_STYLE_NORM;  // NEOX for qwen2, qwen3, phi3, gemma
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;
  // Scales RoPE's cos/sin (llama.cpp's attn_factor, <arch>.rope.scaling.attn_factor; Phi-3.5
  // long-context files set it). Applied to Q and K alike, so the plan folds it into the
  // attention scale as attn_factor^2.
  float rope_attn_factor = 1.0f;
  // Context the RoPE factors were trained for (<arch>.rope.scaling.original_context_length);
  // Phi-3 picks rope_factors_short up to it and rope_factors_long beyond. 0: not given.
  uint32_t rope_original_context = 0;
  float rms_eps = 1e-5f;
  // Attention score scale; 0 means 1/sqrt(head_dim).
  float attention_scale = 0.0f;
  // Multiplies the token embeddings (Gemma: sqrt(n_embd)). Only 1 is runnable today.
  float embedding_scale = 1.0f;
  FfnActivation ffn_activation = FfnActivation::kSwiGlu;
  // Mixture of experts (<arch>.expert_count / expert_used_count): 0 experts means a dense FFN.
  // For MoE models n_ff is the FFN width of one expert.
  uint32_t n_experts = 0;
  uint32_t n_experts_used = 0;
  // One entry per layer (n_layers of them).
  std::vector<LayerConfig> layers;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_MODEL_CONFIG_H_
