// runtime/model/llama_config.h: the hyperparameters of a llama-architecture model, read from GGUF
// metadata with the defaults llama.cpp applies (RoPE base 10000, KV heads = heads, rope dims =
// head dim). Errors name the metadata key and its value.
#ifndef KESTREL_RUNTIME_MODEL_LLAMA_CONFIG_H_
#define KESTREL_RUNTIME_MODEL_LLAMA_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_file.h"

namespace kestrel {
namespace runtime {

struct LlamaConfig {
  std::string architecture;  // "llama"
  std::string name;          // general.name, "" if absent
  uint32_t n_layers = 0;
  uint32_t n_embd = 0;
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t n_ff = 0;
  uint32_t context_length = 0;
  uint32_t n_vocab = 0;
  uint32_t rope_dim = 0;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;
  float rms_eps = 1e-5f;
  // Mixture of experts (llama.expert_count / expert_used_count): 0 experts means a dense FFN.
  // For MoE models n_ff is the FFN width of one expert.
  uint32_t n_experts = 0;
  uint32_t n_experts_used = 0;  // experts per token, in [1, n_experts] for MoE models
};

// Reads and checks the config. UNIMPLEMENTED for another architecture; INVALID_ARGUMENT /
// NOT_FOUND naming the key otherwise.
absl::StatusOr<LlamaConfig> ReadLlamaConfig(const GgufFile& file);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_MODEL_LLAMA_CONFIG_H_
