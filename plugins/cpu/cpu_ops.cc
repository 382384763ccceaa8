#include "cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_moe.h"
#include "onednn_gemm.h"
#include "packed_weight.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/reference_ops.h"

namespace kestrel::plugins::cpu {
namespace {

using plugin_sdk::InvalidArgument;
using plugin_sdk::OutOfRange;
using plugin_sdk::StrCat;

bool Overlaps(const void* a, uint64_t a_bytes, const void* b, uint64_t b_bytes) {
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a);
  const uintptr_t b0 = reinterpret_cast<uintptr_t>(b);
  return a_bytes != 0 && b_bytes != 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Below this many multiply-adds an op runs on the calling thread: waking the workers costs more
// (tiny models such as stories260K have 64x64 matmuls).
constexpr int64_t kMinParallelMacs = int64_t{1} << 18;

// Rows per task: enough tasks to balance the threads, rows a multiple of 16.
int64_t RowChunk(int64_t n, int64_t k, int n_threads, int64_t n_tokens) {
  if (n * k * n_tokens < kMinParallelMacs) return std::max<int64_t>(n, 1);
  const int64_t tasks = n_tokens == 1 ? n_threads * 16 : n_threads * 4;
  return std::max<int64_t>(16, RoundUp((n + tasks - 1) / tasks, 16));
}

// From this many tokens on, Q4_0/Q8_0 matmuls use the tile kernel where the level has one.
constexpr int64_t kTileMinTokens = 8;

// quantize(t, thread) for each of T activation rows of length K: on the pool when there is enough
// work to pay for waking it, else on the calling thread.
template <typename F>
void QuantizeRows(ThreadPool& pool, int64_t T, int64_t K, F&& quantize) {
  if (T >= 8 && T * K >= kMinParallelMacs / 16) {
    pool.Run(T, quantize);
  } else {
    for (int64_t t = 0; t < T; ++t) quantize(t, 0);
  }
}

// Per-thread scratch (the pool's threads are persistent, so this is allocated once per thread).
float* ScratchF32(size_t n) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < n) scratch.resize(n);
  return scratch.data();
}

// A repacked Q4_1/Q5_0/Q5_1/Q2_K..Q6_K weight (kernels_kquants.h): 8-bit activations per 32
// elements and the level's KQ GEMM, or (exact) panels dequantized to f32 and the f32 GEMM.
void MatmulKq(const OpContext& ctx, const float* x, int64_t T, int64_t K, const KWeightView& w,
              int64_t N, int64_t chunk, float* y) {
  const KernelTable& kt = *ctx.kernels;
  ThreadPool& pool = *ctx.pool;
  const int64_t n_chunks = (N + chunk - 1) / chunk;
  if (ctx.exact) {
    constexpr int64_t kPanel = 16;
    pool.Run(n_chunks, [&](int64_t c, int) {
      const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
      float* panel = ScratchF32(static_cast<size_t>(kPanel * K));
      for (int64_t p0 = n0; p0 < n1; p0 += kPanel) {
        const int64_t p1 = std::min(n1, p0 + kPanel);
        DequantKRows(w, p0, p1, panel, K);
        kt.gemm_f32(panel, K, x, K, K, T, 0, p1 - p0, y + p0, N);
      }
    });
    return;
  }
  const KQuantKernels& kk = GetKQuantKernels(kt.level);
  const int64_t nsb = w.n_sb;
  // Kept between ops (a fresh buffer per op costs page faults); 64-byte aligned rows.
  thread_local std::vector<int8_t> qs_buf;
  thread_local std::vector<float> ds_buf;
  const size_t qs_size = static_cast<size_t>(T * nsb * kActSuperBytes);
  const size_t ds_size = static_cast<size_t>(T * nsb * kActSuperFloats);
  if (qs_buf.size() < qs_size) qs_buf.resize(qs_size);
  if (ds_buf.size() < ds_size) ds_buf.resize(ds_size);
  // Workers see their own thread_locals: pass the caller's buffers as plain pointers.
  int8_t* const qs = qs_buf.data();
  float* const ds = ds_buf.data();
  const KActView act{nsb, qs, ds};
  auto quantize = [&](int64_t t, int) {
    kk.quantize_act(x + t * K, K, nsb, qs + t * nsb * kActSuperBytes, ds + t * nsb * kActSuperFloats);
  };
  QuantizeRows(pool, T, K, quantize);
  pool.Run(n_chunks, [&](int64_t c, int) {
    const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
    kk.gemm(w, act, T, n0, n1, y, N);
  });
}

}  // namespace

void MatmulCpu(const OpContext& ctx, const float* x, int64_t T, int64_t K, uint32_t w_dtype,
               const ArgData& w, int64_t N, float* y) {
  if (T == 0 || N == 0) return;
  const KernelTable& kt = *ctx.kernels;
  ThreadPool& pool = *ctx.pool;
  if (K == 0) {
    std::fill(y, y + T * N, 0.0f);
    return;
  }
  const int64_t chunk = RowChunk(N, K, pool.size(), T);
  const int64_t n_chunks = (N + chunk - 1) / chunk;

  if (w.kpacked != nullptr) {
    MatmulKq(ctx, x, T, K, *w.kpacked, N, chunk, y);
    return;
  }

  if (w.packed != nullptr && !ctx.exact && kt.gemm_q_tiles != nullptr && T >= kTileMinTokens) {
    // AMX tiles (kernels_amx.cc): activations quantized once per op, per 16-token tile.
    const QWeightView& qw = *w.packed;
    const int64_t nb = K / kBlock;
    const int64_t n_tiles = (T + kActTileTokens - 1) / kActTileTokens;
    // The caller's buffers, kept between ops (a fresh vector per op costs page faults and a
    // memset of up to T * K bytes).
    thread_local std::vector<int8_t> aq_buf;
    thread_local std::vector<float> ad_buf;
    const size_t aq_size = static_cast<size_t>(n_tiles * nb * kActTileBytesPerBlock);
    const size_t ad_size = static_cast<size_t>(n_tiles * nb * kActTileTokens);
    if (aq_buf.size() < aq_size) aq_buf.resize(aq_size);
    if (ad_buf.size() < ad_size) ad_buf.resize(ad_size);
    int8_t* aq = aq_buf.data();
    float* ad = ad_buf.data();
    pool.Run(n_tiles, [&](int64_t i, int) {
      kt.quantize_act_tile(x, K, T, K, i, aq + i * nb * kActTileBytesPerBlock,
                           ad + i * nb * kActTileTokens);
    });
    pool.Run(n_chunks, [&](int64_t c, int) {
      const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
      kt.gemm_q_tiles(qw, aq, ad, T, n0, n1, y, N);
    });
    return;
  }
  if (w.packed != nullptr && !ctx.exact) {
    const QWeightView& qw = *w.packed;
    const int64_t G = qw.n_groups;
    // The caller's buffers, kept between ops (no allocation per op); workers get plain pointers.
    thread_local std::vector<int8_t> qs_buf;
    thread_local std::vector<int32_t> bias_buf;
    thread_local std::vector<float> d_buf;
    if (qs_buf.size() < static_cast<size_t>(T * G * kActGroupBytes)) {
      qs_buf.resize(static_cast<size_t>(T * G * kActGroupBytes));
    }
    if (bias_buf.size() < static_cast<size_t>(T * G * 16)) bias_buf.resize(static_cast<size_t>(T * G * 16));
    if (d_buf.size() < static_cast<size_t>(T * G * kGroupBlocks)) {
      d_buf.resize(static_cast<size_t>(T * G * kGroupBlocks));
    }
    int8_t* const qs = qs_buf.data();
    int32_t* const bias = bias_buf.data();
    float* const d = d_buf.data();
    QActView act{G, qs, bias, d};
    auto quantize = [&](int64_t t, int) {
      kt.quantize_row_act(x + t * K, K, G, qw.offset, qs + t * G * kActGroupBytes, bias + t * G * 16,
                          d + t * G * kGroupBlocks);
    };
    QuantizeRows(pool, T, K, quantize);
    pool.Run(n_chunks, [&](int64_t c, int) {
      const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
      kt.gemm_q(qw, act, T, n0, n1, y, N);
    });
    return;
  }
  if (w.packed != nullptr || w_dtype == KESTREL_DTYPE_BF16 || plugin_sdk::IsBlockQuantized(w_dtype)) {
    // Exact path: dequantize a panel of rows to f32 (L2-resident), then the f32 kernel.
    constexpr int64_t kPanel = 16;
    const uint64_t row_bytes = plugin_sdk::RowBytes(w_dtype, K);
    pool.Run(n_chunks, [&](int64_t c, int) {
      const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
      float* panel = ScratchF32(static_cast<size_t>(kPanel * K));
      for (int64_t p0 = n0; p0 < n1; p0 += kPanel) {
        const int64_t p1 = std::min(n1, p0 + kPanel);
        if (w.packed != nullptr) {
          kt.dequant_q_rows(*w.packed, p0, p1, panel, K);
        } else {
          for (int64_t j = p0; j < p1; ++j) {
            plugin_sdk::DequantizeRow(w_dtype, static_cast<const uint8_t*>(w.data) + j * row_bytes, K,
                               panel + (j - p0) * K);
          }
        }
        kt.gemm_f32(panel, K, x, K, K, T, 0, p1 - p0, y + p0, N);
      }
    });
    return;
  }
  if (w_dtype == KESTREL_DTYPE_F16 && !ctx.exact && kt.gemm_f16_tiles != nullptr &&
      T >= kTileMinTokens) {
    // F16 prefill on AMX-BF16 tiles (kernels_amx.cc): activations split into bf16 hi/lo tiles
    // once per op (one task per token), weights converted per K block inside the kernel.
    const int64_t kp = RoundUp(K, 32);
    const int64_t tp = RoundUp(T, 32);
    thread_local std::vector<uint16_t> act_buf;
    if (act_buf.size() < static_cast<size_t>(2 * tp * kp)) act_buf.resize(static_cast<size_t>(2 * tp * kp));
    uint16_t* hi = act_buf.data();
    uint16_t* lo = hi + tp * kp;
    pool.Run(tp, [&](int64_t t, int) { kt.split_act_bf16(x, K, T, K, t, hi, lo); });
    pool.Run(n_chunks, [&](int64_t c, int) {
      const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
      kt.gemm_f16_tiles(static_cast<const uint16_t*>(w.data), K, K, hi, lo, T, n0, n1, y, N);
    });
    return;
  }
  if (w_dtype == KESTREL_DTYPE_F16 && T >= kOneDnnMinTokens) {
    // F16 prefill: a panel of rows converted to f32 once, then the f32 GEMM (oneDNN's when
    // enabled), instead of converting every weight vector once per token tile. Panels of 128 to
    // 256 rows: oneDNN's sgemm took 3-5x longer per row with 64 or 96 (measured on Zen 5, 1 thread,
    // K = 2048, T = 128, docs/perf/cpu.md session 5), so each task gets >= 128 rows too.
    constexpr int64_t kPanelMax = 256, kPanelMin = 128;
    const int64_t f16_chunk = std::max(chunk, kPanelMin);
    const int64_t f16_chunks = (N + f16_chunk - 1) / f16_chunk;
    const uint16_t* wh = static_cast<const uint16_t*>(w.data);
    pool.Run(f16_chunks, [&](int64_t c, int) {
      const int64_t n0 = c * f16_chunk, n1 = std::min(N, n0 + f16_chunk);
      const int64_t n_panels = (n1 - n0 + kPanelMax - 1) / kPanelMax;
      const int64_t panel_rows = RoundUp((n1 - n0 + n_panels - 1) / n_panels, 16);
      float* panel = ScratchF32(static_cast<size_t>(panel_rows * K));
      for (int64_t p0 = n0; p0 < n1; p0 += panel_rows) {
        const int64_t p1 = std::min(n1, p0 + panel_rows);
        kt.f16_to_f32(wh + p0 * K, panel, (p1 - p0) * K);
        if (ctx.onednn && OneDnnGemmABt(T, p1 - p0, K, x, K, panel, K, y + p0, N)) continue;
        kt.gemm_f32(panel, K, x, K, K, T, 0, p1 - p0, y + p0, N);
      }
    });
    return;
  }
  const bool use_onednn = ctx.onednn && w_dtype == KESTREL_DTYPE_F32 && T >= kOneDnnMinTokens;
  pool.Run(n_chunks, [&](int64_t c, int) {
    const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
    const float* wf = static_cast<const float*>(w.data);
    if (use_onednn && OneDnnGemmABt(T, n1 - n0, K, x, K, wf + n0 * K, K, y + n0, N)) return;
    if (w_dtype == KESTREL_DTYPE_F16) {
      kt.gemm_f16(static_cast<const uint16_t*>(w.data), K, x, K, K, T, n0, n1, y, N);
    } else {
      kt.gemm_f32(static_cast<const float*>(w.data), K, x, K, K, T, n0, n1, y, N);
    }
  });
}

namespace {

Status EmbeddingGatherCpu(const OpContext& ctx, const kestrel_op_desc_t& op, const ArgData* in,
                          float* out) {
  const kestrel_tensor_desc_t& table = op.inputs[0].desc;
  const int64_t vocab = table.dims[0], dim = table.dims[1];
  const int64_t T = op.inputs[1].desc.dims[0];
  const int32_t* ids = static_cast<const int32_t*>(in[1].data);
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return OutOfRange("EMBEDDING_GATHER: ids[", t, "]=", ids[t], " is outside [0, ", vocab, ")");
    }
  }
  const uint64_t row_bytes = plugin_sdk::RowBytes(table.dtype, dim);
  for (int64_t t = 0; t < T; ++t) {
    if (in[0].packed != nullptr) {
      ctx.kernels->dequant_q_rows(*in[0].packed, ids[t], ids[t] + 1, out + t * dim, dim);
    } else if (in[0].kpacked != nullptr) {
      DequantKRows(*in[0].kpacked, ids[t], ids[t] + 1, out + t * dim, dim);
    } else {
      plugin_sdk::DequantizeRow(table.dtype, static_cast<const uint8_t*>(in[0].data) + ids[t] * row_bytes,
                         dim, out + t * dim);
    }
  }
  const float scale = plugin_sdk::EmbeddingScaleOf(op);
  if (scale != 1.0f) {
    for (int64_t i = 0; i < T * dim; ++i) out[i] *= scale;
  }
  return Status();
}

Status LogitsCpu(const OpContext& ctx, const kestrel_op_desc_t& op, const ArgData* in,
                 float* out) {
  const kestrel_tensor_desc_t& x = op.inputs[0].desc;
  const kestrel_tensor_desc_t& w = op.inputs[1].desc;
  const int64_t T = x.dims[0], D = x.dims[1];
  const int64_t R = op.inputs[2].desc.dims[0];
  const int32_t* rows = static_cast<const int32_t*>(in[2].data);
  for (int64_t r = 0; r < R; ++r) {
    if (rows[r] < 0 || rows[r] >= T) {
      return OutOfRange("LOGITS: rows[", r, "]=", rows[r], " is outside [0, T=", T, ")");
    }
  }
  const float* xp = static_cast<const float*>(in[0].data);
  bool identity = R == T;  // every row in order (a prefill asking for all logits, or a decode step)
  for (int64_t r = 0; identity && r < R; ++r) identity = rows[r] == r;
  if (identity) {
    MatmulCpu(ctx, xp, R, D, w.dtype, in[1], w.dims[0], out);
    return Status();
  }
  thread_local std::vector<float> gathered;
  if (gathered.size() < static_cast<size_t>(R * D)) gathered.resize(static_cast<size_t>(R * D));
  for (int64_t r = 0; r < R; ++r) {
    std::memcpy(gathered.data() + r * D, xp + rows[r] * D, static_cast<size_t>(D) * sizeof(float));
  }
  MatmulCpu(ctx, gathered.data(), R, D, w.dtype, in[1], w.dims[0], out);
  return Status();
}

// GeGLU in float: gelu_tanh(g) = g * sigmoid(2u), u = sqrt(2/pi) (g + 0.044715 g^3), the same
// function as ref's 0.5 g (1 + tanh(u)) in double (1 + tanh(u) = 2 / (1 + exp(-2u))) without its
// cancellation for g << 0; within ~1e-7 of ref. Threaded over chunks: a 128-token Gemma prefill
// has 262144 elements per layer.
void GegluCpu(const OpContext& ctx, const float* gate, const float* up, int64_t n, float* out) {
  constexpr int64_t kChunk = 8192;
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  auto run = [&](int64_t c, int) {
    const int64_t i1 = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < i1; ++i) {
      const float g = gate[i];
      const float u = 0.7978845608028654f * (g + 0.044715f * g * g * g);
      out[i] = g / (1.0f + std::exp(-2.0f * u)) * up[i];
    }
  };
  if (n_chunks == 1) {
    run(0, 0);
  } else {
    ctx.pool->Run(n_chunks, run);
  }
}

}  // namespace

Status ExecuteCpuOp(const OpContext& ctx, const kestrel_op_desc_t& op, const ArgData* inputs,
                    void* const* outputs) {
  switch (op.kind) {
    case KESTREL_OP_MATMUL: {
      const kestrel_tensor_desc_t& xd = op.inputs[0].desc;
      const kestrel_tensor_desc_t& wd = op.inputs[1].desc;
      const float* x = static_cast<const float*>(inputs[0].data);
      float* y = static_cast<float*>(outputs[0]);
      std::vector<float> x_copy;
      const uint64_t x_bytes = plugin_sdk::TensorBytes(xd);
      if (Overlaps(x, x_bytes, y, plugin_sdk::TensorBytes(op.outputs[0].desc))) {
        x_copy.assign(x, x + x_bytes / sizeof(float));
        x = x_copy.data();
      }
      MatmulCpu(ctx, x, xd.dims[0], xd.dims[1], wd.dtype, inputs[1], wd.dims[0], y);
      if (op.n_inputs > 2) {  // bias [N], F32 (plugin ABI 1.2)
        plugin_sdk::AddBias(static_cast<const float*>(inputs[2].data), xd.dims[0], wd.dims[0], y);
      }
      return Status();
    }
    case KESTREL_OP_LOGITS:
      return LogitsCpu(ctx, op, inputs, static_cast<float*>(outputs[0]));
    case KESTREL_OP_EMBEDDING_GATHER:
      return EmbeddingGatherCpu(ctx, op, inputs, static_cast<float*>(outputs[0]));
    case KESTREL_OP_MOE:
      return MoeCpu(ctx, op, inputs, outputs);
    case KESTREL_OP_GEGLU: {
      const kestrel_tensor_desc_t& d = op.inputs[0].desc;
      GegluCpu(ctx, static_cast<const float*>(inputs[0].data),
               static_cast<const float*>(inputs[1].data), d.dims[0] * d.dims[1],
               static_cast<float*>(outputs[0]));
      return Status();
    }
    case KESTREL_OP_PAGED_ATTENTION: {
      const kestrel_op_attention_params_t p = plugin_sdk::AttentionParamsOf(op);
      const kestrel_tensor_desc_t& kc = op.inputs[1].desc;
      AttentionArgs a;
      a.q = static_cast<const float*>(inputs[0].data);
      a.k_dtype = kc.dtype;
      a.v_dtype = op.inputs[2].desc.dtype;
      a.k_cache = inputs[1].data;
      a.v_cache = inputs[2].data;
      a.n_blocks = kc.dims[0];
      a.block_size = kc.dims[1];
      a.block_tables = static_cast<const int32_t*>(inputs[3].data);
      a.n_seqs = op.inputs[3].desc.dims[0];
      a.max_blocks = op.inputs[3].desc.dims[1];
      a.query_start = static_cast<const int32_t*>(inputs[4].data);
      a.kv_lens = static_cast<const int32_t*>(inputs[5].data);
      a.parents = p.tree_mask ? static_cast<const int32_t*>(inputs[6].data) : nullptr;
      a.n_tokens = op.inputs[0].desc.dims[0];
      a.n_heads = p.n_heads;
      a.n_kv_heads = p.n_kv_heads;
      a.head_dim = p.head_dim;
      a.causal = p.causal != 0;
      a.scale = p.scale;
      a.window = p.window;
      a.out = static_cast<float*>(outputs[0]);
      return PagedAttentionCpu(ctx, a);
    }
    default: {
      // The reference kernels, on raw bytes (a repacked weight is unpacked to a temporary).
      // (No heap allocation for the common case: these small ops run hundreds of times a step.)
      const void* raw_inline[8];
      std::vector<const void*> raw_heap;
      const void** raw = raw_inline;
      if (op.n_inputs > 8) {
        raw_heap.resize(op.n_inputs);
        raw = raw_heap.data();
      }
      std::vector<std::vector<uint8_t>> unpacked;
      for (uint32_t i = 0; i < op.n_inputs; ++i) {
        if (inputs[i].kpacked != nullptr) {
          return plugin_sdk::Internal(plugin_sdk::OpKindName(op.kind), ": input ", i,
                               " is a repacked KQ weight, which this op cannot read");
        }
        if (inputs[i].packed != nullptr) {
          unpacked.emplace_back(plugin_sdk::TensorBytes(op.inputs[i].desc));
          uint8_t* dst = unpacked.back().data();
          for (int64_t m = 0; m < inputs[i].n_packed; ++m) {  // one view per matrix
            const QWeightView& q = inputs[i].packed[m];
            UnpackQToGguf(q, 0, q.n, dst);
            dst += static_cast<uint64_t>(q.n) * plugin_sdk::RowBytes(q.dtype, q.k);
          }
          raw[i] = unpacked.back().data();
        } else {
          raw[i] = inputs[i].data;
        }
      }
      return plugin_sdk::ExecuteOp(op, raw, outputs);
    }
  }
}

}  // namespace kestrel::plugins::cpu
