#include "runtime/arch/common/decoder_weights.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/arch/common/metadata.h"

namespace kestrel {
namespace runtime {
namespace {

// Assigns the id of a declared weight or returns its error.
#define KESTREL_DECLARE(lhs, expr)     \
  do {                                 \
    absl::StatusOr<int> _id = (expr);  \
    if (!_id.ok()) return _id.status(); \
    lhs = *_id;                        \
  } while (0)

absl::Status DeclareAttention(const ModelConfig& c, const DecoderWeightRules& rules,
                              const std::string& b, WeightTableBuilder& w, LayerWeights& L) {
  const int64_t D = c.n_embd, Dh = c.head_dim;
  const int64_t QD = int64_t{c.n_heads} * Dh, KVD = int64_t{c.n_kv_heads} * Dh;
  KESTREL_DECLARE(L.attn_norm, w.Vector(b + "attn_norm.weight", D));
  if (rules.fused_qkv && w.Has(b + "attn_qkv.weight")) {
    const std::string qkv = b + "attn_qkv.weight";
    const std::vector<int64_t> dims{QD + 2 * KVD, D};
    KESTREL_DECLARE(L.wq, w.MatrixRows(qkv, dims, 0, QD));
    KESTREL_DECLARE(L.wk, w.MatrixRows(qkv, dims, QD, KVD));
    KESTREL_DECLARE(L.wv, w.MatrixRows(qkv, dims, QD + KVD, KVD));
  } else {
    KESTREL_DECLARE(L.wq, w.Matrix(b + "attn_q.weight", {QD, D}));
    KESTREL_DECLARE(L.wk, w.Matrix(b + "attn_k.weight", {KVD, D}));
    KESTREL_DECLARE(L.wv, w.Matrix(b + "attn_v.weight", {KVD, D}));
  }
  KESTREL_DECLARE(L.wo, w.Matrix(b + "attn_output.weight", {D, QD}));
  if (rules.qkv_bias) {
    KESTREL_DECLARE(L.bq, w.Vector(b + "attn_q.bias", QD));
    KESTREL_DECLARE(L.bk, w.Vector(b + "attn_k.bias", KVD));
    KESTREL_DECLARE(L.bv, w.Vector(b + "attn_v.bias", KVD));
  } else {
    KESTREL_DECLARE(L.bq, w.OptionalVector(b + "attn_q.bias", QD));
    KESTREL_DECLARE(L.bk, w.OptionalVector(b + "attn_k.bias", KVD));
    KESTREL_DECLARE(L.bv, w.OptionalVector(b + "attn_v.bias", KVD));
  }
  if (rules.qk_norm) {
    KESTREL_DECLARE(L.q_norm, w.Vector(b + "attn_q_norm.weight", Dh));
    KESTREL_DECLARE(L.k_norm, w.Vector(b + "attn_k_norm.weight", Dh));
  }
  if (rules.post_norms) {
    KESTREL_DECLARE(L.attn_post_norm, w.Vector(b + "post_attention_norm.weight", D));
  }
  return absl::OkStatus();
}

absl::Status DeclareFfn(const ModelConfig& c, const DecoderWeightRules& rules,
                        const std::string& b, WeightTableBuilder& w, LayerWeights& L) {
  const int64_t D = c.n_embd, F = c.n_ff;
  KESTREL_DECLARE(L.ffn_norm, w.Vector(b + "ffn_norm.weight", D));
  if (rules.post_norms) {
    KESTREL_DECLARE(L.ffn_post_norm, w.Vector(b + "post_ffw_norm.weight", D));
  }
  if (c.n_experts == 0) {
    if (rules.fused_gate_up && !w.Has(b + "ffn_gate.weight")) {
      const std::vector<int64_t> dims{2 * F, D};
      KESTREL_DECLARE(L.w_gate, w.MatrixRows(b + "ffn_up.weight", dims, 0, F));
      KESTREL_DECLARE(L.w_up, w.MatrixRows(b + "ffn_up.weight", dims, F, F));
    } else {
      KESTREL_DECLARE(L.w_gate, w.Matrix(b + "ffn_gate.weight", {F, D}));
      KESTREL_DECLARE(L.w_up, w.Matrix(b + "ffn_up.weight", {F, D}));
    }
    KESTREL_DECLARE(L.w_down, w.Matrix(b + "ffn_down.weight", {D, F}));
    return absl::OkStatus();
  }
  // Mixtral-style experts, stacked per layer (GGUF ne [D, F, E] -> dims [E, F, D]).
  const int64_t E = c.n_experts;
  if (!w.Has(b + "ffn_gate_exps.weight") && w.Has(b + "ffn_gate.0.weight")) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor '", b, "ffn_gate.0.weight': per-expert tensors (the pre-2024 Mixtral GGUF "
        "layout) are not supported; convert the model again to get stacked '", b,
        "ffn_gate_exps.weight'"));
  }
  KESTREL_DECLARE(L.ffn_gate_inp, w.Matrix(b + "ffn_gate_inp.weight", {E, D}));
  KESTREL_DECLARE(L.ffn_gate_exps, w.Matrix(b + "ffn_gate_exps.weight", {E, F, D}));
  KESTREL_DECLARE(L.ffn_up_exps, w.Matrix(b + "ffn_up_exps.weight", {E, F, D}));
  KESTREL_DECLARE(L.ffn_down_exps, w.Matrix(b + "ffn_down_exps.weight", {E, D, F}));
  return absl::OkStatus();
}

// RoPE factors divide angles: each must be finite and > 0 (errors name the tensor and index).
absl::Status CheckRopeFactors(const WeightTable& t, int id) {
  if (id < 0 || t.tensors[id].host_data == nullptr) return absl::OkStatus();  // absent / metadata only
  const WeightTensor& w = t.tensors[id];
  const float* f = reinterpret_cast<const float*>(w.host_data);
  for (int64_t i = 0; i < w.desc.dims[0]; ++i) {
    if (!(f[i] > 0.0f) || !std::isfinite(f[i])) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", w.name, "' element ", i, " = ",
                                                     f[i], " is not a finite factor > 0"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DeclareDecoderWeights(const ModelConfig& c, const DecoderWeightRules& rules,
                                   WeightTableBuilder& w) {
  WeightTable& t = w.table();
  const int64_t D = c.n_embd, V = c.n_vocab, R = c.rope_dim / 2;
  KESTREL_DECLARE(t.token_embd, w.Matrix("token_embd.weight", {V, D}));
  KESTREL_DECLARE(t.output_norm, w.Vector("output_norm.weight", D));
  KESTREL_DECLARE(t.output, w.OptionalMatrix("output.weight", {V, D}));
  if (t.output < 0) t.output = t.token_embd;  // tied embeddings
  KESTREL_DECLARE(t.rope_freqs, w.OptionalVector("rope_freqs.weight", R));
  KESTREL_DECLARE(t.rope_factors_short, w.OptionalVector("rope_factors_short.weight", R));
  KESTREL_DECLARE(t.rope_factors_long, w.OptionalVector("rope_factors_long.weight", R));
  for (int id : {t.rope_freqs, t.rope_factors_short, t.rope_factors_long}) {
    KESTREL_RETURN_IF_ERROR(CheckRopeFactors(t, id));
  }
  t.layers.resize(c.n_layers);
  for (uint32_t l = 0; l < c.n_layers; ++l) {
    const std::string b = absl::StrCat("blk.", l, ".");
    KESTREL_RETURN_IF_ERROR(DeclareAttention(c, rules, b, w, t.layers[l]));
    KESTREL_RETURN_IF_ERROR(DeclareFfn(c, rules, b, w, t.layers[l]));
  }
  return absl::OkStatus();
}

#undef KESTREL_DECLARE

}  // namespace runtime
}  // namespace kestrel
