#include "runtime/model/llama_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {
namespace {

// Optional key: the default when absent, the parse error when present but wrong.
absl::StatusOr<uint32_t> OptionalU32(const GgufFile& f, const std::string& key, uint32_t fallback) {
  if (f.Find(key) == nullptr) return fallback;
  return f.GetU32(key);
}

absl::StatusOr<float> OptionalF32(const GgufFile& f, const std::string& key, float fallback) {
  if (f.Find(key) == nullptr) return fallback;
  return f.GetF32(key);
}

absl::Status Positive(const std::string& key, uint32_t v, uint32_t max) {
  if (v == 0 || v > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metadata '%s' = %u is out of range [1, %u]", key, v, max));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LlamaConfig> ReadLlamaConfig(const GgufFile& f) {
  LlamaConfig c;
  absl::StatusOr<std::string> arch = f.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  c.architecture = *arch;
  if (c.architecture != "llama") {
    return absl::UnimplementedError(absl::StrCat("architecture '", c.architecture,
                                                 "' is not supported (supported: llama)"));
  }
  if (f.Find("general.name") != nullptr) {
    absl::StatusOr<std::string> name = f.GetString("general.name");
    if (name.ok()) c.name = *name;
  }
  const std::string p = c.architecture + ".";
#define KESTREL_ASSIGN(lhs, expr)       \
  do {                                  \
    auto _v = (expr);                   \
    if (!_v.ok()) return _v.status();   \
    lhs = *_v;                          \
  } while (0)
  KESTREL_ASSIGN(c.n_layers, f.GetU32(p + "block_count"));
  KESTREL_ASSIGN(c.n_embd, f.GetU32(p + "embedding_length"));
  KESTREL_ASSIGN(c.n_heads, f.GetU32(p + "attention.head_count"));
  KESTREL_ASSIGN(c.n_kv_heads, OptionalU32(f, p + "attention.head_count_kv", c.n_heads));
  KESTREL_ASSIGN(c.n_ff, f.GetU32(p + "feed_forward_length"));
  KESTREL_ASSIGN(c.context_length, f.GetU32(p + "context_length"));
  KESTREL_ASSIGN(c.rms_eps, f.GetF32(p + "attention.layer_norm_rms_epsilon"));
  KESTREL_ASSIGN(c.rope_freq_base, OptionalF32(f, p + "rope.freq_base", 10000.0f));
  KESTREL_ASSIGN(c.n_experts, OptionalU32(f, p + "expert_count", 0));
  KESTREL_ASSIGN(c.n_experts_used, OptionalU32(f, p + "expert_used_count", 0));

  constexpr uint32_t kMaxLayers = 4096, kMaxDim = 1u << 20, kMaxHeads = 4096, kMaxCtx = 1u << 24;
  if (auto s = Positive(p + "block_count", c.n_layers, kMaxLayers); !s.ok()) return s;
  if (auto s = Positive(p + "embedding_length", c.n_embd, kMaxDim); !s.ok()) return s;
  if (auto s = Positive(p + "attention.head_count", c.n_heads, kMaxHeads); !s.ok()) return s;
  if (auto s = Positive(p + "attention.head_count_kv", c.n_kv_heads, kMaxHeads); !s.ok()) return s;
  if (auto s = Positive(p + "feed_forward_length", c.n_ff, kMaxDim * 8); !s.ok()) return s;
  if (auto s = Positive(p + "context_length", c.context_length, kMaxCtx); !s.ok()) return s;
  if (c.n_embd % c.n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%sembedding_length' = %u is not divisible by '%sattention.head_count' = %u", p,
        c.n_embd, p, c.n_heads));
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%sattention.head_count' = %u is not a multiple of "
        "'%sattention.head_count_kv' = %u",
        p, c.n_heads, p, c.n_kv_heads));
  }
  c.head_dim = c.n_embd / c.n_heads;
  KESTREL_ASSIGN(c.rope_dim, OptionalU32(f, p + "rope.dimension_count", c.head_dim));
#undef KESTREL_ASSIGN
  if (c.rope_dim == 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%srope.dimension_count' = %u must be even and in [2, head_dim %u]", p,
        c.rope_dim, c.head_dim));
  }
  if (!(c.rms_eps > 0.0f) || !std::isfinite(c.rms_eps)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%sattention.layer_norm_rms_epsilon' = %g must be > 0", p, c.rms_eps));
  }
  if (!(c.rope_freq_base > 0.0f) || !std::isfinite(c.rope_freq_base)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metadata '%srope.freq_base' = %g must be > 0", p, c.rope_freq_base));
  }
  // Mixture of experts (Mixtral-style): llama.cpp's rules, expert_used_count in [1, expert_count]
  // when there are experts and absent (or 0) otherwise.
  constexpr uint32_t kMaxExperts = 4096;
  if (c.n_experts > kMaxExperts) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%sexpert_count' = %u is out of range [0, %u]", p, c.n_experts, kMaxExperts));
  }
  if (c.n_experts > 0 && (c.n_experts_used == 0 || c.n_experts_used > c.n_experts)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%sexpert_used_count' = %u is out of range [1, '%sexpert_count' = %u]", p,
        c.n_experts_used, p, c.n_experts));
  }
  if (c.n_experts == 0 && c.n_experts_used != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%sexpert_used_count' = %u but the model has no experts ('%sexpert_count' "
        "is 0 or absent)",
        p, c.n_experts_used, p));
  }
  return c;
}

}  // namespace runtime
}  // namespace kestrel
