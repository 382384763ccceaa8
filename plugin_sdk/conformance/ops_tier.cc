// The ops tier: every op kind of plugin_api.h with each weight dtype (the GGUF formats of ABI 1.2
// included), prepared weights and buffers, edge shapes (one token, one output row, sizes off the
// usual multiples), in-place variants, the optional inputs (ROPE freq_factors, MATMUL bias: 1.2)
// and the 1.3 forms (GEGLU, EMBEDDING_GATHER v2's scale), each a check of its own
// ("ops/<KIND>/<variant>") against the reference plugin. A device that does not claim a form
// (op_query UNSUPPORTED, as a plugin of an older minor does) gets it reported skipped.
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/quants.h"
#include "plugin_sdk/conformance/kit.h"

namespace kestrel::conformance {
namespace {

constexpr const char* kTier = "ops";

void Embedding(Target& t, Report& r) {
  Rng rng(101);
  for (uint32_t dtype : kWeightDtypes) {
    for (bool prepared : {true, false}) {
      const int64_t vocab = 37, dim = 64, n = 6;
      std::vector<int32_t> ids(n);
      for (auto& id : ids) id = rng.Int(0, vocab - 1);
      ids[1] = ids[0];
      ids[2] = vocab - 1;
      OpCase c;
      c.kind = KESTREL_OP_EMBEDDING_GATHER;
      c.in = {Weight(rng, dtype, vocab, dim, prepared), I32({n}, ids)};
      c.out = {Out(KESTREL_DTYPE_F32, {n, dim})};
      CheckCase(t, r, kTier, absl::StrCat("EMBEDDING_GATHER/", Name(dtype), prepared ? "/prepared" : "/buffer"),
                c, dtype);
    }
  }
  // The GGUF formats (rows of 256: one K-quant super-block) and v2's scale (Gemma's sqrt(n_embd)).
  for (uint32_t dtype : kExtraQuantDtypes) {
    OpCase c;
    c.kind = KESTREL_OP_EMBEDDING_GATHER;
    c.in = {Weight(rng, dtype, 19, 256, true), I32({4}, {3, 18, 0, 3})};
    c.out = {Out(KESTREL_DTYPE_F32, {4, 256})};
    CheckCase(t, r, kTier, absl::StrCat("EMBEDDING_GATHER/", Name(dtype), "/prepared"), c, dtype);
  }
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_Q8_0}) {
    OpCase c;
    c.kind = KESTREL_OP_EMBEDDING_GATHER;
    c.in = {Weight(rng, dtype, 37, 64, true), I32({4}, {3, 36, 0, 3})};
    c.out = {Out(KESTREL_DTYPE_F32, {4, 64})};
    kestrel_op_embedding_params_t p{};
    p.scale = 25.29822f;
    c.params = Params(p);
    c.op_version = 2;
    CheckCase(t, r, kTier, absl::StrCat("EMBEDDING_GATHER/", Name(dtype), "/v2_scale"), c, dtype);
  }
}

void RmsNorm(Target& t, Report& r) {
  Rng rng(102);
  for (auto [n, d] : std::vector<std::pair<int64_t, int64_t>>{{1, 8}, {6, 72}, {3, 260}}) {
    OpCase c;
    c.kind = KESTREL_OP_RMSNORM;
    c.in = {F32({n, d}, rng.Floats(n * d, -3, 3)), F32({d}, rng.Floats(d, 0.5f, 1.5f))};
    c.out = {Out(KESTREL_DTYPE_F32, {n, d})};
    c.params = Params(kestrel_op_rmsnorm_params_t{0, 1e-5f});
    CheckCase(t, r, kTier, absl::StrCat("RMSNORM/t", n, "_d", d), c, 0);
  }
}

void Rope(Target& t, Report& r) {
  Rng rng(103);
  struct Shape { int64_t n, h, dh; uint32_t n_rot; };
  for (const Shape& s : {Shape{1, 8, 8, 8}, Shape{5, 3, 24, 16}}) {
    for (uint32_t style : {KESTREL_ROPE_STYLE_NORM, KESTREL_ROPE_STYLE_NEOX}) {
      for (bool in_place : {false, true}) {
        std::vector<int32_t> pos(s.n);
        for (auto& p : pos) p = rng.Int(0, 700);
        OpCase c;
        c.kind = KESTREL_OP_ROPE;
        c.in = {F32({s.n, s.h, s.dh}, rng.Floats(s.n * s.h * s.dh)), I32({s.n}, pos)};
        c.out = {Out(KESTREL_DTYPE_F32, {s.n, s.h, s.dh})};
        c.params = Params(kestrel_op_rope_params_t{0, style, s.n_rot, 10000.0f, 1.0f});
        c.out_alias = in_place ? 0 : -1;
        CheckCase(t, r, kTier,
                  absl::StrCat("ROPE/", style == KESTREL_ROPE_STYLE_NORM ? "norm" : "neox", "/t", s.n,
                               "_h", s.h, "_dh", s.dh, "_rot", s.n_rot, in_place ? "/in_place" : ""),
                  c, 0);
      }
    }
  }
  // Optional freq_factors [n_rot / 2] (Llama 3 rope_freqs, Phi-3 long factors).
  for (uint32_t style : {KESTREL_ROPE_STYLE_NORM, KESTREL_ROPE_STYLE_NEOX}) {
    const int64_t n = 4, h = 2, dh = 32;
    const uint32_t n_rot = 32;
    std::vector<int32_t> pos(n);
    for (auto& p : pos) p = rng.Int(0, 3000);
    OpCase c;
    c.kind = KESTREL_OP_ROPE;
    c.in = {F32({n, h, dh}, rng.Floats(n * h * dh)), I32({n}, pos),
            F32({n_rot / 2}, rng.Floats(n_rot / 2, 1.0f, 40.0f))};
    c.out = {Out(KESTREL_DTYPE_F32, {n, h, dh})};
    c.params = Params(kestrel_op_rope_params_t{0, style, n_rot, 500000.0f, 1.0f});
    CheckCase(t, r, kTier,
              absl::StrCat("ROPE/", style == KESTREL_ROPE_STYLE_NORM ? "norm" : "neox",
                           "/freq_factors"),
              c, 0);
  }
}

void Matmul(Target& t, Report& r) {
  Rng rng(104);
  struct Shape { int64_t n_tok, k, n; };
  for (uint32_t dtype : kWeightDtypes) {
    for (bool prepared : {true, false}) {
      for (const Shape& s : {Shape{1, 64, 48}, Shape{7, 128, 40}}) {
        OpCase c;
        c.kind = KESTREL_OP_MATMUL;
        c.in = {F32({s.n_tok, s.k}, rng.Floats(s.n_tok * s.k)), Weight(rng, dtype, s.n, s.k, prepared)};
        c.out = {Out(KESTREL_DTYPE_F32, {s.n_tok, s.n})};
        CheckCase(t, r, kTier,
                  absl::StrCat("MATMUL/", Name(dtype), prepared ? "/prepared" : "/buffer", "/t",
                               s.n_tok, "_k", s.k, "_n", s.n),
                  c, dtype);
      }
    }
  }
  // Edge shapes: the smallest block-quantizable K with a few output rows (not a multiple of any
  // tile), and a single output row over a longer K (few outputs: the INT8 tier needs some).
  OpCase edge;
  edge.kind = KESTREL_OP_MATMUL;
  edge.in = {F32({5, 32}, rng.Floats(5 * 32)), Weight(rng, KESTREL_DTYPE_Q8_0, 3, 32, false)};
  edge.out = {Out(KESTREL_DTYPE_F32, {5, 3})};
  CheckCase(t, r, kTier, "MATMUL/Q8_0/buffer/t5_k32_n3", edge, KESTREL_DTYPE_Q8_0);
  OpCase row;
  row.kind = KESTREL_OP_MATMUL;
  row.in = {F32({16, 256}, rng.Floats(16 * 256)), Weight(rng, KESTREL_DTYPE_F32, 1, 256, true)};
  row.out = {Out(KESTREL_DTYPE_F32, {16, 1})};
  CheckCase(t, r, kTier, "MATMUL/F32/prepared/t16_k256_n1", row, KESTREL_DTYPE_F32);
  // The GGUF formats of ABI 1.2: K of whole super-blocks (256), N off every tile.
  for (uint32_t dtype : kExtraQuantDtypes) {
    for (const Shape& s : {Shape{1, 256, 33}, Shape{6, 512, 20}}) {
      OpCase c;
      c.kind = KESTREL_OP_MATMUL;
      c.in = {F32({s.n_tok, s.k}, rng.Floats(s.n_tok * s.k)), Weight(rng, dtype, s.n, s.k, true)};
      c.out = {Out(KESTREL_DTYPE_F32, {s.n_tok, s.n})};
      CheckCase(t, r, kTier,
                absl::StrCat("MATMUL/", Name(dtype), "/prepared/t", s.n_tok, "_k", s.k, "_n", s.n),
                c, dtype);
    }
  }
  // Optional bias [N] (Qwen 2's Q/K/V), as a buffer.
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_Q8_0}) {
    OpCase c;
    c.kind = KESTREL_OP_MATMUL;
    c.in = {F32({3, 64}, rng.Floats(3 * 64)), Weight(rng, dtype, 24, 64, true),
            F32({24}, rng.Floats(24, -2, 2))};
    c.out = {Out(KESTREL_DTYPE_F32, {3, 24})};
    CheckCase(t, r, kTier, absl::StrCat("MATMUL/", Name(dtype), "/prepared/bias"), c, dtype);
  }
}

void Elementwise(Target& t, Report& r) {
  Rng rng(105);
  for (uint32_t kind : {KESTREL_OP_ADD, KESTREL_OP_SWIGLU, KESTREL_OP_GEGLU}) {
    for (int64_t n : {1, 7, 1031}) {
      OpCase c;
      c.kind = kind;
      c.in = {F32({3, n}, rng.Floats(3 * n, -4, 4)), F32({3, n}, rng.Floats(3 * n, -4, 4))};
      c.out = {Out(KESTREL_DTYPE_F32, {3, n})};
      CheckCase(t, r, kTier, absl::StrCat(plugin_sdk::OpKindName(kind), "/3x", n), c, 0);
    }
    OpCase in_place;
    in_place.kind = kind;
    in_place.in = {F32({5, 33}, rng.Floats(165)), F32({5, 33}, rng.Floats(165))};
    in_place.out = {Out(KESTREL_DTYPE_F32, {5, 33})};
    in_place.out_alias = 1;
    if (kind == KESTREL_OP_ADD) CheckCase(t, r, kTier, "ADD/5x33/in_place", in_place, 0);
  }
}

void KvOps(Target& t, Report& r) {
  Rng rng(106);
  for (uint32_t kd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    for (uint32_t vd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
      const int64_t nb = 5, b = 16, hkv = 2, dh = 8, n = 11;
      std::vector<int32_t> slots(nb * b);
      std::iota(slots.begin(), slots.end(), 0);
      std::shuffle(slots.begin(), slots.end(), rng.gen());
      slots.resize(n);
      OpCase c;
      c.kind = KESTREL_OP_KV_WRITE;
      c.in = {F32({n, hkv, dh}, rng.Floats(n * hkv * dh, -70000, 70000)),
              F32({n, hkv, dh}, rng.Floats(n * hkv * dh)), I32({n}, slots)};
      c.out = {{Desc(kd, {nb, b, hkv, dh}), RandomCache(rng, kd, nb * b * hkv * dh)},
               {Desc(vd, {nb, b, hkv, dh}), RandomCache(rng, vd, nb * b * hkv * dh)}};
      CheckCase(t, r, kTier, absl::StrCat("KV_WRITE/k_", Name(kd), "_v_", Name(vd)), c, 0);
    }
  }
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    const int64_t nb = 6, b = 16, hkv = 2, dh = 8;
    OpCase c;
    c.kind = KESTREL_OP_KV_BLOCK_COPY;
    c.in = {I32({4, 2}, {0, 3, 3, 5, 1, 1, 4, 0})};  // chained 0 -> 3 -> 5, a self copy, 4 -> 0
    c.out = {{Desc(dtype, {nb, b, hkv, dh}), RandomCache(rng, dtype, nb * b * hkv * dh)},
             {Desc(dtype, {nb, b, hkv, dh}), RandomCache(rng, dtype, nb * b * hkv * dh)}};
    CheckCase(t, r, kTier, absl::StrCat("KV_BLOCK_COPY/", Name(dtype), "/chained"), c, 0);
  }
}

void Attention(Target& t, Report& r) {
  Rng rng(107);
  for (uint32_t cache : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    CheckCase(t, r, kTier, absl::StrCat("PAGED_ATTENTION/", Name(cache), "/h8_hkv4_dh8_b16/varlen"),
              conformance::Attention(rng, 8, 4, 8, 16, cache, cache, true, {{5, 5}, {1, 40}, {3, 20}}),
              cache);
  }
}

void Logits(Target& t, Report& r) {
  Rng rng(108);
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_Q6_K}) {
    const int64_t n = 7, d = plugin_sdk::IsKQuant(dtype) ? 256 : 64, vocab = 50;
    OpCase c;
    c.kind = KESTREL_OP_LOGITS;
    c.in = {F32({n, d}, rng.Floats(n * d)), Weight(rng, dtype, vocab, d, true), I32({3}, {6, 0, 3})};
    c.out = {Out(KESTREL_DTYPE_F32, {3, vocab})};
    CheckCase(t, r, kTier, absl::StrCat("LOGITS/", Name(dtype), "/3_of_7_rows"), c, dtype);
  }
}

}  // namespace

// MOE, F32 or Q4_0 experts, Mixtral routing; shared with the llm tier's routing-tie case.
OpCase MoeCase(Rng& rng, uint32_t dtype, int64_t n, int64_t d, int64_t f, int64_t e, int64_t k,
               bool tied_router) {
  OpCase c;
  c.kind = KESTREL_OP_MOE;
  std::vector<float> router = rng.Floats(e * d);
  if (tied_router) {
    for (int64_t i = 1; i < e; ++i) std::copy(router.begin(), router.begin() + d, router.begin() + i * d);
  }
  auto stack = [&](int64_t rows, int64_t cols) {
    Tensor w = Weight(rng, dtype, e * rows, cols, true);
    w.desc = Desc(dtype, {e, rows, cols});
    return w;
  };
  c.in = {F32({n, d}, rng.Floats(n * d)), {Desc(KESTREL_DTYPE_F32, {e, d}), Bytes(router), true},
          stack(f, d), stack(f, d), stack(d, f)};
  c.out = {Out(KESTREL_DTYPE_F32, {n, d}), Out(KESTREL_DTYPE_I32, {e})};
  kestrel_op_moe_params_t p{};
  p.n_experts = static_cast<uint32_t>(e);
  p.top_k = static_cast<uint32_t>(k);
  p.routing = KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM;
  p.activation = KESTREL_MOE_ACTIVATION_SWIGLU;
  p.n_local_experts = static_cast<uint32_t>(e);
  c.params = Params(p);
  return c;
}

void RunOpsTier(Target& t, Report& r) {
  Embedding(t, r);
  RmsNorm(t, r);
  Rope(t, r);
  Matmul(t, r);
  Elementwise(t, r);
  KvOps(t, r);
  Attention(t, r);
  Logits(t, r);
  Rng rng(109);
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_Q4_0}) {
    CheckCase(t, r, kTier, absl::StrCat("MOE/", Name(dtype), "/e4_top2"),
              MoeCase(rng, dtype, 5, 64, 32, 4, 2, false), dtype);
  }
}

}  // namespace kestrel::conformance
