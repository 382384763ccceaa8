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

// Buffers of one calling thread, kept between calls so that a decode step allocates nothing.
// Buffers grown past kKeepBytes by a long prompt are released after the call.
struct RouteBuf {
  std::vector<float> logits, exact;
  std::vector<double> score;
  std::vector<int64_t> order;
};

struct MoeScratch {
  std::vector<float> router_store;
  std::vector<uint8_t> gguf_row;
  std::vector<int32_t> chosen;
  std::vector<float> weight;
  std::vector<int64_t> count, start, fill, row_token, slot_row, active;
  std::vector<float> xg, h, u, y;
  QActRows xq_gate, xq_up, hq;
  RouteBuf route;
};

constexpr size_t kKeepBytes = size_t{4} << 20;

template <typename T>
void Trim(std::vector<T>& v) {
  if (v.capacity() * sizeof(T) > kKeepBytes) std::vector<T>().swap(v);
}

void TrimScratch(MoeScratch& s) {
  Trim(s.xg);
  Trim(s.h);
  Trim(s.u);
  Trim(s.y);
  Trim(s.row_token);
  Trim(s.slot_row);
  Trim(s.chosen);
  Trim(s.weight);
  for (QActRows* q : {&s.xq_gate, &s.xq_up, &s.hq}) {
    Trim(q->qs);
    Trim(q->bias);
    Trim(q->d);
  }
}

MoeScratch& Scratch() {
  thread_local MoeScratch s;
  return s;
}

// The router as f32 rows [E, D]: the weight itself, or its rows dequantized with the reference's
// DequantizeRow (so the exact recomputation in RouteRows sees the reference's values).
const float* RouterRows(const kestrel_tensor_desc_t& rd, const ArgData& a, int64_t E, int64_t D,
                        MoeScratch& s) {
  if (a.packed == nullptr && rd.dtype == KESTREL_DTYPE_F32) return static_cast<const float*>(a.data);
  s.router_store.resize(static_cast<size_t>(E * D));
  const uint64_t row_bytes = plugin_sdk::RowBytes(rd.dtype, D);
  s.gguf_row.resize(a.packed != nullptr ? row_bytes : 0);
  for (int64_t e = 0; e < E; ++e) {
    const uint8_t* src;
    if (a.packed != nullptr) {
      UnpackQToGguf(*a.packed, e, e + 1, s.gguf_row.data());
      src = s.gguf_row.data();
    } else {
      src = static_cast<const uint8_t*>(a.data) + e * row_bytes;
    }
    plugin_sdk::DequantizeRow(rd.dtype, src, D, s.router_store.data() + e * D);
  }
  return s.router_store.data();
}

// An upper bound of |v| for a length-n f32 vector, from the plugin's f32 dot product: a sum of n
// non-negative rounded squares is within (n + 1) * 2^-24 (relative) of the exact one, so it is
// scaled up by twice that. A tiny or non-finite f32 result (squares lost to underflow, or
// overflow) is redone in double, as the reference's margin needs a bound, not an estimate.
double NormUpper(const KernelTable& kt, const float* v, int64_t n) {
  double sq = static_cast<double>(kt.dot_f32(v, v, n));
  if (!(sq >= std::ldexp(1.0, -100)) || !std::isfinite(sq)) {
    sq = 0.0;
    for (int64_t i = 0; i < n; ++i) sq += static_cast<double>(v[i]) * v[i];
    return std::sqrt(sq);
  }
  return std::sqrt(sq * (1.0 + static_cast<double>(n + 2) * std::ldexp(1.0, -23)));
}

// Routing of tokens [t0, t1): chosen experts and weights (see cpu_moe.h).
void RouteRows(const KernelTable& kt, const kestrel_op_moe_params_t& p, const float* router,
               const float* x, int64_t D, int64_t t0, int64_t t1, double dot_bound, int32_t* chosen,
               float* weight, RouteBuf& b) {
  const int64_t E = p.n_experts, K = p.top_k;
  b.logits.assign(static_cast<size_t>((t1 - t0) * E), 0.0f);
  b.exact.resize(static_cast<size_t>(E));
  b.score.resize(static_cast<size_t>(E));
  b.order.resize(static_cast<size_t>(E));
  if (D > 0) kt.gemm_f32(router, D, x + t0 * D, D, D, t1 - t0, 0, E, b.logits.data(), E);
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * D;
    const float* lt = b.logits.data() + (t - t0) * E;
    double lmax = 0.0;
    for (int64_t e = 0; e < E; ++e) lmax = std::max(lmax, std::fabs(double{lt[e]}));
    const double margin = dot_bound * NormUpper(kt, xt, D) + std::ldexp(lmax, -22);
    if (!RouteToken(lt, E, K, p.routing, margin, b.score.data(), b.order.data(), chosen + t * K,
                    weight + t * K)) {
      // Too close to call (or not finite): the reference's own logits, bit for bit.
      plugin_sdk::Matmul(xt, 1, D, KESTREL_DTYPE_F32, router, E, b.exact.data());
      RouteToken(b.exact.data(), E, K, p.routing, 0.0, b.score.data(), b.order.data(),
                 chosen + t * K, weight + t * K);
    }
  }
}

// The experts' weights and the routed rows, shared by both ways of running the FFNs.
struct ExpertRun {
  const OpContext* ctx = nullptr;
  ExpertStack gate, up, down;
  int64_t D = 0, F = 0;
  const int64_t* start = nullptr;  // first routed row of each local expert
  const int64_t* count = nullptr;  // routed rows of each local expert
  const float* xg = nullptr;       // f32 routed rows [R, D] (non-quantized paths), or NULL
  const QActRows* xq_gate = nullptr;
  const QActRows* xq_up = nullptr;
  float* h = nullptr;  // [R, F]
  float* u = nullptr;  // [R, F]
  QActRows* hq = nullptr;

  // h = SwiGLU(gate x, up x) for rows [n0, n1) of expert `slot`, all of its tokens.
  void GateUp(int64_t slot, int64_t n0, int64_t n1) const {
    const int64_t r0 = start[slot], n = count[slot];
    const float* xf = xg == nullptr ? nullptr : xg + r0 * D;
    const QActView qg = gate.Q8Act(*ctx) ? xq_gate->View(r0) : QActView{};
    const QActView qu = up.Q8Act(*ctx) ? xq_up->View(r0) : QActView{};
    MatRows(*ctx, gate.At(slot), xf, &qg, n, n0, n1, h + r0 * F, F);
    MatRows(*ctx, up.At(slot), xf, &qu, n, n0, n1, u + r0 * F, F);
    for (int64_t r = r0; r < r0 + n; ++r) {
      float* hr = h + r * F + n0;
      plugin_sdk::Swiglu(hr, u + r * F + n0, n1 - n0, hr);
    }
  }
  // y = down h for rows [n0, n1) of expert `slot` (h quantized in hq when down takes 8 bits).
  void Down(int64_t slot, int64_t n0, int64_t n1, float* y) const {
    const int64_t r0 = start[slot], n = count[slot];
    const QActView qd = down.Q8Act(*ctx) ? hq->View(r0) : QActView{};
    MatRows(*ctx, down.At(slot), h + r0 * F, &qd, n, n0, n1, y + r0 * D, D);
  }
  void QuantizeH(int64_t r) const {
    hq->Quantize(*ctx->kernels, r, h + r * F, F, down.Offset());
  }
};

// Experts with equally many tokens, as many as a multiple of the threads (a decode step: K
// experts of one token): one task per expert runs its whole FFN, so each thread streams its
// experts' three matrices alone and the op needs one hand-off instead of two. Results are
// bit-identical to the row-split path (every kernel computes each row on its own).
bool WholeExpertsFit(const std::vector<int64_t>& active, const std::vector<int64_t>& count,
                     int threads) {
  if (active.empty() || active.size() % static_cast<size_t>(threads) != 0) {
    return false;
  }
  for (int64_t i : active) {
    if (count[i] != count[active[0]]) return false;
  }
  return true;
}

// Row chunks of one [N, *] matrix per active expert, more chunks for experts with more tokens,
// about 8 tasks per thread in all (dynamic scheduling evens out the rest).
struct Task {
  int64_t slot, n0, n1;
};
std::vector<Task> MakeTasks(const std::vector<int64_t>& active, const std::vector<int64_t>& count,
                            int64_t R, int threads, int64_t N) {
  std::vector<Task> tasks;
  const int64_t target = 8 * static_cast<int64_t>(threads);
  for (int64_t i : active) {
    const int64_t parts = threads > 1 ? std::max<int64_t>(1, (target * count[i] + R - 1) / R) : 1;
    const int64_t chunk = std::min(N, std::max<int64_t>(16, RoundUp((N + parts - 1) / parts, 16)));
    for (int64_t n0 = 0; n0 < N; n0 += chunk) tasks.push_back({i, n0, std::min(N, n0 + chunk)});
  }
  return tasks;
}

}  // namespace

Status MoeCpu(const OpContext& ctx, const kestrel_op_desc_t& op, const ArgData* in,
              void* const* outputs) {
  kestrel_op_moe_params_t p;
  std::memcpy(&p, op.params, sizeof p);
  const KernelTable& kt = *ctx.kernels;
  ThreadPool& pool = *ctx.pool;
  const kestrel_tensor_desc_t& xd = op.inputs[0].desc;
  const int64_t T = xd.dims[0], D = xd.dims[1];
  const int64_t E = p.n_experts, K = p.top_k;
  const int64_t El = p.n_local_experts, first = p.first_expert;
  const int64_t F = op.inputs[2].desc.dims[1];
  const float* x = static_cast<const float*>(in[0].data);
  float* out = static_cast<float*>(outputs[0]);
  int32_t* stats = op.n_outputs > 1 ? static_cast<int32_t*>(outputs[1]) : nullptr;
  const bool multi = pool.size() > 1;
  MoeScratch& s = Scratch();

  ExpertRun run;
  run.ctx = &ctx;
  run.D = D;
  run.F = F;
  KESTREL_SDK_RETURN_IF_ERROR(MakeStack(op.inputs[2].desc, in[2], "gate_exps", &run.gate));
  KESTREL_SDK_RETURN_IF_ERROR(MakeStack(op.inputs[3].desc, in[3], "up_exps", &run.up));
  KESTREL_SDK_RETURN_IF_ERROR(MakeStack(op.inputs[4].desc, in[4], "down_exps", &run.down));
  const ExpertStack& gate = run.gate;
  const ExpertStack& up = run.up;
  const ExpertStack& down = run.down;

  // ---- 1. router logits and routing -----------------------------------------------------------
  const float* router = RouterRows(op.inputs[1].desc, in[1], E, D, s);
  double max_router_norm = 0.0;
  for (int64_t e = 0; e < E; ++e) {
    max_router_norm = std::max(max_router_norm, NormUpper(kt, router + e * D, D));
  }
  s.chosen.resize(static_cast<size_t>(T * K));
  s.weight.resize(static_cast<size_t>(T * K));
  {
    const bool par = multi && T >= 4 && T * E * D >= kMinParallelMacs;
    const int64_t per = 4 * static_cast<int64_t>(pool.size());
    const int64_t chunk = par ? std::max<int64_t>(1, (T + per - 1) / per) : T;
    const int64_t n_chunks = T == 0 ? 0 : (T + chunk - 1) / chunk;
    // An f32 dot product of length D, in any summation order, is within D * 2^-24 * sum|x_i w_i|
    // <= D * 2^-24 * |x| |w| of the exact value; the reference's float rounding adds half an ulp.
    // Both terms doubled for safety.
    const double dot_bound = static_cast<double>(D) * std::ldexp(1.0, -23) * max_router_norm;
    if (par) {
      pool.Run(n_chunks, [&](int64_t c, int) {
        RouteBuf b;
        RouteRows(kt, p, router, x, D, c * chunk, std::min(T, (c + 1) * chunk), dot_bound,
                  s.chosen.data(), s.weight.data(), b);
      });
    } else if (T > 0) {
      RouteRows(kt, p, router, x, D, 0, T, dot_bound, s.chosen.data(), s.weight.data(), s.route);
    }
  }
  if (stats != nullptr) {
    std::fill(stats, stats + E, 0);
    for (int32_t e : s.chosen) ++stats[e];
  }

  // ---- 2. tokens grouped by local expert --------------------------------------------------------
  s.count.assign(static_cast<size_t>(El), 0);
  s.start.assign(static_cast<size_t>(El + 1), 0);
  for (int32_t e : s.chosen) {
    if (e >= first && e < first + El) ++s.count[e - first];
  }
  for (int64_t i = 0; i < El; ++i) s.start[i + 1] = s.start[i] + s.count[i];
  const int64_t R = s.start[El];
  s.row_token.resize(static_cast<size_t>(R));
  s.slot_row.assign(static_cast<size_t>(T * K), -1);
  s.fill.assign(s.start.begin(), s.start.end() - 1);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = s.chosen[t * K + k];
      if (e < first || e >= first + El) continue;
      const int64_t r = s.fill[e - first]++;
      s.row_token[r] = t;
      s.slot_row[t * K + k] = r;
    }
  }
  if (R == 0 || F == 0 || D == 0) {
    std::fill(out, out + T * D, 0.0f);
    TrimScratch(s);
    return Status();
  }
  s.active.clear();
  for (int64_t i = 0; i < El; ++i) {
    if (s.count[i] > 0) s.active.push_back(i);
  }
  run.start = s.start.data();
  run.count = s.count.data();
  const bool par_ffn = multi && R * F * D >= kMinParallelMacs;
  const bool par_rows = multi && R >= 8 && R * std::max(D, F) >= kMinParallelMacs / 16;

  // ---- 3. activations of the routed rows --------------------------------------------------------
  if (!gate.Q8Act(ctx) || !up.Q8Act(ctx)) {
    s.xg.resize(static_cast<size_t>(R * D));
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(s.xg.data() + r * D, x + s.row_token[r] * D, static_cast<size_t>(D) * sizeof(float));
    }
    run.xg = s.xg.data();
  }
  const bool up_own = up.Q8Act(ctx) && (!gate.Q8Act(ctx) || up.Offset() != gate.Offset());
  if (gate.Q8Act(ctx)) s.xq_gate.Resize(R, D);
  if (up_own) s.xq_up.Resize(R, D);
  run.xq_gate = &s.xq_gate;
  run.xq_up = up_own ? &s.xq_up : &s.xq_gate;
  if (gate.Q8Act(ctx) || up_own) {
    RunTasks(pool, par_rows, R, [&](int64_t r, int) {
      const float* xr = x + s.row_token[r] * D;
      if (gate.Q8Act(ctx)) s.xq_gate.Quantize(kt, r, xr, D, gate.Offset());
      if (up_own) s.xq_up.Quantize(kt, r, xr, D, up.Offset());
    });
  }
  // Not value-initialised: every element is written before it is read.
  s.h.resize(static_cast<size_t>(R * F));
  s.u.resize(static_cast<size_t>(R * F));
  s.y.resize(static_cast<size_t>(R * D));
  run.h = s.h.data();
  run.u = s.u.data();
  run.hq = &s.hq;
  if (down.Q8Act(ctx)) s.hq.Resize(R, F);
  float* y = s.y.data();  // [R, D] (not u: in one pass another expert may still use its u rows)

  if ((par_ffn || !multi) && WholeExpertsFit(s.active, s.count, pool.size())) {
    // ---- 4+5 at once: one task per expert, gate/up/SwiGLU then down --------------------------
    RunTasks(pool, par_ffn, static_cast<int64_t>(s.active.size()), [&](int64_t ai, int) {
      const int64_t slot = s.active[ai];
      run.GateUp(slot, 0, F);
      if (down.Q8Act(ctx)) {
        for (int64_t r = s.start[slot]; r < s.start[slot] + s.count[slot]; ++r) run.QuantizeH(r);
      }
      run.Down(slot, 0, D, y);
    });
  } else {
    // ---- 4. gate, up and SwiGLU of every active expert: h [R, F] -------------------------------
    const std::vector<Task> gu = MakeTasks(s.active, s.count, R, pool.size(), F);
    RunTasks(pool, par_ffn, static_cast<int64_t>(gu.size()), [&](int64_t ti, int) {
      run.GateUp(gu[ti].slot, gu[ti].n0, gu[ti].n1);
    });
    // ---- 5. down: y [R, D] ----------------------------------------------------------------------
    if (down.Q8Act(ctx)) RunTasks(pool, par_rows, R, [&](int64_t r, int) { run.QuantizeH(r); });
    const std::vector<Task> dn = MakeTasks(s.active, s.count, R, pool.size(), D);
    RunTasks(pool, par_ffn, static_cast<int64_t>(dn.size()), [&](int64_t ti, int) {
      run.Down(dn[ti].slot, dn[ti].n0, dn[ti].n1, y);
    });
  }

  // ---- 6. out[t] = sum of the weighted rows of its local experts (x is not read any more) -------
  RunTasks(pool, par_rows && T >= 8, T, [&](int64_t t, int) {
    float* o = out + t * D;
    bool written = false;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = s.slot_row[t * K + k];
      if (r < 0) continue;
      const float w = s.weight[t * K + k];
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
  TrimScratch(s);
  return Status();
}

}  // namespace kestrel::plugins::cpu
