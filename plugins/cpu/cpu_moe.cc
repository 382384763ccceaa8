#include "cpu_moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "packed_weight.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/op_contract.h"

namespace kestrel::plugins::cpu {
namespace {

using plugin_sdk::Internal;

// Below this many multiply-adds a phase runs on the calling thread (as in cpu_ops.cc).
constexpr int64_t kMinParallelMacs = int64_t{1} << 18;

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

template <typename F>
void RunTasks(ThreadPool& pool, bool parallel, int64_t n, F&& fn) {
  if (parallel) {
    pool.Run(n, fn);
  } else {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
  }
}

float* ScratchF32(size_t n) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < n) scratch.resize(n);
  return scratch.data();
}

// One expert's matrix [n, k]: GGUF bytes, or a repacked Q4_0/Q8_0 view.
struct ExpertMat {
  uint32_t dtype = KESTREL_DTYPE_F32;
  int64_t n = 0, k = 0;
  const uint8_t* raw = nullptr;
  const QWeightView* q = nullptr;
};

// A rank-3 expert weight [El, n, k].
struct ExpertStack {
  uint32_t dtype = KESTREL_DTYPE_F32;
  int64_t n = 0, k = 0;
  const uint8_t* raw = nullptr;
  const QWeightView* q = nullptr;  // El views, or NULL
  uint64_t slice_bytes = 0;

  ExpertMat At(int64_t i) const {
    ExpertMat m;
    m.dtype = dtype;
    m.n = n;
    m.k = k;
    if (q != nullptr) {
      m.q = q + i;
    } else {
      m.raw = raw + i * slice_bytes;
    }
    return m;
  }
  // True when the default (non-exact) path multiplies 8-bit activations.
  bool Q8Act(const OpContext& ctx) const { return q != nullptr && !ctx.exact; }
  int32_t Offset() const { return q != nullptr ? q->offset : 0; }
};

Status MakeStack(const kestrel_tensor_desc_t& d, const ArgData& a, const char* what,
                 ExpertStack* s) {
  s->dtype = d.dtype;
  s->n = d.dims[1];
  s->k = d.dims[2];
  s->slice_bytes = static_cast<uint64_t>(s->n) * plugin_sdk::RowBytes(d.dtype, s->k);
  if (a.packed != nullptr) {
    if (a.n_packed != d.dims[0]) {
      return Internal("MOE: ", what, " has ", a.n_packed, " packed expert views for ", d.dims[0],
                      " experts");
    }
    s->q = a.packed;
  } else {
    s->raw = static_cast<const uint8_t*>(a.data);
  }
  return Status();
}

// Activations of R rows quantized for Q4_0/Q8_0 weights (kernels.h).
struct QActRows {
  int64_t groups = 0;
  std::vector<int8_t> qs;
  std::vector<int32_t> bias;
  std::vector<float> d;
  void Resize(int64_t rows, int64_t k) {
    groups = GroupsFor(k);
    qs.resize(static_cast<size_t>(rows * groups * kActGroupBytes));
    bias.resize(static_cast<size_t>(rows * groups * 16));
    d.resize(static_cast<size_t>(rows * groups * kGroupBlocks));
  }
  void Quantize(const KernelTable& kt, int64_t r, const float* x, int64_t k, int32_t offset) {
    kt.quantize_row_act(x, k, groups, offset, qs.data() + r * groups * kActGroupBytes,
                        bias.data() + r * groups * 16, d.data() + r * groups * kGroupBlocks);
  }
  QActView View(int64_t r0) const {
    QActView v;
    v.n_groups = groups;
    v.qs = qs.data() + r0 * groups * kActGroupBytes;
    v.bias = bias.data() + r0 * groups * 16;
    v.d = d.data() + r0 * groups * kGroupBlocks;
    return v;
  }
};

// y[t * ldy + j] = w[j] . x[t] for t < n_tok, n0 <= j < n1, on the path MatmulCpu takes for
// the same weight (xq: the rows quantized for w, used when w is repacked and !exact).
void MatRows(const OpContext& ctx, const ExpertMat& w, const float* xf, const QActView* xq,
             int64_t n_tok, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const KernelTable& kt = *ctx.kernels;
  const int64_t K = w.k;
  if (w.q != nullptr && !ctx.exact) {
    kt.gemm_q(*w.q, *xq, n_tok, n0, n1, y, ldy);
    return;
  }
  if (w.q != nullptr || w.dtype == KESTREL_DTYPE_BF16 || plugin_sdk::IsBlockQuantized(w.dtype)) {
    // Exact path: a panel of rows dequantized to f32, then the f32 kernel.
    constexpr int64_t kPanel = 16;
    const uint64_t row_bytes = plugin_sdk::RowBytes(w.dtype, K);
    float* panel = ScratchF32(static_cast<size_t>(kPanel * K));
    for (int64_t p0 = n0; p0 < n1; p0 += kPanel) {
      const int64_t p1 = std::min(n1, p0 + kPanel);
      if (w.q != nullptr) {
        kt.dequant_q_rows(*w.q, p0, p1, panel, K);
      } else {
        for (int64_t j = p0; j < p1; ++j) {
          plugin_sdk::DequantizeRow(w.dtype, w.raw + j * row_bytes, K, panel + (j - p0) * K);
        }
      }
      kt.gemm_f32(panel, K, xf, K, K, n_tok, 0, p1 - p0, y + p0, ldy);
    }
    return;
  }
  if (w.dtype == KESTREL_DTYPE_F16) {
    kt.gemm_f16(reinterpret_cast<const uint16_t*>(w.raw), K, xf, K, K, n_tok, n0, n1, y, ldy);
  } else {
    kt.gemm_f32(reinterpret_cast<const float*>(w.raw), K, xf, K, K, n_tok, n0, n1, y, ldy);
  }
}

// The reference's routing of one token (plugin_sdk/src/reference_kernels.cc, Moe) from its logits l[E]: scores in
// double, the K best (ties to the lower id, NaN last), weights. Returns false when the selection
// might differ from the one the reference computes from its own logits, given that ours differ
// from them by at most `margin` each: the K-th and (K+1)-th scores are closer than that error
// allows (exact ties included) or a logit is not finite.
bool RouteToken(const float* l, int64_t E, int64_t K, uint32_t routing, double margin,
                double* score, int64_t* order, int32_t* chosen, float* weight) {
  if (routing == KESTREL_MOE_ROUTING_SIGMOID_TOPK) {
    for (int64_t e = 0; e < E; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(l[e])));
  } else {
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t e = 0; e < E; ++e) max = std::max(max, static_cast<double>(l[e]));
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += (score[e] = std::exp(static_cast<double>(l[e]) - max));
    for (int64_t e = 0; e < E; ++e) score[e] /= sum;
  }
  auto key = [&](int64_t e) {
    return std::isnan(score[e]) ? -std::numeric_limits<double>::infinity() : score[e];
  };
  for (int64_t e = 0; e < E; ++e) order[e] = e;
  std::partial_sort(order, order + K, order + E, [&](int64_t a, int64_t b) {
    const double ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  });
  double selected = 0.0;
  for (int64_t k = 0; k < K; ++k) selected += score[order[k]];
  for (int64_t k = 0; k < K; ++k) {
    chosen[k] = static_cast<int32_t>(order[k]);
    weight[k] = static_cast<float>(routing == KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM
                                       ? score[order[k]] / selected
                                       : score[order[k]]);
  }
  if (!std::isfinite(margin)) return false;
  for (int64_t e = 0; e < E; ++e) {
    if (!std::isfinite(l[e])) return false;
  }
  if (K == E) return true;  // every expert is selected, whatever the scores
  // Both routings have d ln(score_e) / d l_e in [0, 1] and share the normaliser, so a logit
  // error of `margin` moves ln(score_K / score_{K+1}) by at most 2 * margin. (partial_sort
  // leaves order[K..E) unsorted: the runner-up is their maximum.)
  const double sk = score[order[K - 1]];
  double sn = score[order[K]];
  for (int64_t j = K + 1; j < E; ++j) sn = std::max(sn, score[order[j]]);
  return sk > 1e-280 && sk > sn * std::exp(2.0 * margin) * (1.0 + 1e-12);
}

}  // namespace

Status MoeCpu(const OpContext& ctx, const kestrel_op_desc_t& op, const ArgData* in,
              void* const* outputs) {
  kestrel_op_moe_params_t p;
  std::memcpy(&p, op.params, sizeof p);
  const KernelTable& kt = *ctx.kernels;
  ThreadPool& pool = *ctx.pool;
  const kestrel_tensor_desc_t& xd = op.inputs[0].desc;
  const kestrel_tensor_desc_t& rd = op.inputs[1].desc;
  const int64_t T = xd.dims[0], D = xd.dims[1];
  const int64_t E = p.n_experts, K = p.top_k;
  const int64_t El = p.n_local_experts, first = p.first_expert;
  const int64_t F = op.inputs[2].desc.dims[1];
  const float* x = static_cast<const float*>(in[0].data);
  float* out = static_cast<float*>(outputs[0]);
  int32_t* stats = op.n_outputs > 1 ? static_cast<int32_t*>(outputs[1]) : nullptr;
  const bool multi = pool.size() > 1;

  ExpertStack gate, up, down;
  KESTREL_SDK_RETURN_IF_ERROR(MakeStack(op.inputs[2].desc, in[2], "gate_exps", &gate));
  KESTREL_SDK_RETURN_IF_ERROR(MakeStack(op.inputs[3].desc, in[3], "up_exps", &up));
  KESTREL_SDK_RETURN_IF_ERROR(MakeStack(op.inputs[4].desc, in[4], "down_exps", &down));

  // ---- 1. router logits and routing -----------------------------------------------------------
  // The router as f32 rows (the reference's DequantizeRow, so the exact recomputation below sees
  // the same values as the reference).
  std::vector<float> router_store;
  const float* router = nullptr;
  if (in[1].packed == nullptr && rd.dtype == KESTREL_DTYPE_F32) {
    router = static_cast<const float*>(in[1].data);
  } else {
    router_store.resize(static_cast<size_t>(E * D));
    const uint64_t row_bytes = plugin_sdk::RowBytes(rd.dtype, D);
    std::vector<uint8_t> gguf_row(in[1].packed != nullptr ? row_bytes : 0);
    for (int64_t e = 0; e < E; ++e) {
      const uint8_t* src;
      if (in[1].packed != nullptr) {
        UnpackQToGguf(*in[1].packed, e, e + 1, gguf_row.data());
        src = gguf_row.data();
      } else {
        src = static_cast<const uint8_t*>(in[1].data) + e * row_bytes;
      }
      plugin_sdk::DequantizeRow(rd.dtype, src, D, router_store.data() + e * D);
    }
    router = router_store.data();
  }
  double max_router_norm = 0.0;
  for (int64_t e = 0; e < E; ++e) {
    double s = 0.0;
    for (int64_t i = 0; i < D; ++i) s += static_cast<double>(router[e * D + i]) * router[e * D + i];
    max_router_norm = std::max(max_router_norm, std::sqrt(s));
  }

  std::vector<int32_t> chosen(static_cast<size_t>(T * K));
  std::vector<float> weight(static_cast<size_t>(T * K));
  {
    const bool par = multi && T >= 4 && T * E * D >= kMinParallelMacs;
    const int64_t per = 4 * static_cast<int64_t>(pool.size());
    const int64_t chunk = par ? std::max<int64_t>(1, (T + per - 1) / per) : T;
    const int64_t n_chunks = T == 0 ? 0 : (T + chunk - 1) / chunk;
    // An f32 dot product of length D, in any summation order, is within D * 2^-24 * sum|x_i w_i|
    // <= D * 2^-24 * |x| |w| of the exact value; the reference's float rounding adds half an ulp.
    // Both terms doubled for safety.
    const double dot_bound = static_cast<double>(D) * std::ldexp(1.0, -23) * max_router_norm;
    RunTasks(pool, par, n_chunks, [&](int64_t c, int) {
      const int64_t t0 = c * chunk, t1 = std::min(T, t0 + chunk);
      std::vector<float> logits(static_cast<size_t>((t1 - t0) * E), 0.0f);
      std::vector<float> exact(static_cast<size_t>(E));
      std::vector<double> score(static_cast<size_t>(E));
      std::vector<int64_t> order(static_cast<size_t>(E));
      if (D > 0) kt.gemm_f32(router, D, x + t0 * D, D, D, t1 - t0, 0, E, logits.data(), E);
      for (int64_t t = t0; t < t1; ++t) {
        const float* xt = x + t * D;
        const float* lt = logits.data() + (t - t0) * E;
        double xn = 0.0, lmax = 0.0;
        for (int64_t i = 0; i < D; ++i) xn += static_cast<double>(xt[i]) * xt[i];
        for (int64_t e = 0; e < E; ++e) lmax = std::max(lmax, std::fabs(double{lt[e]}));
        const double margin = dot_bound * std::sqrt(xn) + std::ldexp(lmax, -22);
        if (!RouteToken(lt, E, K, p.routing, margin, score.data(), order.data(),
                        chosen.data() + t * K, weight.data() + t * K)) {
          // Too close to call (or not finite): the reference's own logits, bit for bit.
          plugin_sdk::Matmul(xt, 1, D, KESTREL_DTYPE_F32, router, E, exact.data());
          RouteToken(exact.data(), E, K, p.routing, 0.0, score.data(), order.data(),
                     chosen.data() + t * K, weight.data() + t * K);
        }
      }
    });
  }
  if (stats != nullptr) {
    std::fill(stats, stats + E, 0);
    for (int32_t e : chosen) ++stats[e];
  }

  // ---- 2. tokens grouped by local expert --------------------------------------------------------
  std::vector<int64_t> count(static_cast<size_t>(El), 0), start(static_cast<size_t>(El + 1), 0);
  for (int32_t e : chosen) {
    if (e >= first && e < first + El) ++count[e - first];
  }
  for (int64_t i = 0; i < El; ++i) start[i + 1] = start[i] + count[i];
  const int64_t R = start[El];
  std::vector<int64_t> row_token(static_cast<size_t>(R));
  std::vector<int64_t> slot_row(static_cast<size_t>(T * K), -1);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t e = chosen[t * K + k];
        if (e < first || e >= first + El) continue;
        const int64_t r = fill[e - first]++;
        row_token[r] = t;
        slot_row[t * K + k] = r;
      }
    }
  }
  if (R == 0 || F == 0 || D == 0) {
    std::fill(out, out + T * D, 0.0f);
    return Status();
  }
  std::vector<int64_t> active;
  for (int64_t i = 0; i < El; ++i) {
    if (count[i] > 0) active.push_back(i);
  }

  // Row chunks of one [N, *] matrix per active expert, more chunks for experts with more tokens,
  // about 8 tasks per thread in all (dynamic scheduling evens out the rest).
  struct Task {
    int64_t slot, n0, n1;
  };
  auto make_tasks = [&](int64_t N) {
    std::vector<Task> tasks;
    const int64_t target = 8 * static_cast<int64_t>(pool.size());
    for (int64_t i : active) {
      const int64_t parts = multi ? std::max<int64_t>(1, (target * count[i] + R - 1) / R) : 1;
      const int64_t chunk =
          std::min(N, std::max<int64_t>(16, RoundUp((N + parts - 1) / parts, 16)));
      for (int64_t n0 = 0; n0 < N; n0 += chunk) tasks.push_back({i, n0, std::min(N, n0 + chunk)});
    }
    return tasks;
  };
  const bool par_ffn = multi && R * F * D >= kMinParallelMacs;
  const bool par_rows = multi && R >= 8 && R * std::max(D, F) >= kMinParallelMacs / 16;

  // ---- 3. activations of the routed rows --------------------------------------------------------
  std::vector<float> xg;  // f32 rows, for the non-quantized paths
  if (!gate.Q8Act(ctx) || !up.Q8Act(ctx)) {
    xg.resize(static_cast<size_t>(R * D));
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(xg.data() + r * D, x + row_token[r] * D, static_cast<size_t>(D) * sizeof(float));
    }
  }
  QActRows xq_gate, xq_up_own;
  const QActRows* xq_up = &xq_gate;
  const bool up_own = up.Q8Act(ctx) && (!gate.Q8Act(ctx) || up.Offset() != gate.Offset());
  if (gate.Q8Act(ctx)) xq_gate.Resize(R, D);
  if (up_own) {
    xq_up_own.Resize(R, D);
    xq_up = &xq_up_own;
  }
  if (gate.Q8Act(ctx) || up_own) {
    RunTasks(pool, par_rows, R, [&](int64_t r, int) {
      const float* xr = x + row_token[r] * D;
      if (gate.Q8Act(ctx)) xq_gate.Quantize(kt, r, xr, D, gate.Offset());
      if (up_own) xq_up_own.Quantize(kt, r, xr, D, up.Offset());
    });
  }

  // ---- 4. gate, up and SwiGLU of every active expert: h [R, F] ---------------------------------
  // Not value-initialised: every element is written before it is read.
  std::unique_ptr<float[]> h(new float[static_cast<size_t>(R * F)]);
  std::unique_ptr<float[]> u(new float[static_cast<size_t>(std::max(R * F, R * D))]);
  {
    const std::vector<Task> tasks = make_tasks(F);
    RunTasks(pool, par_ffn, static_cast<int64_t>(tasks.size()), [&](int64_t ti, int) {
      const Task& task = tasks[ti];
      const int64_t r0 = start[task.slot], n = count[task.slot];
      const float* xf = xg.empty() ? nullptr : xg.data() + r0 * D;
      const QActView qg = gate.Q8Act(ctx) ? xq_gate.View(r0) : QActView{};
      const QActView qu = up.Q8Act(ctx) ? xq_up->View(r0) : QActView{};
      MatRows(ctx, gate.At(task.slot), xf, &qg, n, task.n0, task.n1, h.get() + r0 * F, F);
      MatRows(ctx, up.At(task.slot), xf, &qu, n, task.n0, task.n1, u.get() + r0 * F, F);
      for (int64_t r = r0; r < r0 + n; ++r) {
        float* hr = h.get() + r * F + task.n0;
        plugin_sdk::Swiglu(hr, u.get() + r * F + task.n0, task.n1 - task.n0, hr);
      }
    });
  }

  // ---- 5. down: y [R, D] ------------------------------------------------------------------------
  QActRows hq;
  if (down.Q8Act(ctx)) {
    hq.Resize(R, F);
    RunTasks(pool, par_rows, R, [&](int64_t r, int) {
      hq.Quantize(kt, r, h.get() + r * F, F, down.Offset());
    });
  }
  float* y = u.get();  // u is dead: [R, D] fits in it
  {
    const std::vector<Task> tasks = make_tasks(D);
    RunTasks(pool, par_ffn, static_cast<int64_t>(tasks.size()), [&](int64_t ti, int) {
      const Task& task = tasks[ti];
      const int64_t r0 = start[task.slot], n = count[task.slot];
      const QActView qd = down.Q8Act(ctx) ? hq.View(r0) : QActView{};
      MatRows(ctx, down.At(task.slot), h.get() + r0 * F, &qd, n, task.n0, task.n1, y + r0 * D, D);
    });
  }

  // ---- 6. out[t] = sum of the weighted rows of its local experts (x is not read any more) -------
  RunTasks(pool, par_rows && T >= 8, T, [&](int64_t t, int) {
    float* o = out + t * D;
    bool written = false;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = slot_row[t * K + k];
      if (r < 0) continue;
      const float w = weight[t * K + k];
      const float* yr = y + r * D;
      if (!written) {
        for (int64_t i = 0; i < D; ++i) o[i] = w * yr[i];
        written = true;
      } else {
        kt.axpy_f32(w, yr, o, D);
      }
    }
    if (!written) std::fill(o, o + D, 0.0f);
  });
  return Status();
}

}  // namespace kestrel::plugins::cpu
