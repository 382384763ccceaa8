#include "runtime/arch/common/decoder_plan.h"

#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/arch/common/metadata.h"
#include "runtime/plan/plan_builder.h"

namespace kestrel {
namespace runtime {
namespace {

constexpr uint32_t kF32 = KESTREL_DTYPE_F32, kI32 = KESTREL_DTYPE_I32;
constexpr int64_t T = kDimT;

class DecoderPlan {
 public:
  DecoderPlan(const ModelConfig& c, const WeightTable& w, const PlanOptions& o, ExecutionPlan* plan)
      : c_(c), w_(w), opt_(o), plan_(*plan), b_(plan) {}

  absl::Status Build();

 private:
  PlanArg W(int id) const { return WeightArg(id, w_.tensors[id].desc); }
  absl::Status Check() const;
  void KvGroups(uint32_t n_layers);
  void Activations();
  void Norm(const std::string& label, ValueRef in, ValueRef out, int64_t rows, int64_t width,
            int weight);
  void Matmul(const std::string& label, ValueRef x, int64_t k, int weight, int bias, ValueRef out,
              int64_t n);
  // `in` [T, sum of widths] split by columns into the (value, width) parts, in order.
  void Split(const std::string& label, ValueRef in,
             std::initializer_list<std::pair<ValueRef, int64_t>> parts);
  void Rope(const std::string& label, ValueRef x, int64_t heads, uint32_t layer);
  // x += out, through the optional post-norm `post_norm` (into `normed`): "<prefix>_post_norm",
  // "<prefix>_residual".
  void Residual(const std::string& prefix, ValueRef out, int post_norm, ValueRef normed);
  void Attention(uint32_t l);
  void Ffn(uint32_t l);
  void Head();

  const ModelConfig& c_;
  const WeightTable& w_;
  const PlanOptions& opt_;
  ExecutionPlan& plan_;
  PlanBuilder b_;
  int rope_factors_ = -1;
  kestrel_op_rmsnorm_params_t norm_{};
  ValueRef x_{}, xn_{}, q_{}, k_{}, v_{}, q_raw_{}, k_raw_{}, attn_{}, o_{}, o_norm_{}, gate_{},
      up_{}, h_{}, ffn_{}, ffn_norm_{}, logits_{}, qkv_{}, gate_up_{};
};

absl::Status DecoderPlan::Check() const {
  if (opt_.n_layers > c_.n_layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "plan: %u layers asked for, but the model has %u", opt_.n_layers, c_.n_layers));
  }
  if (c_.ffn_activation == FfnActivation::kGeGlu && c_.n_experts != 0) {
    return absl::UnimplementedError(
        absl::StrCat(c_.architecture, ": GeGLU mixture-of-experts layers are not supported"));
  }
  return absl::OkStatus();
}

void DecoderPlan::KvGroups(uint32_t n_layers) {
  plan_.kv_groups = {ExecutionPlan::KvGroup{0, opt_.n_blocks}};
  plan_.layer_kv_group.assign(n_layers, 0);
  if (opt_.window_kv_blocks == 0) return;  // every layer's KV in group 0's full-context pool
  for (uint32_t l = 0; l < n_layers; ++l) {
    const uint32_t window = c_.layers[l].sliding_window;
    if (window == 0) continue;
    uint32_t g = 1;
    while (g < plan_.kv_groups.size() && plan_.kv_groups[g].window != window) ++g;
    if (g == plan_.kv_groups.size()) plan_.kv_groups.push_back({window, opt_.window_kv_blocks});
    plan_.layer_kv_group[l] = g;
  }
}

void DecoderPlan::Activations() {
  const int64_t D = c_.n_embd, QD = int64_t{c_.n_heads} * c_.head_dim,
                KVD = int64_t{c_.n_kv_heads} * c_.head_dim, F = c_.n_ff;
  x_ = b_.Activation("x", D);
  xn_ = b_.Activation("xn", D);
  q_ = b_.Activation("q", QD);
  k_ = b_.Activation("k", KVD);
  v_ = b_.Activation("v", KVD);
  q_raw_ = b_.Activation("q_raw", QD);  // before the per-head norm (unused without one)
  k_raw_ = b_.Activation("k_raw", KVD);
  attn_ = b_.Activation("attn", QD);
  o_ = b_.Activation("o", D);
  o_norm_ = b_.Activation("o_norm", D);
  gate_ = b_.Activation("gate", F);
  up_ = b_.Activation("up", F);
  h_ = b_.Activation("h", F);
  ffn_ = b_.Activation("ffn_out", D);
  ffn_norm_ = b_.Activation("ffn_norm_out", D);
  qkv_ = b_.Activation("qkv", QD + 2 * KVD);  // the fused matmuls' outputs (unused without)
  gate_up_ = b_.Activation("gate_up", 2 * F);
  logits_ = b_.Activation("logits", c_.n_vocab, true);
  plan_.logits = logits_.index;
}

void DecoderPlan::Norm(const std::string& label, ValueRef in, ValueRef out, int64_t rows,
                       int64_t width, int weight) {
  b_.Op(KESTREL_OP_RMSNORM, label, {Arg(in, kF32, {rows, width}), W(weight)},
        {Arg(out, kF32, {rows, width})}, OpParams(norm_));
}

void DecoderPlan::Matmul(const std::string& label, ValueRef x, int64_t k, int weight, int bias,
                         ValueRef out, int64_t n) {
  std::vector<PlanArg> in{Arg(x, kF32, {T, k}), W(weight)};
  if (bias >= 0) in.push_back(W(bias));
  b_.Op(KESTREL_OP_MATMUL, label, std::move(in), {Arg(out, kF32, {T, n})});
}

void DecoderPlan::Split(const std::string& label, ValueRef in,
                        std::initializer_list<std::pair<ValueRef, int64_t>> parts) {
  int64_t n = 0;
  std::vector<PlanArg> out;
  for (const auto& [value, width] : parts) {
    out.push_back(Arg(value, kF32, {T, width}));
    n += width;
  }
  b_.Op(kPlanOpSplitColumns, label, {Arg(in, kF32, {T, n})}, std::move(out));
}

void DecoderPlan::Rope(const std::string& label, ValueRef x, int64_t heads, uint32_t layer) {
  const int64_t Dh = c_.head_dim;
  kestrel_op_rope_params_t rope{};
  rope.style = c_.rope_style;
  rope.n_rot = c_.rope_dim;
  rope.freq_base = c_.layers[layer].rope_freq_base;
  rope.freq_scale = c_.layers[layer].rope_freq_scale;
  std::vector<PlanArg> in{Arg(x, kF32, {T, heads, Dh}), Arg(StepValue(kStepPositions), kI32, {T})};
  if (rope_factors_ >= 0) in.push_back(W(rope_factors_));
  b_.Op(KESTREL_OP_ROPE, label, std::move(in), {Arg(x, kF32, {T, heads, Dh})}, OpParams(rope));
}

void DecoderPlan::Attention(uint32_t l) {
  const LayerWeights& L = w_.layers[l];
  const int64_t D = c_.n_embd, H = c_.n_heads, Hkv = c_.n_kv_heads, Dh = c_.head_dim;
  const std::string p = absl::StrCat("blk.", l, ".");
  const ValueRef kc{ValueKind::kKCache, static_cast<int32_t>(l)};
  const ValueRef vc{ValueKind::kVCache, static_cast<int32_t>(l)};
  const uint32_t kv = plan_.kv_dtype;
  const uint32_t group = plan_.layer_kv_group[l];
  const int64_t NB = plan_.kv_groups[group].n_blocks, B = plan_.block_size;
  const ValueRef slots = StepValue(static_cast<StepInputId>(SlotsInput(group)));
  const ValueRef tables = StepValue(static_cast<StepInputId>(BlockTablesInput(group)));

  Norm(p + "attn_norm", x_, xn_, T, D, L.attn_norm);
  // With a per-head Q/K norm the projections land in q_raw/k_raw and the norm writes q/k.
  const bool qk_norm = L.q_norm >= 0;
  const ValueRef q_out = qk_norm ? q_raw_ : q_, k_out = qk_norm ? k_raw_ : k_;
  if (opt_.fuse_matmuls && L.wqkv >= 0) {
    Matmul(p + "attn_qkv", xn_, D, L.wqkv, L.bqkv, qkv_, (H + 2 * Hkv) * Dh);
    Split(p + "attn_qkv_split", qkv_, {{q_out, H * Dh}, {k_out, Hkv * Dh}, {v_, Hkv * Dh}});
  } else {
    Matmul(p + "attn_q", xn_, D, L.wq, L.bq, q_out, H * Dh);
    Matmul(p + "attn_k", xn_, D, L.wk, L.bk, k_out, Hkv * Dh);
    Matmul(p + "attn_v", xn_, D, L.wv, L.bv, v_, Hkv * Dh);
  }
  if (qk_norm) {
    Norm(p + "attn_q_norm", q_raw_, q_, TokensTimes(H), Dh, L.q_norm);
    Norm(p + "attn_k_norm", k_raw_, k_, TokensTimes(Hkv), Dh, L.k_norm);
  }
  Rope(p + "rope_q", q_, H, l);
  Rope(p + "rope_k", k_, Hkv, l);
  b_.Op(KESTREL_OP_KV_WRITE, p + "kv_write",
        {Arg(k_, kF32, {T, Hkv, Dh}), Arg(v_, kF32, {T, Hkv, Dh}), Arg(slots, kI32, {T})},
        {Arg(kc, kv, {NB, B, Hkv, Dh}), Arg(vc, kv, {NB, B, Hkv, Dh})});
  kestrel_op_attention_params_t att{};
  att.n_heads = c_.n_heads;
  att.n_kv_heads = c_.n_kv_heads;
  att.head_dim = c_.head_dim;
  att.block_size = plan_.block_size;
  att.causal = 1;
  // RoPE's attn_factor scales Q and K, i.e. the scores by its square.
  const float base = c_.attention_scale != 0.0f ? c_.attention_scale
                                                 : 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  att.scale = c_.rope_attn_factor == 1.0f ? base : base * c_.rope_attn_factor * c_.rope_attn_factor;
  att.window = c_.layers[l].sliding_window;
  b_.Op(KESTREL_OP_PAGED_ATTENTION, p + "attention",
        {Arg(q_, kF32, {T, H, Dh}), Arg(kc, kv, {NB, B, Hkv, Dh}), Arg(vc, kv, {NB, B, Hkv, Dh}),
         Arg(tables, kI32, {kDimS, kDimMaxBlocks}),
         Arg(StepValue(kStepQueryStart), kI32, {kDimSPlus1}), Arg(StepValue(kStepKvLens), kI32, {kDimS})},
        {Arg(attn_, kF32, {T, H, Dh})}, OpParams(att));
  // The window is a version-2 field: plugins that know only version 1 then decline the op
  // instead of attending the whole context.
  if (att.window != 0) plan_.ops.back().op_version = 2;
  Matmul(p + "attn_output", attn_, H * Dh, L.wo, -1, o_, D);
  Residual(p + "attn", o_, L.attn_post_norm, o_norm_);
}

void DecoderPlan::Residual(const std::string& prefix, ValueRef out, int post_norm, ValueRef normed) {
  const int64_t D = c_.n_embd;
  if (post_norm >= 0) {
    Norm(prefix + "_post_norm", out, normed, T, D, post_norm);
    out = normed;
  }
  b_.Op(KESTREL_OP_ADD, prefix + "_residual", {Arg(x_, kF32, {T, D}), Arg(out, kF32, {T, D})},
        {Arg(x_, kF32, {T, D})});
}

void DecoderPlan::Ffn(uint32_t l) {
  const LayerWeights& L = w_.layers[l];
  const int64_t D = c_.n_embd, F = c_.n_ff;
  const std::string p = absl::StrCat("blk.", l, ".");
  Norm(p + "ffn_norm", x_, xn_, T, D, L.ffn_norm);
  if (c_.n_experts == 0) {
    if (opt_.fuse_matmuls && L.w_gate_up >= 0) {
      Matmul(p + "ffn_gate_up", xn_, D, L.w_gate_up, -1, gate_up_, 2 * F);
      Split(p + "ffn_gate_up_split", gate_up_, {{gate_, F}, {up_, F}});
    } else {
      Matmul(p + "ffn_gate", xn_, D, L.w_gate, -1, gate_, F);
      Matmul(p + "ffn_up", xn_, D, L.w_up, -1, up_, F);
    }
    const bool geglu = c_.ffn_activation == FfnActivation::kGeGlu;
    b_.Op(geglu ? KESTREL_OP_GEGLU : KESTREL_OP_SWIGLU, p + (geglu ? "ffn_geglu" : "ffn_swiglu"),
          {Arg(gate_, kF32, {T, F}), Arg(up_, kF32, {T, F})}, {Arg(h_, kF32, {T, F})});
    Matmul(p + "ffn_down", h_, F, L.w_down, -1, ffn_, D);
  } else {
    // One value per layer, so every layer's counts survive until the step ends.
    const int64_t E = c_.n_experts;
    const ValueRef stats = b_.Activation(p + "expert_stats", E);
    plan_.expert_stats.push_back(stats.index);
    kestrel_op_moe_params_t moe{};
    moe.n_experts = c_.n_experts;
    moe.top_k = c_.n_experts_used;
    moe.routing = KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM;  // Mixtral routing
    moe.activation = KESTREL_MOE_ACTIVATION_SWIGLU;
    moe.first_expert = 0;
    moe.n_local_experts = c_.n_experts;  // one device holds every expert
    b_.Op(KESTREL_OP_MOE, p + "ffn_moe",
          {Arg(xn_, kF32, {T, D}), W(L.ffn_gate_inp), W(L.ffn_gate_exps), W(L.ffn_up_exps),
           W(L.ffn_down_exps)},
          {Arg(ffn_, kF32, {T, D}), Arg(stats, kI32, {E})}, OpParams(moe));
  }
  Residual(p + "ffn", ffn_, L.ffn_post_norm, ffn_norm_);
}

void DecoderPlan::Head() {
  const int64_t D = c_.n_embd, V = c_.n_vocab;
  Norm("output_norm", x_, xn_, T, D, w_.output_norm);
  b_.Op(KESTREL_OP_LOGITS, "output",
        {Arg(xn_, kF32, {T, D}), W(w_.output), Arg(StepValue(kStepLogitRows), kI32, {kDimR})},
        {Arg(logits_, kF32, {kDimR, V})});
  // x keeps the residual stream (nothing writes it after the last layer) and xn the normed one
  // (LOGITS only reads it), so either is readable after the step without a copy.
  if (opt_.hidden == HiddenState::kPreNorm) plan_.hidden = x_.index;
  if (opt_.hidden == HiddenState::kPostNorm) plan_.hidden = xn_.index;
}

absl::Status DecoderPlan::Build() {
  const uint32_t n_layers = opt_.n_layers == 0 ? c_.n_layers : opt_.n_layers;
  rope_factors_ = RopeFactorsFor(c_, w_, opt_.context_length);
  KESTREL_RETURN_IF_ERROR(Check());
  plan_.kv_dtype = opt_.kv_dtype;
  plan_.n_layers = n_layers;
  plan_.n_kv_heads = c_.n_kv_heads;
  plan_.head_dim = c_.head_dim;
  plan_.block_size = opt_.block_size;
  plan_.n_blocks = opt_.n_blocks;
  plan_.n_experts = c_.n_experts;
  norm_.eps = c_.rms_eps;
  KvGroups(n_layers);
  Activations();
  if (c_.embedding_scale == 1.0f) {
    b_.Op(KESTREL_OP_EMBEDDING_GATHER, "token_embd",
          {W(w_.token_embd), Arg(StepValue(kStepTokens), kI32, {T})}, {Arg(x_, kF32, {T, c_.n_embd})});
  } else {
    kestrel_op_embedding_params_t scale{};
    scale.scale = c_.embedding_scale;
    b_.Op(KESTREL_OP_EMBEDDING_GATHER, "token_embd",
          {W(w_.token_embd), Arg(StepValue(kStepTokens), kI32, {T})}, {Arg(x_, kF32, {T, c_.n_embd})},
          OpParams(scale));
    plan_.ops.back().op_version = 2;  // the scale is the version-2 form's params
  }
  for (uint32_t l = 0; l < n_layers; ++l) {
    Attention(l);
    Ffn(l);
  }
  Head();
  return absl::OkStatus();
}

}  // namespace

int RopeFactorsFor(const ModelConfig& c, const WeightTable& w, uint32_t context_length) {
  if (w.rope_freqs >= 0) return w.rope_freqs;
  const uint32_t ctx = context_length == 0 ? c.context_length : context_length;
  const uint32_t original = c.rope_original_context == 0 ? c.context_length : c.rope_original_context;
  return ctx > original ? w.rope_factors_long : w.rope_factors_short;
}

absl::StatusOr<ExecutionPlan> BuildDecoderPlan(const ModelConfig& config, const WeightTable& weights,
                                               const PlanOptions& options) {
  ExecutionPlan plan;
  KESTREL_RETURN_IF_ERROR(DecoderPlan(config, weights, options, &plan).Build());
  return plan;
}

}  // namespace runtime
}  // namespace kestrel
