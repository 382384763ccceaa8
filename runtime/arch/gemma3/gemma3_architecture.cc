#include "runtime/arch/gemma3/gemma3_architecture.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_format.h"
#include "runtime/arch/common/decoder_architecture.h"
#include "runtime/arch/common/metadata.h"

namespace kestrel {
namespace runtime {
namespace {

// Gemma 3 interleaves 5 local (sliding-window) layers with 1 global layer unless the file says
// otherwise (llama.cpp's default pattern for gemma3).
constexpr uint32_t kDefaultSwaPattern = 6;
// Local layers' RoPE base when <arch>.rope.freq_base_swa is absent (Gemma 3's rope_local_base_freq).
constexpr float kDefaultLocalRopeBase = 10000.0f;
constexpr uint32_t kGemma3_27bLayers = 62;

// Which layers are local: <arch>.attention.sliding_window_pattern is either a period n (layer l
// is local unless l % n == n - 1; n = 0 makes every layer local) or one flag per layer.
absl::StatusOr<std::vector<bool>> LocalLayers(const GgufFile& f, const Metadata& m,
                                              uint32_t n_layers) {
  std::vector<bool> local(n_layers, false);
  const std::string key = m.Key("attention.sliding_window_pattern");
  const GgufValue* v = f.Find(key);
  if (v != nullptr && f.GetU32(key).ok()) {
    const uint32_t n = *f.GetU32(key);
    for (uint32_t l = 0; l < n_layers; ++l) local[l] = n == 0 || l % n < n - 1;
    return local;
  }
  if (v != nullptr) {
    absl::StatusOr<std::vector<int32_t>> flags = f.GetI32Array(key);
    if (!flags.ok() || flags->size() != n_layers) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "metadata '%s' is neither a period nor one flag per layer (%u layers)", key, n_layers));
    }
    for (uint32_t l = 0; l < n_layers; ++l) local[l] = (*flags)[l] != 0;
    return local;
  }
  for (uint32_t l = 0; l < n_layers; ++l) {
    local[l] = l % kDefaultSwaPattern < kDefaultSwaPattern - 1;
  }
  return local;
}

// The shared decoder with Gemma 3's config on top: the decoder plan reads the embedding scale,
// GeGLU and each layer's window and RoPE base from the config.
class Gemma3 final : public DecoderArchitecture {
 public:
  Gemma3() : DecoderArchitecture("gemma3", ConfigRules(), WeightRules()) {}

  absl::StatusOr<ModelConfig> ReadConfig(const GgufFile& file) const override {
    absl::StatusOr<ModelConfig> c = DecoderArchitecture::ReadConfig(file);
    if (!c.ok()) return c.status();
    const Metadata m(file, c->architecture + ".");
    float softcap = 0.0f;
    KESTREL_RETURN_IF_ERROR(m.F32("final_logit_softcapping", &softcap, 0.0f));
    if (softcap != 0.0f) {
      return absl::UnimplementedError(absl::StrFormat(
          "metadata '%s' = %g: final logit soft-capping is not supported",
          m.Key("final_logit_softcapping"), softcap));
    }
    // The embeddings are multiplied by sqrt(n_embd) (in float, as llama.cpp's ggml_scale).
    c->embedding_scale = std::sqrt(static_cast<float>(c->n_embd));
    c->ffn_activation = FfnActivation::kGeGlu;
    // Q is scaled by query_pre_attn_scalar^-1/2: head_dim for every size but the 27B, whose
    // scalar is n_embd / n_heads (gemma_pytorch's config, as llama.cpp reads it). A file may
    // state the scale itself.
    const float pre_attn = c->n_layers == kGemma3_27bLayers
                               ? static_cast<float>(c->n_embd / c->n_heads)
                               : static_cast<float>(c->head_dim);
    KESTREL_RETURN_IF_ERROR(m.F32("attention.scale", &c->attention_scale, 1.0f / std::sqrt(pre_attn)));
    KESTREL_RETURN_IF_ERROR(m.Positive("attention.scale", c->attention_scale));
    uint32_t window = 0;
    KESTREL_RETURN_IF_ERROR(m.U32("attention.sliding_window", &window, 0));
    if (window == 0) return c;  // no local layers: every layer global
    absl::StatusOr<std::vector<bool>> local = LocalLayers(file, m, c->n_layers);
    if (!local.ok()) return local.status();
    float local_base = kDefaultLocalRopeBase;
    KESTREL_RETURN_IF_ERROR(m.F32("rope.freq_base_swa", &local_base, kDefaultLocalRopeBase));
    KESTREL_RETURN_IF_ERROR(m.Positive("rope.freq_base_swa", local_base));
    for (uint32_t l = 0; l < c->n_layers; ++l) {
      if (!(*local)[l]) continue;  // global: the file's base and scale (ReadDecoderConfig)
      c->layers[l].sliding_window = window;
      c->layers[l].rope_freq_base = local_base;
      c->layers[l].rope_freq_scale = 1.0f;  // RoPE scaling applies to the global layers only
    }
    return c;
  }

 private:
  static DecoderConfigRules ConfigRules() {
    DecoderConfigRules rules;
    rules.rope_style = KESTREL_ROPE_STYLE_NEOX;
    return rules;
  }
  static DecoderWeightRules WeightRules() {
    DecoderWeightRules rules;
    rules.qk_norm = true;     // attn_q_norm / attn_k_norm [head_dim]
    rules.post_norms = true;  // post_attention_norm / post_ffw_norm [n_embd]
    return rules;
  }
};

}  // namespace

const Architecture& Gemma3Architecture() {
  static const Gemma3 kGemma3;
  return kGemma3;
}

}  // namespace runtime
}  // namespace kestrel
