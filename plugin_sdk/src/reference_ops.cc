#include "kestrel/plugin_sdk/reference_ops.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/reference_kernels.h"

namespace kestrel::plugin_sdk {
namespace {

KvCacheView CacheView(const kestrel_tensor_desc_t& d, void* data) {
  KvCacheView v;
  v.dtype = d.dtype;
  v.data = data;
  v.n_blocks = d.dims[0];
  v.block_size = d.dims[1];
  v.n_kv_heads = d.dims[2];
  v.head_dim = d.dims[3];
  return v;
}

bool Overlaps(const void* a, uint64_t a_bytes, const void* b, uint64_t b_bytes) {
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a);
  const uintptr_t b0 = reinterpret_cast<uintptr_t>(b);
  return a_bytes != 0 && b_bytes != 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

}  // namespace

Status ExecuteOp(const kestrel_op_desc_t& op, const void* const* inputs, void* const* outputs) {
  const auto in_f32 = [&](int i) { return static_cast<const float*>(inputs[i]); };
  const auto in_i32 = [&](int i) { return static_cast<const int32_t*>(inputs[i]); };
  float* const out_f32 = static_cast<float*>(outputs[0]);
  const kestrel_tensor_desc_t& d0 = op.inputs[0].desc;
  switch (op.kind) {
    case KESTREL_OP_EMBEDDING_GATHER:
      return EmbeddingGather(d0.dtype, inputs[0], d0.dims[0], d0.dims[1], in_i32(1),
                             op.inputs[1].desc.dims[0], out_f32, EmbeddingScaleOf(op));
    case KESTREL_OP_RMSNORM: {
      kestrel_op_rmsnorm_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      RmsNorm(in_f32(0), in_f32(1), d0.dims[0], d0.dims[1], p.eps, out_f32);
      return Status();
    }
    case KESTREL_OP_ROPE: {
      kestrel_op_rope_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      RopeParams rp;
      rp.style = p.style;
      rp.n_rot = p.n_rot;
      rp.freq_base = p.freq_base;
      rp.freq_scale = p.freq_scale;
      if (op.n_inputs > 2) {
        rp.freq_factors = in_f32(2);
        for (uint32_t i = 0; i < p.n_rot / 2; ++i) {
          if (!(rp.freq_factors[i] > 0.0f) || !std::isfinite(rp.freq_factors[i])) {
            return InvalidArgument("ROPE: freq_factors[", i, "]=", rp.freq_factors[i],
                                   " is not finite and > 0");
          }
        }
      }
      Rope(in_f32(0), in_i32(1), d0.dims[0], d0.dims[1], d0.dims[2], rp, out_f32);
      return Status();
    }
    case KESTREL_OP_MATMUL: {
      const kestrel_tensor_desc_t& w = op.inputs[1].desc;
      const float* x = in_f32(0);
      // The kernel needs out and x disjoint; the contract does not promise it, so copy x if not.
      std::vector<float> x_copy;
      const uint64_t x_bytes = TensorBytes(d0);
      const uint64_t out_bytes = TensorBytes(op.outputs[0].desc);
      if (Overlaps(x, x_bytes, out_f32, out_bytes)) {
        x_copy.assign(x, x + x_bytes / sizeof(float));
        x = x_copy.data();
      }
      Matmul(x, d0.dims[0], d0.dims[1], w.dtype, inputs[1], w.dims[0], out_f32);
      if (op.n_inputs > 2) AddBias(in_f32(2), d0.dims[0], w.dims[0], out_f32);
      return Status();
    }
    case KESTREL_OP_SWIGLU:
      Swiglu(in_f32(0), in_f32(1), d0.dims[0] * d0.dims[1], out_f32);
      return Status();
    case KESTREL_OP_GEGLU:
      Geglu(in_f32(0), in_f32(1), d0.dims[0] * d0.dims[1], out_f32);
      return Status();
    case KESTREL_OP_ADD:
      Add(in_f32(0), in_f32(1), d0.dims[0] * d0.dims[1], out_f32);
      return Status();
    case KESTREL_OP_KV_WRITE:
      return KvWrite(in_f32(0), in_f32(1), in_i32(2), d0.dims[0],
                     CacheView(op.outputs[0].desc, outputs[0]),
                     CacheView(op.outputs[1].desc, outputs[1]));
    case KESTREL_OP_KV_BLOCK_COPY:
      return KvBlockCopy(in_i32(0), d0.dims[0], CacheView(op.outputs[0].desc, outputs[0]),
                         CacheView(op.outputs[1].desc, outputs[1]));
    case KESTREL_OP_PAGED_ATTENTION: {
      const kestrel_op_attention_params_t p = AttentionParamsOf(op);
      AttentionParams ap;
      ap.n_heads = p.n_heads;
      ap.n_kv_heads = p.n_kv_heads;
      ap.head_dim = p.head_dim;
      ap.causal = p.causal != 0;
      ap.scale = p.scale;
      ap.window = p.window;
      const kestrel_tensor_desc_t& tables = op.inputs[3].desc;
      // The caches are inputs here: the kernel only reads them.
      return PagedAttention(in_f32(0), CacheView(op.inputs[1].desc, const_cast<void*>(inputs[1])),
                            CacheView(op.inputs[2].desc, const_cast<void*>(inputs[2])),
                            in_i32(3), tables.dims[0], tables.dims[1], in_i32(4), in_i32(5),
                            p.tree_mask ? in_i32(6) : nullptr, d0.dims[0], ap, out_f32);
    }
    case KESTREL_OP_LOGITS: {
      const kestrel_tensor_desc_t& w = op.inputs[1].desc;
      return Logits(in_f32(0), d0.dims[0], d0.dims[1], w.dtype, inputs[1], w.dims[0], in_i32(2),
                    op.inputs[2].desc.dims[0], out_f32);
    }
    case KESTREL_OP_MOE: {
      kestrel_op_moe_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      MoeParams mp;
      mp.n_experts = p.n_experts;
      mp.top_k = p.top_k;
      mp.routing = p.routing;
      mp.first_expert = p.first_expert;
      mp.n_local_experts = p.n_local_experts;
      const kestrel_tensor_desc_t &router = op.inputs[1].desc, &gate = op.inputs[2].desc;
      ExpertWeights g{gate.dtype, inputs[2]}, u{op.inputs[3].desc.dtype, inputs[3]},
          dn{op.inputs[4].desc.dtype, inputs[4]};
      Moe(in_f32(0), d0.dims[0], d0.dims[1], gate.dims[1], router.dtype, inputs[1], g, u, dn, mp,
          out_f32, op.n_outputs > 1 ? static_cast<int32_t*>(outputs[1]) : nullptr);
      return Status();
    }
    default:
      return Unimplemented(OpKindName(op.kind), ": not implemented by the reference kernels");
  }
}

}  // namespace kestrel::plugin_sdk
