#include "tools/synth/synth_shape.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/synth/quantize_kquants.h"

namespace kestrel::synth {

using runtime::GgmlType;

namespace {

ModelShape Make(const char* name, uint32_t dim, uint32_t layers, uint32_t heads,
                uint32_t kv_heads, uint32_t ffn, uint32_t vocab, uint32_t experts,
                uint32_t experts_used) {
  ModelShape s;
  s.name = name;
  s.dim = dim;
  s.layers = layers;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.ffn = ffn;
  s.vocab = vocab;
  s.experts = experts;
  s.experts_used = experts_used;
  s.context = 2048;
  return s;
}

// The *-tiny test shapes: 2 layers, dim 64, 4 heads (2 KV heads), ffn 96, 512 tokens, random
// norms, so every variation of the architecture changes the logits.
ModelShape Tiny(const char* name, const char* arch) {
  ModelShape s = Make(name, 64, 2, 4, 2, 96, 512, 0, 0);
  s.context = 128;
  s.arch = arch;
  s.random_norms = true;
  return s;
}

std::vector<ModelShape> Presets() {
  ModelShape llama3 = Tiny("llama3-tiny", "llama");
  llama3.rope_freqs = true;
  llama3.rope_base = 500000.0f;
  ModelShape qwen2 = Tiny("qwen2-tiny", "qwen2");
  qwen2.qkv_bias = true;
  qwen2.rope_base = 1000000.0f;
  ModelShape qwen3 = Tiny("qwen3-tiny", "qwen3");
  qwen3.qk_norm = true;
  qwen3.key_length = 32;  // Q is 4 x 32 = 128 wide while the model is 64 wide
  ModelShape phi3 = Tiny("phi3-tiny", "phi3");
  phi3.fused = true;
  phi3.original_context = 64;
  phi3.rope_attn_factor = 1.19f;
  // Gemma 3 in small: MQA with head dim 32 (Q 128 wide in a 64-wide model), a window of 8 on
  // layers 0 and 1 (pattern 3: layer 2 global) so a short test crosses it, tied output.
  ModelShape gemma3 = Tiny("gemma3-tiny", "gemma3");
  gemma3.layers = 3;
  gemma3.kv_heads = 1;
  gemma3.key_length = 32;
  gemma3.qk_norm = true;
  gemma3.post_norms = true;
  gemma3.tied_output = true;
  gemma3.rope_base = 1000000.0f;
  gemma3.sliding_window = 8;
  gemma3.swa_pattern = 3;
  return {
      Make("tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 0, 0),
      Make("llama-8b", 4096, 32, 32, 8, 14336, 32000, 0, 0),
      Make("mixtral-small", 1024, 8, 16, 4, 2816, 32000, 8, 2),
      llama3, qwen2, qwen3, phi3, gemma3,
  };
}

absl::Status Bad(const char* field, uint64_t value, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("--", field, " ", value, ": ", why));
}

}  // namespace

absl::StatusOr<ModelShape> PresetShape(const std::string& name) {
  for (const ModelShape& s : Presets()) {
    if (s.name == name) return s;
  }
  return absl::NotFoundError(absl::StrCat("unknown shape '", name, "' (known: ",
                                          absl::StrJoin(PresetNames(), ", "), ", custom)"));
}

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const ModelShape& s : Presets()) names.push_back(s.name);
  return names;
}

absl::Status ValidateShape(const ModelShape& s, GgmlType type) {
  if (type != GgmlType::F16 && type != GgmlType::Q8_0 && type != GgmlType::Q4_0 &&
      type != GgmlType::F32 && !IsExtraQuantType(type)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--type ", runtime::GgmlTypeName(type),
        ": expected F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K or Q6_K"));
  }
  constexpr uint32_t kMax = 1u << 20;
  struct Field {
    const char* name;
    uint32_t value;
  };
  for (const Field& f : {Field{"dim", s.dim}, Field{"layers", s.layers}, Field{"heads", s.heads},
                         Field{"kv-heads", s.kv_heads}, Field{"ffn", s.ffn},
                         Field{"vocab", s.vocab}, Field{"ctx", s.context}}) {
    if (f.value == 0) return Bad(f.name, f.value, "must be at least 1");
    if (f.value > kMax) return Bad(f.name, f.value, absl::StrCat("must be at most ", kMax));
  }
  if (s.key_length == 0 && s.dim % s.heads != 0) {
    return Bad("dim", s.dim, absl::StrCat("is not divisible by --heads ", s.heads));
  }
  if (s.heads % s.kv_heads != 0) {
    return Bad("heads", s.heads, absl::StrCat("is not a multiple of --kv-heads ", s.kv_heads));
  }
  if (s.head_dim() % 2 != 0) {
    return Bad("dim", s.dim,
               absl::StrCat("gives an odd head_dim ", s.head_dim(), " (RoPE needs it even)"));
  }
  if (s.vocab < 259) {
    return Bad("vocab", s.vocab, "must be at least 259 (3 special + 256 byte tokens)");
  }
  if (s.experts > 256) return Bad("experts", s.experts, "must be at most 256");
  if (s.experts > 0 && (s.experts_used == 0 || s.experts_used > s.experts)) {
    return Bad("experts-used", s.experts_used,
               absl::StrCat("must be in [1, --experts ", s.experts, "]"));
  }
  if (s.experts == 0 && s.experts_used != 0) {
    return Bad("experts-used", s.experts_used, "needs --experts");
  }
  const runtime::GgmlTypeTraits t = runtime::GgmlTypeTraitsOf(type);
  if (s.dim % t.block_elems != 0) {
    return Bad("dim", s.dim, absl::StrCat("must be a multiple of ", t.block_elems, " for ", t.name));
  }
  if (s.ffn % t.block_elems != 0) {
    return Bad("ffn", s.ffn, absl::StrCat("must be a multiple of ", t.block_elems, " for ", t.name));
  }
  return absl::OkStatus();
}

uint64_t TensorSpec::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  return n;
}

GgmlType MixedType(TypeMix mix, GgmlType base, const std::string& name, uint32_t layer,
                   const ModelShape& s) {
  if (mix == TypeMix::kUniform) return base;
  const auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  const int64_t i = layer, n = s.layers;
  const bool more_bits = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
  if (name == "output.weight") return s.dim % 256 == 0 ? GgmlType::Q6_K : GgmlType::Q8_0;
  if (has("attn_v.weight")) {
    if (s.experts == 8) return GgmlType::Q8_0;
    return more_bits ? GgmlType::Q6_K : base;
  }
  if (has("attn_k.weight")) return s.experts == 8 ? GgmlType::Q8_0 : base;
  if (has("attn_output.weight")) {
    return s.experts == 8 && mix == TypeMix::kQ4_K_M ? GgmlType::Q5_K : base;
  }
  if (has("ffn_down")) return more_bits ? GgmlType::Q6_K : base;
  return base;
}

std::vector<TensorSpec> TensorPlan(const ModelShape& s, GgmlType type, TypeMix mix) {
  const uint64_t D = s.dim, F = s.ffn, V = s.vocab, E = s.experts, Dh = s.head_dim();
  const uint64_t QD = uint64_t{s.heads} * Dh;
  const uint64_t KVD = uint64_t{s.kv_heads} * Dh;
  auto std_for = [](uint64_t fan_in) { return static_cast<float>(1.0 / std::sqrt(double(fan_in))); };
  std::vector<TensorSpec> plan;
  uint32_t layer = 0;
  auto matrix = [&](std::string name, std::vector<uint64_t> dims, GgmlType t) {
    const float sd = std_for(dims[0]);
    if (t == type) t = MixedType(mix, type, name, layer, s);
    plan.push_back(TensorSpec{std::move(name), t, std::move(dims), Init::kNormal, sd});
  };
  auto norm = [&](std::string name, uint64_t n) {
    if (s.random_norms) {
      plan.push_back(TensorSpec{std::move(name), GgmlType::F32, {n}, Init::kAroundOne, 0.2f});
    } else {
      plan.push_back(TensorSpec{std::move(name), GgmlType::F32, {n}, Init::kOnes, 0.0f});
    }
  };
  auto vector = [&](std::string name, uint64_t n, Init init, float stddev) {
    plan.push_back(TensorSpec{std::move(name), GgmlType::F32, {n}, init, stddev});
  };
  plan.push_back(TensorSpec{"token_embd.weight", type, {D, V}, Init::kNormal, 1.0f});
  if (s.rope_freqs) vector("rope_freqs.weight", Dh / 2, Init::kAroundOne, 0.25f);
  if (s.original_context > 0) {
    vector("rope_factors_long.weight", Dh / 2, Init::kAroundOne, 0.25f);
    vector("rope_factors_short.weight", Dh / 2, Init::kAroundOne, 0.25f);
  }
  for (uint32_t l = 0; l < s.layers; ++l) {
    layer = l;
    const std::string b = absl::StrCat("blk.", l, ".");
    norm(b + "attn_norm.weight", D);
    if (s.fused) {
      matrix(b + "attn_qkv.weight", {D, QD + 2 * KVD}, type);
    } else {
      matrix(b + "attn_q.weight", {D, QD}, type);
      matrix(b + "attn_k.weight", {D, KVD}, type);
      matrix(b + "attn_v.weight", {D, KVD}, type);
    }
    if (s.qkv_bias) {
      vector(b + "attn_q.bias", QD, Init::kNormal, 0.5f);
      vector(b + "attn_k.bias", KVD, Init::kNormal, 0.5f);
      vector(b + "attn_v.bias", KVD, Init::kNormal, 0.5f);
    }
    if (s.qk_norm) {
      norm(b + "attn_q_norm.weight", Dh);
      norm(b + "attn_k_norm.weight", Dh);
    }
    matrix(b + "attn_output.weight", {QD, D}, type);
    if (s.post_norms) norm(b + "post_attention_norm.weight", D);
    norm(b + "ffn_norm.weight", D);
    if (E == 0 && s.fused) {
      matrix(b + "ffn_up.weight", {D, 2 * F}, type);  // gate rows, then up rows
      matrix(b + "ffn_down.weight", {F, D}, type);
    } else if (E == 0) {
      matrix(b + "ffn_gate.weight", {D, F}, type);
      matrix(b + "ffn_up.weight", {D, F}, type);
      matrix(b + "ffn_down.weight", {F, D}, type);
    } else {
      matrix(b + "ffn_gate_inp.weight", {D, E}, GgmlType::F32);
      matrix(b + "ffn_gate_exps.weight", {D, F, E}, type);
      matrix(b + "ffn_down_exps.weight", {F, D, E}, type);
      matrix(b + "ffn_up_exps.weight", {D, F, E}, type);
    }
    if (s.post_norms) norm(b + "post_ffw_norm.weight", D);
  }
  norm("output_norm.weight", D);
  if (!s.tied_output) matrix("output.weight", {D, V}, type);
  return plan;
}

ShapeSize ComputeSize(const ModelShape& shape, GgmlType type, TypeMix mix) {
  ShapeSize size;
  for (const TensorSpec& t : TensorPlan(shape, type, mix)) {
    const runtime::GgmlTypeTraits traits = runtime::GgmlTypeTraitsOf(t.type);
    const uint64_t n = t.n_elements();
    size.n_params += n;
    size.n_bytes += n / traits.block_elems * traits.block_bytes;
  }
  return size;
}

}  // namespace kestrel::synth
