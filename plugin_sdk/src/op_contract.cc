#include "kestrel/plugin_sdk/op_contract.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

#include "kestrel/plugin_sdk/dtype.h"

namespace kestrel::plugin_sdk {
namespace {

constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 62;
// kestrel_op_attention_params_t before 1.3 appended `window`.
constexpr size_t kAttentionParamsV1Size = offsetof(kestrel_op_attention_params_t, window);

constexpr uint64_t Bit(uint32_t dtype) { return KESTREL_DTYPE_BIT(dtype); }

// The GGUF formats of ref_quants.h.
constexpr uint64_t kExtraQuantDtypes =
    Bit(KESTREL_DTYPE_Q4_1) | Bit(KESTREL_DTYPE_Q5_0) | Bit(KESTREL_DTYPE_Q5_1) |
    Bit(KESTREL_DTYPE_Q2_K) | Bit(KESTREL_DTYPE_Q3_K) | Bit(KESTREL_DTYPE_Q4_K) |
    Bit(KESTREL_DTYPE_Q5_K) | Bit(KESTREL_DTYPE_Q6_K);
constexpr uint64_t kKnownDtypes = Bit(KESTREL_DTYPE_F32) | Bit(KESTREL_DTYPE_F16) |
                                  Bit(KESTREL_DTYPE_BF16) | Bit(KESTREL_DTYPE_I32) |
                                  Bit(KESTREL_DTYPE_I8) | Bit(KESTREL_DTYPE_Q8_0) |
                                  Bit(KESTREL_DTYPE_Q4_0) | kExtraQuantDtypes;
constexpr uint64_t kFloatDtypes =
    Bit(KESTREL_DTYPE_F32) | Bit(KESTREL_DTYPE_F16) | Bit(KESTREL_DTYPE_BF16);
constexpr uint64_t kWeightDtypes =
    kFloatDtypes | Bit(KESTREL_DTYPE_Q8_0) | Bit(KESTREL_DTYPE_Q4_0) | kExtraQuantDtypes;
constexpr uint64_t kF32 = Bit(KESTREL_DTYPE_F32);
constexpr uint64_t kI32 = Bit(KESTREL_DTYPE_I32);
constexpr uint64_t kCacheDtypes = Bit(KESTREL_DTYPE_F32) | Bit(KESTREL_DTYPE_F16);

bool InMask(uint64_t mask, uint32_t dtype) { return dtype < 64 && (mask & Bit(dtype)) != 0; }

// The fixed input/output names of each kind, used in messages ("input 1 (w)").
struct OpShape {
  std::vector<const char*> inputs;
  std::vector<const char*> outputs;
  size_t params_size;  // sizeof the v1 params struct, 0 if the kind has none
};

struct OpSignature : OpShape {
  // Precomputed once per kind: validation runs for every op of every step, and building these
  // strings per call cost more than the checks themselves.
  std::string name;
  std::vector<std::string> in_labels;   // "input 1 (w)"
  std::vector<std::string> out_labels;  // "output 0 (out)"
};

bool GetSignatureUncached(uint32_t kind, OpShape* sig) {
  switch (kind) {
    case KESTREL_OP_EMBEDDING_GATHER:
      *sig = {{"table", "ids"}, {"out"}, 0};
      return true;
    case KESTREL_OP_RMSNORM:
      *sig = {{"x", "weight"}, {"out"}, sizeof(kestrel_op_rmsnorm_params_t)};
      return true;
    case KESTREL_OP_ROPE:
      *sig = {{"x", "positions", "freq_factors"}, {"out"}, sizeof(kestrel_op_rope_params_t)};
      return true;
    case KESTREL_OP_MATMUL:
      *sig = {{"x", "w", "bias"}, {"out"}, 0};
      return true;
    case KESTREL_OP_SWIGLU:
    case KESTREL_OP_GEGLU:
      *sig = {{"gate", "up"}, {"out"}, 0};
      return true;
    case KESTREL_OP_ADD:
      *sig = {{"a", "b"}, {"out"}, 0};
      return true;
    case KESTREL_OP_KV_WRITE:
      *sig = {{"k", "v", "slots"}, {"k_cache", "v_cache"}, 0};
      return true;
    case KESTREL_OP_KV_BLOCK_COPY:
      *sig = {{"pairs"}, {"k_cache", "v_cache"}, 0};
      return true;
    case KESTREL_OP_PAGED_ATTENTION:
      *sig = {{"q", "k_cache", "v_cache", "block_tables", "query_start", "kv_lens", "parents"},
              {"out"},
              sizeof(kestrel_op_attention_params_t)};
      return true;
    case KESTREL_OP_LOGITS:
      *sig = {{"x", "w", "rows"}, {"out"}, 0};
      return true;
    case KESTREL_OP_MOE:  // the second output (stats) is optional
      *sig = {{"x", "router", "gate_exps", "up_exps", "down_exps"},
              {"out", "stats"},
              sizeof(kestrel_op_moe_params_t)};
      return true;
    default:
      return false;
  }
}

// The signature of `kind` with its labels, or nullptr for a kind without one. Thread-safe.
const OpSignature* FindSignature(uint32_t kind) {
  static const std::vector<std::unique_ptr<OpSignature>> table = [] {
    std::vector<std::unique_ptr<OpSignature>> t(KESTREL_OP_GEGLU + 1);
    for (uint32_t k = 0; k < t.size(); ++k) {
      auto sig = std::make_unique<OpSignature>();
      if (!GetSignatureUncached(k, sig.get())) continue;
      sig->name = OpKindName(k);
      for (size_t i = 0; i < sig->inputs.size(); ++i) {
        sig->in_labels.push_back(StrCat("input ", i, " (", sig->inputs[i], ")"));
      }
      for (size_t i = 0; i < sig->outputs.size(); ++i) {
        sig->out_labels.push_back(StrCat("output ", i, " (", sig->outputs[i], ")"));
      }
      t[k] = std::move(sig);
    }
    return t;
  }();
  return kind < table.size() ? table[kind].get() : nullptr;
}

// Copies the v1 prefix of a params struct after checking both size fields.
template <typename P>
Status ReadParams(const kestrel_op_desc_t& op, const std::string& name, P* out) {
  if (op.params == nullptr) return InvalidArgument(name, ": params is NULL");
  if (op.params_size < sizeof(P)) {
    return InvalidArgument(name, ": params_size=", op.params_size, " < ", sizeof(P),
                           " (the v1 params struct)");
  }
  uint32_t struct_size;
  std::memcpy(&struct_size, op.params, sizeof struct_size);
  if (struct_size < sizeof(P) || struct_size > op.params_size) {
    return InvalidArgument(name, ": params.struct_size=", struct_size, " is outside [", sizeof(P),
                           ", params_size=", op.params_size, "]");
  }
  std::memcpy(out, op.params, sizeof(P));
  return Status();
}

// Reads a params struct that grew after v1: any struct_size from `v1_size` up is accepted (an
// older host sends the shorter struct), fields past the producer's struct_size read as 0.
template <typename P>
Status ReadGrownParams(const kestrel_op_desc_t& op, const std::string& name, size_t v1_size,
                       P* out) {
  if (op.params == nullptr) return InvalidArgument(name, ": params is NULL");
  if (op.params_size < v1_size) {
    return InvalidArgument(name, ": params_size=", op.params_size, " < ", v1_size,
                           " (the v1 params struct)");
  }
  uint32_t struct_size;
  std::memcpy(&struct_size, op.params, sizeof struct_size);
  if (struct_size < v1_size || struct_size > op.params_size) {
    return InvalidArgument(name, ": params.struct_size=", struct_size, " is outside [", v1_size,
                           ", params_size=", op.params_size, "]");
  }
  std::memset(out, 0, sizeof(P));
  std::memcpy(out, op.params, std::min<size_t>(struct_size, sizeof(P)));
  return Status();
}

// Validation of one descriptor: collects the first "valid but unsupported" reason while going on
// to look for errors, since a malformed descriptor must be reported as such.
class Checker {
 public:
  Checker(const kestrel_op_desc_t& op, const OpSignature& sig)
      : op_(op), sig_(sig), name_(sig.name) {}

  const std::string& name() const { return name_; }
  const std::string& unsupported() const { return unsupported_; }

  const kestrel_tensor_desc_t& in(int i) const { return op_.inputs[i].desc; }
  const kestrel_tensor_desc_t& out(int i) const { return op_.outputs[i].desc; }

  const std::string& InLabel(int i) const { return sig_.in_labels[i]; }
  const std::string& OutLabel(int i) const { return sig_.out_labels[i]; }

  void Unsupported(const std::string& reason) {
    if (unsupported_.empty()) unsupported_ = StrCat(name_, ": ", reason);
  }

  // Struct sizes, argument counts, each tensor on its own, strides. The kind's signature gives
  // the number of outputs unless `min_outputs` allows fewer (optional trailing outputs);
  // `min_inputs` likewise allows optional trailing inputs (n_inputs is then the most).
  Status CheckArgs(uint32_t n_inputs, uint32_t min_outputs = 0, uint32_t min_inputs = 0) {
    if (min_inputs == 0) min_inputs = n_inputs;
    if (op_.n_inputs < min_inputs || op_.n_inputs > n_inputs) {
      if (min_inputs == n_inputs) {
        return InvalidArgument(name_, ": n_inputs=", op_.n_inputs, ", expected ", n_inputs);
      }
      return InvalidArgument(name_, ": n_inputs=", op_.n_inputs, ", expected ", min_inputs, " to ",
                             n_inputs);
    }
    n_inputs = op_.n_inputs;
    const uint32_t max_outputs = static_cast<uint32_t>(sig_.outputs.size());
    if (min_outputs == 0) min_outputs = max_outputs;
    if (op_.n_outputs < min_outputs || op_.n_outputs > max_outputs) {
      if (min_outputs == max_outputs) {
        return InvalidArgument(name_, ": n_outputs=", op_.n_outputs, ", expected ", max_outputs);
      }
      return InvalidArgument(name_, ": n_outputs=", op_.n_outputs, ", expected ", min_outputs,
                             " to ", max_outputs);
    }
    if (n_inputs > 0 && op_.inputs == nullptr) return InvalidArgument(name_, ": inputs is NULL");
    if (op_.outputs == nullptr) return InvalidArgument(name_, ": outputs is NULL");
    for (uint32_t i = 0; i < n_inputs; ++i) {
      KESTREL_SDK_RETURN_IF_ERROR(CheckTensor(in(i), InLabel(i)));
    }
    for (uint32_t i = 0; i < op_.n_outputs; ++i) {
      KESTREL_SDK_RETURN_IF_ERROR(CheckTensor(out(i), OutLabel(i)));
    }
    return Status();
  }

  // dtype must be in `contract` (else INVALID_ARGUMENT) and in `runs` (else unsupported).
  Status Dtype(const kestrel_tensor_desc_t& d, const std::string& label, uint64_t contract,
               uint64_t runs) {
    if (!InMask(contract, d.dtype)) {
      return InvalidArgument(name_, ": ", label, " dtype ", DtypeName(d.dtype), " (", d.dtype,
                             ") is not allowed for this op");
    }
    if (!InMask(runs, d.dtype)) {
      Unsupported(StrCat(label, " dtype ", DtypeName(d.dtype), " is not implemented"));
    }
    return Status();
  }

  Status Rank(const kestrel_tensor_desc_t& d, const std::string& label, uint32_t rank) {
    if (d.rank != rank) {
      return InvalidArgument(name_, ": ", label, " rank=", d.rank, ", expected ", rank);
    }
    return Status();
  }

  // a.dims[ia] == b.dims[ib]
  Status SameDim(const kestrel_tensor_desc_t& a, const std::string& la, int ia,
                 const kestrel_tensor_desc_t& b, const std::string& lb, int ib) {
    if (a.dims[ia] != b.dims[ib]) {
      return InvalidArgument(name_, ": ", la, " dims[", ia, "]=", a.dims[ia], " != ", lb, " dims[",
                             ib, "]=", b.dims[ib]);
    }
    return Status();
  }

  // All dims of a and b equal (same rank already checked).
  Status SameShape(const kestrel_tensor_desc_t& a, const std::string& la,
                   const kestrel_tensor_desc_t& b, const std::string& lb) {
    for (uint32_t i = 0; i < a.rank; ++i) {
      KESTREL_SDK_RETURN_IF_ERROR(SameDim(a, la, i, b, lb, i));
    }
    return Status();
  }

  // d.dims[i] == value (a value from the params or derived from another tensor).
  Status DimIs(const kestrel_tensor_desc_t& d, const std::string& label, int i, int64_t value,
               const std::string& what) {
    if (d.dims[i] != value) {
      return InvalidArgument(name_, ": ", label, " dims[", i, "]=", d.dims[i], " != ", what, "=",
                             value);
    }
    return Status();
  }

  // One argument's rank and dtypes: `contract` the dtypes the op allows at all (else
  // INVALID_ARGUMENT), `runs` those the reference kernels implement (else unsupported).
  struct ArgSpec {
    bool output;
    int index;
    uint32_t rank;
    uint64_t contract;
    uint64_t runs;
  };
  static ArgSpec In(int i, uint32_t rank, uint64_t contract, uint64_t runs) {
    return {false, i, rank, contract, runs};
  }
  static ArgSpec Out(int i, uint32_t rank, uint64_t contract, uint64_t runs) {
    return {true, i, rank, contract, runs};
  }

  // Every spec's rank, then every spec's dtype: a wrong rank is reported before a wrong dtype.
  Status Expect(std::initializer_list<ArgSpec> specs) {
    for (const ArgSpec& a : specs) {
      KESTREL_SDK_RETURN_IF_ERROR(Rank(Arg(a), Label(a), a.rank));
    }
    for (const ArgSpec& a : specs) {
      KESTREL_SDK_RETURN_IF_ERROR(Dtype(Arg(a), Label(a), a.contract, a.runs));
    }
    return Status();
  }

 private:
  const kestrel_tensor_desc_t& Arg(const ArgSpec& a) const {
    return a.output ? out(a.index) : in(a.index);
  }
  const std::string& Label(const ArgSpec& a) const {
    return a.output ? OutLabel(a.index) : InLabel(a.index);
  }

  Status CheckTensor(const kestrel_tensor_desc_t& d, const std::string& label) {
    KESTREL_SDK_RETURN_IF_ERROR(ValidateTensorDescIn(d, name_, label));
    if (!IsPackedLayout(d)) Unsupported(StrCat(label, " has a non-packed stride"));
    return Status();
  }

  const kestrel_op_desc_t& op_;
  const OpSignature& sig_;
  const std::string& name_;
  std::string unsupported_;
};

// Shorthand: return on error.
#define RET(expr) KESTREL_SDK_RETURN_IF_ERROR(expr)

constexpr auto kIn = &Checker::In;
constexpr auto kOut = &Checker::Out;

Status CheckEmbedding(Checker& c, const kestrel_op_desc_t& op) {
  if (op.op_version == 2) {
    kestrel_op_embedding_params_t p;
    RET(ReadParams(op, c.name(), &p));
    if (!std::isfinite(p.scale)) {
      return InvalidArgument(c.name(), ": params.scale=", p.scale, " is not finite");
    }
  }
  RET(c.CheckArgs(2));
  const auto &table = c.in(0), &ids = c.in(1), &out = c.out(0);
  RET(c.Expect({kIn(0, 2, kWeightDtypes, kWeightDtypes), kIn(1, 1, kI32, kI32),
                kOut(0, 2, kFloatDtypes, kF32)}));
  RET(c.SameDim(out, c.OutLabel(0), 0, ids, c.InLabel(1), 0));
  RET(c.SameDim(out, c.OutLabel(0), 1, table, c.InLabel(0), 1));
  return Status();
}

Status CheckRmsNorm(Checker& c, const kestrel_op_desc_t& op) {
  RET(c.CheckArgs(2));
  const auto &x = c.in(0), &w = c.in(1), &out = c.out(0);
  RET(c.Expect({kIn(0, 2, kFloatDtypes, kF32), kIn(1, 1, kFloatDtypes, kF32),
                kOut(0, 2, kFloatDtypes, kF32)}));
  RET(c.SameDim(w, c.InLabel(1), 0, x, c.InLabel(0), 1));
  RET(c.SameShape(out, c.OutLabel(0), x, c.InLabel(0)));
  kestrel_op_rmsnorm_params_t p;
  RET(ReadParams(op, c.name(), &p));
  if (!(p.eps >= 0.0f) || !std::isfinite(p.eps)) {
    return InvalidArgument(c.name(), ": params.eps=", p.eps, " is not a finite value >= 0");
  }
  return Status();
}

Status CheckRope(Checker& c, const kestrel_op_desc_t& op) {
  RET(c.CheckArgs(3, /*min_outputs=*/0, /*min_inputs=*/2));
  const auto &x = c.in(0), &pos = c.in(1), &out = c.out(0);
  RET(c.Expect({kIn(0, 3, kFloatDtypes, kF32), kIn(1, 1, kI32, kI32),
                kOut(0, 3, kFloatDtypes, kF32)}));
  RET(c.SameDim(pos, c.InLabel(1), 0, x, c.InLabel(0), 0));
  RET(c.SameShape(out, c.OutLabel(0), x, c.InLabel(0)));
  kestrel_op_rope_params_t p;
  RET(ReadParams(op, c.name(), &p));
  if (p.style != KESTREL_ROPE_STYLE_NORM && p.style != KESTREL_ROPE_STYLE_NEOX) {
    return InvalidArgument(c.name(), ": params.style=", p.style, " is not NORM (0) or NEOX (2)");
  }
  if (p.n_rot % 2 != 0 || static_cast<int64_t>(p.n_rot) > x.dims[2]) {
    return InvalidArgument(c.name(), ": params.n_rot=", p.n_rot, " must be even and <= ",
                           c.InLabel(0), " dims[2]=", x.dims[2]);
  }
  if (!(p.freq_base > 0.0f) || !std::isfinite(p.freq_base) || !std::isfinite(p.freq_scale)) {
    return InvalidArgument(c.name(), ": params.freq_base=", p.freq_base,
                           " must be finite and > 0 and params.freq_scale=", p.freq_scale,
                           " finite");
  }
  if (op.n_inputs > 2) {  // freq_factors [n_rot / 2]
    const auto& ff = c.in(2);
    RET(c.Expect({kIn(2, 1, kFloatDtypes, kF32)}));
    RET(c.DimIs(ff, c.InLabel(2), 0, p.n_rot / 2, "params.n_rot / 2"));
  }
  return Status();
}

// x [T, K] times w [N, K]^T -> out [T, N]; shared by MATMUL and LOGITS (where T is R).
Status CheckMatmul(Checker& c, const kestrel_op_desc_t& op) {
  RET(c.CheckArgs(3, /*min_outputs=*/0, /*min_inputs=*/2));
  const auto &x = c.in(0), &w = c.in(1), &out = c.out(0);
  RET(c.Expect({kIn(0, 2, kFloatDtypes, kF32), kIn(1, 2, kWeightDtypes, kWeightDtypes),
                kOut(0, 2, kFloatDtypes, kF32)}));
  RET(c.SameDim(w, c.InLabel(1), 1, x, c.InLabel(0), 1));
  RET(c.SameDim(out, c.OutLabel(0), 0, x, c.InLabel(0), 0));
  RET(c.SameDim(out, c.OutLabel(0), 1, w, c.InLabel(1), 0));
  if (op.n_inputs > 2) {  // bias [N]
    const auto& bias = c.in(2);
    RET(c.Expect({kIn(2, 1, kFloatDtypes, kF32)}));
    RET(c.SameDim(bias, c.InLabel(2), 0, w, c.InLabel(1), 0));
  }
  return Status();
}

Status CheckLogits(Checker& c) {
  RET(c.CheckArgs(3));
  const auto &x = c.in(0), &w = c.in(1), &rows = c.in(2), &out = c.out(0);
  RET(c.Expect({kIn(0, 2, kFloatDtypes, kF32), kIn(1, 2, kWeightDtypes, kWeightDtypes),
                kIn(2, 1, kI32, kI32), kOut(0, 2, kFloatDtypes, kF32)}));
  RET(c.SameDim(w, c.InLabel(1), 1, x, c.InLabel(0), 1));
  RET(c.SameDim(out, c.OutLabel(0), 0, rows, c.InLabel(2), 0));
  RET(c.SameDim(out, c.OutLabel(0), 1, w, c.InLabel(1), 0));
  return Status();
}

Status CheckElementwise(Checker& c) {
  RET(c.CheckArgs(2));
  const auto &a = c.in(0), &b = c.in(1), &out = c.out(0);
  RET(c.Expect({kIn(0, 2, kFloatDtypes, kF32), kIn(1, 2, kFloatDtypes, kF32),
                kOut(0, 2, kFloatDtypes, kF32)}));
  RET(c.SameShape(b, c.InLabel(1), a, c.InLabel(0)));
  RET(c.SameShape(out, c.OutLabel(0), a, c.InLabel(0)));
  return Status();
}

// Both caches: rank 4, same dims, F32/F16 (anything else of a known dtype is unsupported).
Status CheckCaches(Checker& c, const kestrel_tensor_desc_t& k, const std::string& lk,
                   const kestrel_tensor_desc_t& v, const std::string& lv) {
  RET(c.Rank(k, lk, 4));
  RET(c.Rank(v, lv, 4));
  RET(c.Dtype(k, lk, kKnownDtypes, kCacheDtypes));
  RET(c.Dtype(v, lv, kKnownDtypes, kCacheDtypes));
  RET(c.SameShape(v, lv, k, lk));
  return Status();
}

Status CheckKvWrite(Checker& c) {
  RET(c.CheckArgs(3));
  const auto &k = c.in(0), &v = c.in(1), &slots = c.in(2);
  const auto &kc = c.out(0), &vc = c.out(1);
  RET(c.Expect({kIn(0, 3, kFloatDtypes, kF32), kIn(1, 3, kFloatDtypes, kF32),
                kIn(2, 1, kI32, kI32)}));
  RET(CheckCaches(c, kc, c.OutLabel(0), vc, c.OutLabel(1)));
  RET(c.SameShape(v, c.InLabel(1), k, c.InLabel(0)));
  RET(c.SameDim(slots, c.InLabel(2), 0, k, c.InLabel(0), 0));
  RET(c.SameDim(kc, c.OutLabel(0), 2, k, c.InLabel(0), 1));
  RET(c.SameDim(kc, c.OutLabel(0), 3, k, c.InLabel(0), 2));
  return Status();
}

Status CheckKvBlockCopy(Checker& c) {
  RET(c.CheckArgs(1));
  const auto& pairs = c.in(0);
  RET(c.Expect({kIn(0, 2, kI32, kI32)}));
  RET(c.DimIs(pairs, c.InLabel(0), 1, 2, "2 (source, destination)"));
  RET(CheckCaches(c, c.out(0), c.OutLabel(0), c.out(1), c.OutLabel(1)));
  return Status();
}

Status CheckAttention(Checker& c, const kestrel_op_desc_t& op) {
  kestrel_op_attention_params_t p;
  RET(ReadGrownParams(op, c.name(), kAttentionParamsV1Size, &p));
  if (p.tree_mask > 1) {
    return InvalidArgument(c.name(), ": params.tree_mask=", p.tree_mask, " is not 0 or 1");
  }
  if (p.causal > 1) {
    return InvalidArgument(c.name(), ": params.causal=", p.causal, " is not 0 or 1");
  }
  if (op.op_version == 2 && !KESTREL_PLUGIN_HAS_SLOT(&p, kestrel_op_attention_params_t, window)) {
    return InvalidArgument(c.name(), ": op_version 2 needs params with the window field "
                           "(params.struct_size=", p.struct_size, " < ",
                           sizeof(kestrel_op_attention_params_t), ")");
  }
  RET(c.CheckArgs(p.tree_mask ? 7 : 6));
  const auto &q = c.in(0), &kc = c.in(1), &vc = c.in(2), &tables = c.in(3);
  const auto &starts = c.in(4), &lens = c.in(5), &out = c.out(0);
  if (p.n_heads == 0 || p.n_kv_heads == 0 || p.n_heads % p.n_kv_heads != 0) {
    return InvalidArgument(c.name(), ": params.n_heads=", p.n_heads,
                           " must be a positive multiple of params.n_kv_heads=", p.n_kv_heads);
  }
  if (p.head_dim == 0 || p.block_size == 0) {
    return InvalidArgument(c.name(), ": params.head_dim=", p.head_dim, " and params.block_size=",
                           p.block_size, " must be positive");
  }
  if (!std::isfinite(p.scale)) {
    return InvalidArgument(c.name(), ": params.scale=", p.scale, " is not finite");
  }
  RET(c.Expect({kIn(0, 3, kFloatDtypes, kF32), kIn(3, 2, kI32, kI32), kIn(4, 1, kI32, kI32),
                kIn(5, 1, kI32, kI32), kOut(0, 3, kFloatDtypes, kF32)}));
  RET(CheckCaches(c, kc, c.InLabel(1), vc, c.InLabel(2)));
  RET(c.DimIs(q, c.InLabel(0), 1, p.n_heads, "params.n_heads"));
  RET(c.DimIs(q, c.InLabel(0), 2, p.head_dim, "params.head_dim"));
  RET(c.DimIs(kc, c.InLabel(1), 1, p.block_size, "params.block_size"));
  RET(c.DimIs(kc, c.InLabel(1), 2, p.n_kv_heads, "params.n_kv_heads"));
  RET(c.DimIs(kc, c.InLabel(1), 3, p.head_dim, "params.head_dim"));
  RET(c.DimIs(starts, c.InLabel(4), 0, tables.dims[0] + 1,
              StrCat(c.InLabel(3), " dims[0] + 1")));
  RET(c.SameDim(lens, c.InLabel(5), 0, tables, c.InLabel(3), 0));
  RET(c.SameShape(out, c.OutLabel(0), q, c.InLabel(0)));
  if (p.tree_mask) {
    const auto& parents = c.in(6);
    RET(c.Expect({kIn(6, 1, kI32, kI32)}));
    RET(c.SameDim(parents, c.InLabel(6), 0, q, c.InLabel(0), 0));
  }
  return Status();
}

// x [T, D], router [E, D], gate/up [El, F, D], down [El, D, F] -> out [T, D], stats I32 [E].
Status CheckMoe(Checker& c, const kestrel_op_desc_t& op) {
  kestrel_op_moe_params_t p;
  RET(ReadParams(op, c.name(), &p));
  if (p.n_experts == 0) return InvalidArgument(c.name(), ": params.n_experts=0 must be >= 1");
  if (p.top_k == 0 || p.top_k > p.n_experts) {
    return InvalidArgument(c.name(), ": params.top_k=", p.top_k, " is outside [1, params.n_experts=",
                           p.n_experts, "]");
  }
  if (p.routing > KESTREL_MOE_ROUTING_SIGMOID_TOPK) {
    return InvalidArgument(c.name(), ": params.routing=", p.routing,
                           " is not a kestrel_moe_routing_t (0..2)");
  }
  if (p.activation != KESTREL_MOE_ACTIVATION_SWIGLU) {
    return InvalidArgument(c.name(), ": params.activation=", p.activation,
                           " is not a kestrel_moe_activation_t (SWIGLU = 0)");
  }
  if (p.n_local_experts == 0 ||
      uint64_t{p.first_expert} + p.n_local_experts > uint64_t{p.n_experts}) {
    return InvalidArgument(c.name(), ": params.first_expert=", p.first_expert,
                           " + params.n_local_experts=", p.n_local_experts,
                           " must be in [1, params.n_experts=", p.n_experts, "]");
  }
  if (p.flags != 0) {
    return InvalidArgument(c.name(), ": params.flags=", p.flags, " has reserved bits set");
  }
  if (p.n_shared_experts != 0) {
    return InvalidArgument(c.name(), ": params.n_shared_experts=", p.n_shared_experts,
                           " must be 0 (shared experts are not part of op_version 1)");
  }
  RET(c.CheckArgs(5, /*min_outputs=*/1));
  const auto &x = c.in(0), &router = c.in(1), &gate = c.in(2), &up = c.in(3), &down = c.in(4);
  const auto& out = c.out(0);
  RET(c.Expect({kIn(0, 2, kFloatDtypes, kF32), kIn(1, 2, kWeightDtypes, kWeightDtypes),
                kIn(2, 3, kWeightDtypes, kWeightDtypes), kIn(3, 3, kWeightDtypes, kWeightDtypes),
                kIn(4, 3, kWeightDtypes, kWeightDtypes), kOut(0, 2, kFloatDtypes, kF32)}));
  RET(c.DimIs(router, c.InLabel(1), 0, p.n_experts, "params.n_experts"));
  RET(c.SameDim(router, c.InLabel(1), 1, x, c.InLabel(0), 1));
  RET(c.DimIs(gate, c.InLabel(2), 0, p.n_local_experts, "params.n_local_experts"));
  RET(c.SameDim(gate, c.InLabel(2), 2, x, c.InLabel(0), 1));
  RET(c.SameShape(up, c.InLabel(3), gate, c.InLabel(2)));
  RET(c.DimIs(down, c.InLabel(4), 0, p.n_local_experts, "params.n_local_experts"));
  RET(c.SameDim(down, c.InLabel(4), 1, x, c.InLabel(0), 1));
  RET(c.SameDim(down, c.InLabel(4), 2, gate, c.InLabel(2), 1));
  RET(c.SameShape(out, c.OutLabel(0), x, c.InLabel(0)));
  if (op.n_outputs > 1) {
    const auto& stats = c.out(1);
    RET(c.Expect({kOut(1, 1, kI32, kI32)}));
    RET(c.DimIs(stats, c.OutLabel(1), 0, p.n_experts, "params.n_experts"));
  }
  return Status();
}

#undef RET

}  // namespace

uint32_t MaxOpVersion(uint32_t kind) {
  return kind == KESTREL_OP_EMBEDDING_GATHER || kind == KESTREL_OP_PAGED_ATTENTION ? 2 : 1;
}

float EmbeddingScaleOf(const kestrel_op_desc_t& op) {
  if (op.op_version < 2) return 1.0f;
  kestrel_op_embedding_params_t p;
  std::memcpy(&p, op.params, sizeof p);
  return p.scale;
}

kestrel_op_attention_params_t AttentionParamsOf(const kestrel_op_desc_t& op) {
  kestrel_op_attention_params_t p;
  uint32_t struct_size;
  std::memcpy(&struct_size, op.params, sizeof struct_size);
  std::memset(&p, 0, sizeof p);
  std::memcpy(&p, op.params, std::min<size_t>(struct_size, sizeof p));
  if (op.op_version < 2) p.window = 0;
  return p;
}

bool IsImplementedKind(uint32_t kind) {
  return FindSignature(kind) != nullptr;
}

std::string OpKindName(uint32_t kind) {
  switch (kind) {
    case KESTREL_OP_EMBEDDING_GATHER: return "EMBEDDING_GATHER";
    case KESTREL_OP_RMSNORM: return "RMSNORM";
    case KESTREL_OP_ROPE: return "ROPE";
    case KESTREL_OP_MATMUL: return "MATMUL";
    case KESTREL_OP_SWIGLU: return "SWIGLU";
    case KESTREL_OP_ADD: return "ADD";
    case KESTREL_OP_KV_WRITE: return "KV_WRITE";
    case KESTREL_OP_KV_BLOCK_COPY: return "KV_BLOCK_COPY";
    case KESTREL_OP_PAGED_ATTENTION: return "PAGED_ATTENTION";
    case KESTREL_OP_LOGITS: return "LOGITS";
    case KESTREL_OP_MOE: return "MOE";
    case KESTREL_OP_GEGLU: return "GEGLU";
    default: return StrCat("kind(", kind, ")");
  }
}

namespace {

// The checks of ValidateTensorDesc; `what()` builds the label only when there is an error (this
// runs for every tensor of every op).
template <typename What>
Status ValidateTensorDescImpl(const kestrel_tensor_desc_t& d, const What& what) {
  if (d.struct_size < sizeof(kestrel_tensor_desc_t)) {
    return InvalidArgument(what(), " desc.struct_size=", d.struct_size, " < ",
                           sizeof(kestrel_tensor_desc_t));
  }
  if (!InMask(kKnownDtypes, d.dtype)) {
    return InvalidArgument(what(), " dtype=", d.dtype, " is not a known kestrel_dtype_t");
  }
  if (d.rank < 1 || d.rank > KESTREL_MAX_DIMS) {
    return InvalidArgument(what(), " rank=", d.rank, " is outside [1, ", KESTREL_MAX_DIMS, "]");
  }
  for (uint32_t i = 0; i < d.rank; ++i) {
    if (d.dims[i] < 0) return InvalidArgument(what(), " dims[", i, "]=", d.dims[i], " < 0");
  }
  const int64_t inner = d.dims[d.rank - 1];
  const int64_t block = DtypeBlockElements(d.dtype);
  if (inner % block != 0) {
    return InvalidArgument(what(), " dims[", d.rank - 1, "]=", inner, " is not a multiple of the ",
                           DtypeName(d.dtype), " block size ", block);
  }
  // Total bytes, with overflow checks: rows * row bytes.
  uint64_t bytes = RowBytes(d.dtype, inner);
  for (uint32_t i = 0; i + 1 < d.rank; ++i) {
    const uint64_t dim = static_cast<uint64_t>(d.dims[i]);
    if (dim != 0 && bytes > kMaxTensorBytes / dim) {
      return InvalidArgument(what(), " is too large (more than 2^62 bytes)");
    }
    bytes *= dim;
  }
  if (bytes > kMaxTensorBytes) return InvalidArgument(what(), " is too large (more than 2^62 bytes)");
  return Status();
}

}  // namespace

Status ValidateTensorDesc(const kestrel_tensor_desc_t& d, const std::string& what) {
  return ValidateTensorDescImpl(d, [&] { return what; });
}

Status ValidateTensorDescIn(const kestrel_tensor_desc_t& d, const std::string& prefix,
                            const std::string& label) {
  return ValidateTensorDescImpl(d, [&] { return StrCat(prefix, ": ", label); });
}

bool IsPackedLayout(const kestrel_tensor_desc_t& d) {
  const uint32_t last = d.rank - 1;
  // For block-quantized dtypes only the rows have a byte stride; the innermost dim must be 0.
  if (IsBlockQuantized(d.dtype) && d.strides[last] != 0 && d.dims[last] != 1) return false;
  uint64_t packed = IsBlockQuantized(d.dtype) ? RowBytes(d.dtype, d.dims[last])
                                              : DtypeBlockBytes(d.dtype);
  if (!IsBlockQuantized(d.dtype) && d.strides[last] != 0 && d.dims[last] != 1 &&
      static_cast<uint64_t>(d.strides[last]) != packed) {
    return false;
  }
  if (!IsBlockQuantized(d.dtype)) packed *= static_cast<uint64_t>(d.dims[last]);
  for (int i = static_cast<int>(last) - 1; i >= 0; --i) {
    if (d.strides[i] != 0 && d.dims[i] != 1 && static_cast<uint64_t>(d.strides[i]) != packed) {
      return false;
    }
    packed *= static_cast<uint64_t>(d.dims[i]);
  }
  return true;
}

uint64_t TensorBytes(const kestrel_tensor_desc_t& d) {
  uint64_t bytes = RowBytes(d.dtype, d.dims[d.rank - 1]);
  for (uint32_t i = 0; i + 1 < d.rank; ++i) bytes *= static_cast<uint64_t>(d.dims[i]);
  return bytes;
}

uint64_t DtypeAlignment(uint32_t dtype) {
  switch (dtype) {
    case KESTREL_DTYPE_F32:
    case KESTREL_DTYPE_I32:
      return 4;
    case KESTREL_DTYPE_I8:
      return 1;
    default:
      return 2;
  }
}

Status CheckOp(const kestrel_op_desc_t& op, OpCheck* out) {
  out->supported = false;
  out->reason.clear();
  if (op.struct_size < sizeof(kestrel_op_desc_t)) {
    return InvalidArgument("op desc struct_size=", op.struct_size, " < ",
                           sizeof(kestrel_op_desc_t));
  }
  const OpSignature* sig = FindSignature(op.kind);
  if (sig == nullptr) {
    out->reason = StrCat(OpKindName(op.kind), ": kind not implemented by the reference kernels");
    return Status();
  }
  const uint32_t max_version = MaxOpVersion(op.kind);
  if (op.op_version < 1 || op.op_version > max_version) {
    out->reason = StrCat(OpKindName(op.kind), ": op_version=", op.op_version,
                         " (versions 1 to ", max_version, " are implemented)");
    return Status();
  }
  Checker c(op, *sig);
  Status status;
  switch (op.kind) {
    case KESTREL_OP_EMBEDDING_GATHER: status = CheckEmbedding(c, op); break;
    case KESTREL_OP_RMSNORM: status = CheckRmsNorm(c, op); break;
    case KESTREL_OP_ROPE: status = CheckRope(c, op); break;
    case KESTREL_OP_MATMUL: status = CheckMatmul(c, op); break;
    case KESTREL_OP_SWIGLU:
    case KESTREL_OP_GEGLU:
    case KESTREL_OP_ADD: status = CheckElementwise(c); break;
    case KESTREL_OP_KV_WRITE: status = CheckKvWrite(c); break;
    case KESTREL_OP_KV_BLOCK_COPY: status = CheckKvBlockCopy(c); break;
    case KESTREL_OP_PAGED_ATTENTION: status = CheckAttention(c, op); break;
    case KESTREL_OP_LOGITS: status = CheckLogits(c); break;
    case KESTREL_OP_MOE: status = CheckMoe(c, op); break;
    default: return Internal("CheckOp: no checker for ", c.name());
  }
  if (!status.ok()) return status;
  out->supported = c.unsupported().empty();
  out->reason = c.unsupported();
  return Status();
}

}  // namespace kestrel::plugin_sdk
