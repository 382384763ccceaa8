#include "runtime/plan/execution_plan.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kestrel {
namespace runtime {
namespace {

template <typename P>
std::vector<uint8_t> Params(P p) {
  p.struct_size = sizeof(P);
  std::vector<uint8_t> bytes(sizeof(P));
  std::memcpy(bytes.data(), &p, sizeof(P));
  return bytes;
}

PlanArg Arg(ValueRef ref, uint32_t dtype, std::initializer_list<int64_t> dims) {
  PlanArg a{};
  a.ref = ref;
  a.dtype = dtype;
  a.rank = static_cast<uint32_t>(dims.size());
  int i = 0;
  for (int64_t d : dims) a.dims[i++] = d;
  return a;
}

class PlanBuilder {
 public:
  explicit PlanBuilder(ExecutionPlan* plan) : plan_(plan) {}
  ValueRef Activation(const std::string& name, int64_t per_row, bool per_logit_row = false) {
    plan_->activations.push_back({name, per_row, per_logit_row});
    return {ValueKind::kActivation, static_cast<int32_t>(plan_->activations.size() - 1)};
  }
  void Op(uint32_t kind, std::string label, std::vector<PlanArg> in, std::vector<PlanArg> out,
          std::vector<uint8_t> params = {}) {
    plan_->ops.push_back({kind, std::move(label), std::move(in), std::move(out), std::move(params)});
  }

 private:
  ExecutionPlan* plan_;
};

}  // namespace

ExecutionPlan BuildLlamaPlan(const LlamaModel& model, uint32_t block_size, uint32_t n_blocks,
                             uint32_t kv_dtype) {
  const LlamaConfig& c = model.config();
  ExecutionPlan plan;
  plan.kv_dtype = kv_dtype;
  plan.n_layers = c.n_layers;
  plan.n_kv_heads = c.n_kv_heads;
  plan.head_dim = c.head_dim;
  plan.block_size = block_size;
  plan.n_blocks = n_blocks;
  PlanBuilder b(&plan);

  const int64_t T = kDimT, D = c.n_embd, H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.head_dim,
                F = c.n_ff, V = c.n_vocab;
  const uint32_t f32 = KESTREL_DTYPE_F32, i32 = KESTREL_DTYPE_I32;
  auto W = [&](int id) -> PlanArg {
    const WeightTensor& w = model.weight(id);
    PlanArg a{};
    a.ref = {ValueKind::kWeight, id};
    a.dtype = w.desc.dtype;
    a.rank = w.desc.rank;
    for (uint32_t i = 0; i < w.desc.rank; ++i) a.dims[i] = w.desc.dims[i];
    return a;
  };
  auto Step = [](StepInputId id) { return ValueRef{ValueKind::kStepInput, id}; };

  ValueRef x = b.Activation("x", D), xn = b.Activation("xn", D), q = b.Activation("q", H * Dh),
           k = b.Activation("k", Hkv * Dh), v = b.Activation("v", Hkv * Dh),
           attn = b.Activation("attn", H * Dh), o = b.Activation("o", D),
           gate = b.Activation("gate", F), up = b.Activation("up", F), h = b.Activation("h", F),
           ffn = b.Activation("ffn_out", D), logits = b.Activation("logits", V, true);
  plan.logits = logits.index;

  b.Op(KESTREL_OP_EMBEDDING_GATHER, "token_embd",
       {W(model.token_embedding()), Arg(Step(kStepTokens), i32, {T})}, {Arg(x, f32, {T, D})});

  kestrel_op_rmsnorm_params_t norm{};
  norm.eps = c.rms_eps;
  kestrel_op_rope_params_t rope{};
  rope.style = KESTREL_ROPE_STYLE_NORM;
  rope.n_rot = c.rope_dim;
  rope.freq_base = c.rope_freq_base;
  rope.freq_scale = c.rope_freq_scale;
  kestrel_op_attention_params_t att{};
  att.n_heads = c.n_heads;
  att.n_kv_heads = c.n_kv_heads;
  att.head_dim = c.head_dim;
  att.block_size = block_size;
  att.causal = 1;
  att.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  kestrel_op_moe_params_t moe{};
  moe.n_experts = c.n_experts;
  moe.top_k = c.n_experts_used;
  moe.routing = KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM;  // llama arch = Mixtral routing
  moe.activation = KESTREL_MOE_ACTIVATION_SWIGLU;
  moe.first_expert = 0;
  moe.n_local_experts = c.n_experts;  // one device holds every expert
  plan.n_experts = c.n_experts;
  const uint32_t kv = plan.kv_dtype;
  const int64_t NB = n_blocks, B = block_size;

  for (uint32_t l = 0; l < c.n_layers; ++l) {
    const LayerWeightIds& L = model.layer(l);
    const std::string p = absl::StrCat("blk.", l, ".");
    const ValueRef kc{ValueKind::kKCache, static_cast<int32_t>(l)};
    const ValueRef vc{ValueKind::kVCache, static_cast<int32_t>(l)};
    b.Op(KESTREL_OP_RMSNORM, p + "attn_norm", {Arg(x, f32, {T, D}), W(L.attn_norm)},
         {Arg(xn, f32, {T, D})}, Params(norm));
    b.Op(KESTREL_OP_MATMUL, p + "attn_q", {Arg(xn, f32, {T, D}), W(L.wq)}, {Arg(q, f32, {T, H * Dh})});
    b.Op(KESTREL_OP_MATMUL, p + "attn_k", {Arg(xn, f32, {T, D}), W(L.wk)}, {Arg(k, f32, {T, Hkv * Dh})});
    b.Op(KESTREL_OP_MATMUL, p + "attn_v", {Arg(xn, f32, {T, D}), W(L.wv)}, {Arg(v, f32, {T, Hkv * Dh})});
    b.Op(KESTREL_OP_ROPE, p + "rope_q", {Arg(q, f32, {T, H, Dh}), Arg(Step(kStepPositions), i32, {T})},
         {Arg(q, f32, {T, H, Dh})}, Params(rope));
    b.Op(KESTREL_OP_ROPE, p + "rope_k", {Arg(k, f32, {T, Hkv, Dh}), Arg(Step(kStepPositions), i32, {T})},
         {Arg(k, f32, {T, Hkv, Dh})}, Params(rope));
    b.Op(KESTREL_OP_KV_WRITE, p + "kv_write",
         {Arg(k, f32, {T, Hkv, Dh}), Arg(v, f32, {T, Hkv, Dh}), Arg(Step(kStepSlots), i32, {T})},
         {Arg(kc, kv, {NB, B, Hkv, Dh}), Arg(vc, kv, {NB, B, Hkv, Dh})});
    b.Op(KESTREL_OP_PAGED_ATTENTION, p + "attention",
         {Arg(q, f32, {T, H, Dh}), Arg(kc, kv, {NB, B, Hkv, Dh}), Arg(vc, kv, {NB, B, Hkv, Dh}),
          Arg(Step(kStepBlockTables), i32, {kDimS, kDimMaxBlocks}),
          Arg(Step(kStepQueryStart), i32, {kDimSPlus1}), Arg(Step(kStepKvLens), i32, {kDimS})},
         {Arg(attn, f32, {T, H, Dh})}, Params(att));
    b.Op(KESTREL_OP_MATMUL, p + "attn_output", {Arg(attn, f32, {T, H * Dh}), W(L.wo)}, {Arg(o, f32, {T, D})});
    b.Op(KESTREL_OP_ADD, p + "attn_residual", {Arg(x, f32, {T, D}), Arg(o, f32, {T, D})}, {Arg(x, f32, {T, D})});
    b.Op(KESTREL_OP_RMSNORM, p + "ffn_norm", {Arg(x, f32, {T, D}), W(L.ffn_norm)}, {Arg(xn, f32, {T, D})},
         Params(norm));
    if (c.n_experts == 0) {
      b.Op(KESTREL_OP_MATMUL, p + "ffn_gate", {Arg(xn, f32, {T, D}), W(L.w_gate)}, {Arg(gate, f32, {T, F})});
      b.Op(KESTREL_OP_MATMUL, p + "ffn_up", {Arg(xn, f32, {T, D}), W(L.w_up)}, {Arg(up, f32, {T, F})});
      b.Op(KESTREL_OP_SWIGLU, p + "ffn_swiglu", {Arg(gate, f32, {T, F}), Arg(up, f32, {T, F})}, {Arg(h, f32, {T, F})});
      b.Op(KESTREL_OP_MATMUL, p + "ffn_down", {Arg(h, f32, {T, F}), W(L.w_down)}, {Arg(ffn, f32, {T, D})});
    } else {
      // One value per layer, so every layer's counts survive until the step ends.
      const int64_t E = c.n_experts;
      const ValueRef stats = b.Activation(p + "expert_stats", E);
      plan.expert_stats.push_back(stats.index);
      b.Op(KESTREL_OP_MOE, p + "ffn_moe",
           {Arg(xn, f32, {T, D}), W(L.ffn_gate_inp), W(L.ffn_gate_exps), W(L.ffn_up_exps),
            W(L.ffn_down_exps)},
           {Arg(ffn, f32, {T, D}), Arg(stats, i32, {E})}, Params(moe));
    }
    b.Op(KESTREL_OP_ADD, p + "ffn_residual", {Arg(x, f32, {T, D}), Arg(ffn, f32, {T, D})}, {Arg(x, f32, {T, D})});
  }
  b.Op(KESTREL_OP_RMSNORM, "output_norm", {Arg(x, f32, {T, D}), W(model.output_norm())},
       {Arg(xn, f32, {T, D})}, Params(norm));
  b.Op(KESTREL_OP_LOGITS, "output",
       {Arg(xn, f32, {T, D}), W(model.output()), Arg(Step(kStepLogitRows), i32, {kDimR})},
       {Arg(logits, f32, {kDimR, V})});
  return plan;
}

}  // namespace runtime
}  // namespace kestrel
