// runtime/arch/common/metadata.h: reading `<arch>.*` GGUF keys with defaults, and the
// hyperparameters every llama-like family shares (ReadDecoderConfig), so an architecture states
// only what differs. Errors name the full key and its value.
#ifndef KESTREL_RUNTIME_ARCH_COMMON_METADATA_H_
#define KESTREL_RUNTIME_ARCH_COMMON_METADATA_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/arch/model_config.h"
#include "runtime/gguf/gguf_file.h"

namespace kestrel {
namespace runtime {

// Propagates a non-OK absl::Status (arch/ and model/ code).
#define KESTREL_RETURN_IF_ERROR(expr)            \
  do {                                           \
    const absl::Status _kestrel_st = (expr);     \
    if (!_kestrel_st.ok()) return _kestrel_st;   \
  } while (0)

// Keys under one prefix ("llama."): required ones fail NOT_FOUND / INVALID_ARGUMENT naming the
// key; optional ones keep the default when absent and fail when present but malformed.
class Metadata {
 public:
  Metadata(const GgufFile& file, std::string prefix) : f_(file), prefix_(std::move(prefix)) {}

  std::string Key(const std::string& key) const { return prefix_ + key; }
  bool Has(const std::string& key) const { return f_.Find(Key(key)) != nullptr; }

  absl::Status U32(const std::string& key, uint32_t* out) const;
  absl::Status U32(const std::string& key, uint32_t* out, uint32_t fallback) const;
  absl::Status F32(const std::string& key, float* out) const;
  absl::Status F32(const std::string& key, float* out, float fallback) const;
  absl::Status String(const std::string& key, std::string* out, const std::string& fallback) const;

  // INVALID_ARGUMENT "metadata '<key>' = v is out of range [lo, hi]" unless lo <= v <= hi.
  absl::Status InRange(const std::string& key, uint32_t v, uint32_t lo, uint32_t hi) const;
  // INVALID_ARGUMENT unless v is finite and > 0.
  absl::Status Positive(const std::string& key, float v) const;

 private:
  const GgufFile& f_;
  std::string prefix_;
};

// What a family fixes that the file does not say.
struct DecoderConfigRules {
  uint32_t rope_style = KESTREL_ROPE_STYLE_NORM;
  bool allow_experts = false;  // <arch>.expert_count accepted (llama: Mixtral)
};

// The llama-like hyperparameters under "<general.architecture>.": block_count,
// embedding_length, attention.head_count(_kv), attention.key_length / value_length (head dim),
// feed_forward_length, context_length, attention.layer_norm_rms_epsilon, rope.dimension_count,
// rope.freq_base, rope.scaling.{type, factor, attn_factor, original_context_length},
// expert_count / expert_used_count, and the vocab size (tokenizer.ggml.tokens, else
// <arch>.vocab_size). Every value is range-checked.
absl::StatusOr<ModelConfig> ReadDecoderConfig(const GgufFile& file, const DecoderConfigRules& rules);

// For `kestrel info` on a file this build cannot run: the same keys, each read if present and
// readable, nothing checked or required. Never fails.
ModelConfig ReadConfigBestEffort(const GgufFile& file);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_COMMON_METADATA_H_
