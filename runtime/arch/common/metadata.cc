#include "runtime/arch/common/metadata.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {

absl::Status Metadata::U32(const std::string& key, uint32_t* out) const {
  absl::StatusOr<uint32_t> v = f_.GetU32(Key(key));
  if (!v.ok()) return v.status();
  *out = *v;
  return absl::OkStatus();
}

absl::Status Metadata::U32(const std::string& key, uint32_t* out, uint32_t fallback) const {
  if (!Has(key)) {
    *out = fallback;
    return absl::OkStatus();
  }
  return U32(key, out);
}

absl::Status Metadata::F32(const std::string& key, float* out) const {
  absl::StatusOr<float> v = f_.GetF32(Key(key));
  if (!v.ok()) return v.status();
  *out = *v;
  return absl::OkStatus();
}

absl::Status Metadata::F32(const std::string& key, float* out, float fallback) const {
  if (!Has(key)) {
    *out = fallback;
    return absl::OkStatus();
  }
  return F32(key, out);
}

absl::Status Metadata::String(const std::string& key, std::string* out,
                              const std::string& fallback) const {
  if (!Has(key)) {
    *out = fallback;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> v = f_.GetString(Key(key));
  if (!v.ok()) return v.status();
  *out = *v;
  return absl::OkStatus();
}

absl::Status Metadata::InRange(const std::string& key, uint32_t v, uint32_t lo, uint32_t hi) const {
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metadata '%s' = %u is out of range [%u, %u]", Key(key), v, lo, hi));
  }
  return absl::OkStatus();
}

absl::Status Metadata::Positive(const std::string& key, float v) const {
  if (!(v > 0.0f) || !std::isfinite(v)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metadata '%s' = %g must be finite and > 0", Key(key), v));
  }
  return absl::OkStatus();
}

namespace {

constexpr uint32_t kMaxLayers = 4096, kMaxDim = 1u << 20, kMaxHeads = 4096, kMaxCtx = 1u << 24,
                   kMaxHeadDim = 4096, kMaxExperts = 4096, kMaxVocab = 1u << 24;

void ReadNames(const GgufFile& f, ModelConfig* c) {
  if (f.Find("general.name") != nullptr) {
    absl::StatusOr<std::string> name = f.GetString("general.name");
    if (name.ok()) c->name = *name;
  }
}

// tokenizer.ggml.tokens' length, else <arch>.vocab_size; 0 if neither is readable.
uint32_t VocabSize(const GgufFile& f, const Metadata& m) {
  if (f.Find("tokenizer.ggml.tokens") != nullptr) {
    absl::StatusOr<absl::Span<const std::string>> tokens = f.GetStringArray("tokenizer.ggml.tokens");
    if (tokens.ok()) return static_cast<uint32_t>(tokens->size());
  }
  uint32_t v = 0;
  if (m.Has("vocab_size") && m.U32("vocab_size", &v).ok()) return v;
  return 0;
}

// RoPE scaling: linear (a frequency scale) and the factor tensors (llama3, longrope) run; YaRN
// does not yet.
absl::Status ReadRopeScaling(const Metadata& m, ModelConfig* c) {
  std::string type;
  KESTREL_RETURN_IF_ERROR(m.String("rope.scaling.type", &type, ""));
  if (!type.empty() && type != "none" && type != "linear" && type != "longrope" &&
      type != "llama3") {
    return absl::UnimplementedError(absl::StrCat("metadata '", m.Key("rope.scaling.type"), "' = '",
                                                 type,
                                                 "' is not supported (supported: none, linear, "
                                                 "llama3, longrope)"));
  }
  float factor = 0.0f;
  const char* factor_key = m.Has("rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear";
  KESTREL_RETURN_IF_ERROR(m.F32(factor_key, &factor, 0.0f));
  if (factor != 0.0f) KESTREL_RETURN_IF_ERROR(m.Positive(factor_key, factor));
  // llama.cpp applies the factor only as a linear scale; "none" ignores it.
  c->rope_freq_scale = (factor == 0.0f || type == "none") ? 1.0f : 1.0f / factor;
  KESTREL_RETURN_IF_ERROR(m.F32("rope.scaling.attn_factor", &c->rope_attn_factor, 1.0f));
  KESTREL_RETURN_IF_ERROR(m.Positive("rope.scaling.attn_factor", c->rope_attn_factor));
  KESTREL_RETURN_IF_ERROR(
      m.U32("rope.scaling.original_context_length", &c->rope_original_context, 0));
  return absl::OkStatus();
}

absl::Status ReadExperts(const Metadata& m, const DecoderConfigRules& rules, ModelConfig* c) {
  KESTREL_RETURN_IF_ERROR(m.U32("expert_count", &c->n_experts, 0));
  KESTREL_RETURN_IF_ERROR(m.U32("expert_used_count", &c->n_experts_used, 0));
  if (c->n_experts > 0 && !rules.allow_experts) {
    return absl::UnimplementedError(absl::StrFormat(
        "metadata '%s' = %u: mixture-of-experts %s models are not supported", m.Key("expert_count"),
        c->n_experts, c->architecture));
  }
  // llama.cpp's rules: expert_used_count in [1, expert_count] when there are experts, absent (or
  // 0) otherwise.
  KESTREL_RETURN_IF_ERROR(m.InRange("expert_count", c->n_experts, 0, kMaxExperts));
  if (c->n_experts > 0 && (c->n_experts_used == 0 || c->n_experts_used > c->n_experts)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%s' = %u is out of range [1, '%s' = %u]", m.Key("expert_used_count"),
        c->n_experts_used, m.Key("expert_count"), c->n_experts));
  }
  if (c->n_experts == 0 && c->n_experts_used != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%s' = %u but the model has no experts ('%s' is 0 or absent)",
        m.Key("expert_used_count"), c->n_experts_used, m.Key("expert_count")));
  }
  return absl::OkStatus();
}

// Head dim: attention.key_length when given (it may differ from n_embd / n_heads), else the
// quotient, which must then be exact.
absl::Status ReadHeadDim(const Metadata& m, ModelConfig* c) {
  if (m.Has("attention.key_length")) {
    KESTREL_RETURN_IF_ERROR(m.U32("attention.key_length", &c->head_dim));
    KESTREL_RETURN_IF_ERROR(m.InRange("attention.key_length", c->head_dim, 1, kMaxHeadDim));
  } else {
    if (c->n_embd % c->n_heads != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "metadata '%s' = %u is not divisible by '%s' = %u", m.Key("embedding_length"),
          c->n_embd, m.Key("attention.head_count"), c->n_heads));
    }
    c->head_dim = c->n_embd / c->n_heads;
  }
  uint32_t value_length = 0;
  KESTREL_RETURN_IF_ERROR(m.U32("attention.value_length", &value_length, c->head_dim));
  if (value_length != c->head_dim) {
    return absl::UnimplementedError(absl::StrFormat(
        "metadata '%s' = %u differs from the key head dim %u (not supported)",
        m.Key("attention.value_length"), value_length, c->head_dim));
  }
  KESTREL_RETURN_IF_ERROR(m.U32("rope.dimension_count", &c->rope_dim, c->head_dim));
  if (c->rope_dim == 0 || c->rope_dim > c->head_dim || c->rope_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metadata '%s' = %u must be even and in [2, head_dim %u]",
                        m.Key("rope.dimension_count"), c->rope_dim, c->head_dim));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ReadDecoderConfig(const GgufFile& f, const DecoderConfigRules& rules) {
  ModelConfig c;
  absl::StatusOr<std::string> arch = f.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  c.architecture = *arch;
  ReadNames(f, &c);
  const Metadata m(f, c.architecture + ".");
  KESTREL_RETURN_IF_ERROR(m.U32("block_count", &c.n_layers));
  KESTREL_RETURN_IF_ERROR(m.U32("embedding_length", &c.n_embd));
  KESTREL_RETURN_IF_ERROR(m.U32("attention.head_count", &c.n_heads));
  KESTREL_RETURN_IF_ERROR(m.U32("attention.head_count_kv", &c.n_kv_heads, c.n_heads));
  KESTREL_RETURN_IF_ERROR(m.U32("feed_forward_length", &c.n_ff));
  KESTREL_RETURN_IF_ERROR(m.U32("context_length", &c.context_length));
  KESTREL_RETURN_IF_ERROR(m.F32("attention.layer_norm_rms_epsilon", &c.rms_eps));
  KESTREL_RETURN_IF_ERROR(m.F32("rope.freq_base", &c.rope_freq_base, 10000.0f));
  KESTREL_RETURN_IF_ERROR(m.InRange("block_count", c.n_layers, 1, kMaxLayers));
  KESTREL_RETURN_IF_ERROR(m.InRange("embedding_length", c.n_embd, 1, kMaxDim));
  KESTREL_RETURN_IF_ERROR(m.InRange("attention.head_count", c.n_heads, 1, kMaxHeads));
  KESTREL_RETURN_IF_ERROR(m.InRange("attention.head_count_kv", c.n_kv_heads, 1, kMaxHeads));
  KESTREL_RETURN_IF_ERROR(m.InRange("feed_forward_length", c.n_ff, 1, kMaxDim * 8));
  KESTREL_RETURN_IF_ERROR(m.InRange("context_length", c.context_length, 1, kMaxCtx));
  if (c.n_heads % c.n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "metadata '%s' = %u is not a multiple of '%s' = %u", m.Key("attention.head_count"),
        c.n_heads, m.Key("attention.head_count_kv"), c.n_kv_heads));
  }
  KESTREL_RETURN_IF_ERROR(ReadHeadDim(m, &c));
  if (!(c.rms_eps > 0.0f) || !std::isfinite(c.rms_eps)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metadata '%s' = %g must be > 0", m.Key("attention.layer_norm_rms_epsilon"),
                        c.rms_eps));
  }
  KESTREL_RETURN_IF_ERROR(m.Positive("rope.freq_base", c.rope_freq_base));
  KESTREL_RETURN_IF_ERROR(ReadRopeScaling(m, &c));
  KESTREL_RETURN_IF_ERROR(ReadExperts(m, rules, &c));
  c.rope_style = rules.rope_style;
  c.n_vocab = VocabSize(f, m);
  if (c.n_vocab == 0 || c.n_vocab > kMaxVocab) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the vocab size (metadata 'tokenizer.ggml.tokens' or '%s') = %u is out of range [1, %u]",
        m.Key("vocab_size"), c.n_vocab, kMaxVocab));
  }
  LayerConfig layer;
  layer.rope_freq_base = c.rope_freq_base;
  layer.rope_freq_scale = c.rope_freq_scale;
  c.layers.assign(c.n_layers, layer);
  return c;
}

ModelConfig ReadConfigBestEffort(const GgufFile& f) {
  ModelConfig c;
  absl::StatusOr<std::string> arch = f.GetString("general.architecture");
  if (arch.ok()) c.architecture = *arch;
  ReadNames(f, &c);
  const Metadata m(f, c.architecture + ".");
  // Each read leaves its field unchanged (the default) on failure.
  auto u32 = [&](const char* key, uint32_t* out) { (void)m.U32(key, out, *out); };
  auto f32 = [&](const char* key, float* out) { (void)m.F32(key, out, *out); };
  u32("block_count", &c.n_layers);
  u32("embedding_length", &c.n_embd);
  u32("attention.head_count", &c.n_heads);
  c.n_kv_heads = c.n_heads;
  u32("attention.head_count_kv", &c.n_kv_heads);
  u32("feed_forward_length", &c.n_ff);
  u32("context_length", &c.context_length);
  f32("attention.layer_norm_rms_epsilon", &c.rms_eps);
  f32("rope.freq_base", &c.rope_freq_base);
  u32("expert_count", &c.n_experts);
  u32("expert_used_count", &c.n_experts_used);
  if (c.n_heads != 0) c.head_dim = c.n_embd / c.n_heads;
  u32("attention.key_length", &c.head_dim);
  c.rope_dim = c.head_dim;
  u32("rope.dimension_count", &c.rope_dim);
  c.n_vocab = VocabSize(f, m);
  return c;
}

}  // namespace runtime
}  // namespace kestrel
