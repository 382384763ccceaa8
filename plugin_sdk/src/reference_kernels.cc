#include "kestrel/plugin_sdk/reference_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/half.h"

namespace kestrel::plugin_sdk {
namespace {

// Dot product of two f32 vectors, exact products summed in double.
double Dot(const float* a, const float* b, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return acc;
}

// Loads head `kv_head` of cache slot (block, offset) as f32 into out[0..head_dim).
void LoadKv(const KvCacheView& c, int64_t block, int64_t offset, int64_t kv_head, float* out) {
  const int64_t index = ((block * c.block_size + offset) * c.n_kv_heads + kv_head) * c.head_dim;
  if (c.dtype == KESTREL_DTYPE_F16) {
    const uint16_t* p = static_cast<const uint16_t*>(c.data) + index;
    for (int64_t d = 0; d < c.head_dim; ++d) out[d] = HalfToFloat(p[d]);
  } else {
    std::memcpy(out, static_cast<const float*>(c.data) + index, c.head_dim * sizeof(float));
  }
}

// Stores `n` f32 values at element `index` of a cache (converting to f16 if needed).
void StoreKv(const KvCacheView& c, int64_t index, const float* src, int64_t n) {
  if (c.dtype == KESTREL_DTYPE_F16) {
    uint16_t* p = static_cast<uint16_t*>(c.data) + index;
    for (int64_t i = 0; i < n; ++i) p[i] = FloatToHalf(src[i]);
  } else {
    std::memcpy(static_cast<float*>(c.data) + index, src, n * sizeof(float));
  }
}

int64_t KvElementSize(const KvCacheView& c) { return c.dtype == KESTREL_DTYPE_F16 ? 2 : 4; }

}  // namespace

Status EmbeddingGather(uint32_t dtype, const void* table, int64_t vocab, int64_t dim,
                       const int32_t* ids, int64_t n_tokens, float* out, float scale) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return OutOfRange("EMBEDDING_GATHER: ids[", t, "]=", ids[t], " is outside [0, ", vocab, ")");
    }
  }
  const uint64_t row_bytes = RowBytes(dtype, dim);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const uint8_t* row = static_cast<const uint8_t*>(table) + static_cast<uint64_t>(ids[t]) * row_bytes;
    DequantizeRow(dtype, row, dim, out + t * dim);
    if (scale != 1.0f) {
      for (int64_t i = 0; i < dim; ++i) out[t * dim + i] *= scale;
    }
  }
  return Status();
}

void RmsNorm(const float* x, const float* weight, int64_t n_tokens, int64_t dim, float eps,
             float* out) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xr = x + t * dim;
    float* yr = out + t * dim;
    double sum = 0.0;  // llama.cpp: ggml_float sum += (ggml_float)(x * x)
    for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i] * xr[i]);
    const float mean = static_cast<float>(sum / static_cast<double>(dim));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * scale) * weight[i];
  }
}

void Rope(const float* x, const int32_t* positions, int64_t n_tokens, int64_t n_heads,
          int64_t head_dim, const RopeParams& params, float* out) {
  const int64_t n_rot = params.n_rot;
  const float theta_scale = std::pow(params.freq_base, -2.0f / static_cast<float>(n_rot));
  std::vector<float> cos_cache(n_rot / 2), sin_cache(n_rot / 2);
  for (int64_t t = 0; t < n_tokens; ++t) {
    // llama.cpp's ggml_rope_cache_init: theta *= theta_scale per pair, all in float.
    float theta = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < n_rot / 2; ++i) {
      const float angle = params.freq_factors == nullptr
                              ? params.freq_scale * theta
                              : params.freq_scale * (theta / params.freq_factors[i]);
      cos_cache[i] = std::cos(angle);
      sin_cache[i] = std::sin(angle);
      theta *= theta_scale;
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* xr = x + (t * n_heads + h) * head_dim;
      float* yr = out + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        const int64_t i0 = params.style == KESTREL_ROPE_STYLE_NEOX ? i : 2 * i;
        const int64_t i1 = params.style == KESTREL_ROPE_STYLE_NEOX ? i + n_rot / 2 : 2 * i + 1;
        const float x0 = xr[i0];
        const float x1 = xr[i1];
        yr[i0] = x0 * cos_cache[i] - x1 * sin_cache[i];
        yr[i1] = x0 * sin_cache[i] + x1 * cos_cache[i];
      }
      if (yr != xr) std::memcpy(yr + n_rot, xr + n_rot, (head_dim - n_rot) * sizeof(float));
    }
  }
}

void AddBias(const float* bias, int64_t n_tokens, int64_t n, float* y) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t j = 0; j < n; ++j) y[t * n + j] += bias[j];
  }
}

void Matmul(const float* x, int64_t n_tokens, int64_t k, uint32_t w_dtype, const void* w,
            int64_t n, float* y) {
  const uint64_t row_bytes = RowBytes(w_dtype, k);
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t j = 0; j < n; ++j) {
    DequantizeRow(w_dtype, static_cast<const uint8_t*>(w) + j * row_bytes, k, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      y[t * n + j] = static_cast<float>(Dot(x + t * k, row.data(), k));
    }
  }
}

void Swiglu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

float GeluTanh(float g) {
  const double x = g;
  constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
  return static_cast<float>(0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x))));
}

void Geglu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = GeluTanh(gate[i]) * up[i];
}

void Add(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

Status KvWrite(const float* k, const float* v, const int32_t* slots, int64_t n_tokens,
               const KvCacheView& k_cache, const KvCacheView& v_cache) {
  const int64_t n_slots = k_cache.n_blocks * k_cache.block_size;
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (slots[t] < 0 || slots[t] >= n_slots) {
      return OutOfRange("KV_WRITE: slots[", t, "]=", slots[t], " is outside [0, ", n_slots,
                        ") (", k_cache.n_blocks, " blocks of ", k_cache.block_size, ")");
    }
  }
  const int64_t row = k_cache.n_kv_heads * k_cache.head_dim;  // elements per token
  for (int64_t t = 0; t < n_tokens; ++t) {
    StoreKv(k_cache, slots[t] * row, k + t * row, row);
    StoreKv(v_cache, slots[t] * row, v + t * row, row);
  }
  return Status();
}

Status KvBlockCopy(const int32_t* pairs, int64_t n_pairs, const KvCacheView& k_cache,
                   const KvCacheView& v_cache) {
  for (int64_t p = 0; p < 2 * n_pairs; ++p) {
    if (pairs[p] < 0 || pairs[p] >= k_cache.n_blocks) {
      return OutOfRange("KV_BLOCK_COPY: pairs[", p / 2, "][", p % 2, "]=", pairs[p],
                        " is outside [0, ", k_cache.n_blocks, ")");
    }
  }
  for (const KvCacheView* c : {&k_cache, &v_cache}) {
    const int64_t block_bytes = c->block_size * c->n_kv_heads * c->head_dim * KvElementSize(*c);
    uint8_t* base = static_cast<uint8_t*>(c->data);
    for (int64_t p = 0; p < n_pairs; ++p) {
      if (pairs[2 * p] == pairs[2 * p + 1]) continue;
      std::memcpy(base + pairs[2 * p + 1] * block_bytes, base + pairs[2 * p] * block_bytes,
                  static_cast<size_t>(block_bytes));
    }
  }
  return Status();
}

namespace {

// First KV position a query at sequence position `pos` sees under a window (0: no window).
int64_t WindowStart(int64_t pos, int64_t window) {
  return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
}

// First block-table entry a sequence whose queries start at position `prefix` reads.
int64_t FirstVisibleBlock(int64_t prefix, int64_t window, int64_t block_size) {
  return WindowStart(prefix, window) / block_size;
}

}  // namespace

Status PagedAttention(const float* q, const KvCacheView& k_cache, const KvCacheView& v_cache,
                      const int32_t* block_tables, int64_t n_seqs, int64_t max_blocks,
                      const int32_t* query_start, const int32_t* kv_lens, const int32_t* parents,
                      int64_t n_tokens, const AttentionParams& params, float* out) {
  const int64_t H = params.n_heads;
  const int64_t Dh = params.head_dim;
  const int64_t B = k_cache.block_size;
  const int64_t group = H / params.n_kv_heads;

  // Validate every index first so that a bad input writes nothing.
  if (query_start[0] != 0) {
    return InvalidArgument("PAGED_ATTENTION: query_start[0]=", query_start[0], " != 0");
  }
  if (query_start[n_seqs] != n_tokens) {
    return InvalidArgument("PAGED_ATTENTION: query_start[", n_seqs, "]=", query_start[n_seqs],
                           " != T=", n_tokens);
  }
  for (int64_t s = 0; s < n_seqs; ++s) {
    if (query_start[s + 1] < query_start[s]) {
      return InvalidArgument("PAGED_ATTENTION: query_start is not non-decreasing: query_start[",
                             s + 1, "]=", query_start[s + 1], " < query_start[", s,
                             "]=", query_start[s]);
    }
    const int64_t q_len = query_start[s + 1] - query_start[s];
    if (kv_lens[s] < q_len || kv_lens[s] > max_blocks * B) {
      return OutOfRange("PAGED_ATTENTION: kv_lens[", s, "]=", kv_lens[s], " is outside [q_len=",
                        q_len, ", MB*B=", max_blocks * B, "]");
    }
    const int64_t used_blocks = (kv_lens[s] + B - 1) / B;
    for (int64_t b = FirstVisibleBlock(kv_lens[s] - q_len, params.window, B); b < used_blocks;
         ++b) {
      const int32_t block = block_tables[s * max_blocks + b];
      if (block < 0 || block >= k_cache.n_blocks) {
        return OutOfRange("PAGED_ATTENTION: block_tables[", s, "][", b, "]=", block,
                          " is outside [0, ", k_cache.n_blocks, ")");
      }
    }
    if (parents != nullptr) {
      for (int64_t j = 0; j < q_len; ++j) {
        const int32_t parent = parents[query_start[s] + j];
        if (parent < -1 || parent >= q_len || parent == j) {
          return OutOfRange("PAGED_ATTENTION: parents[", query_start[s] + j, "]=", parent,
                            " is not -1 or another query of sequence ", s, " (q_len=", q_len, ")");
        }
      }
      for (int64_t j = 0; j < q_len; ++j) {  // every ancestor chain must reach a root
        int64_t node = j;
        for (int64_t steps = 0; node >= 0; ++steps) {
          if (steps > q_len) {
            return InvalidArgument("PAGED_ATTENTION: parents of sequence ", s,
                                   " contain a cycle through query ", j);
          }
          node = parents[query_start[s] + node];
        }
      }
    }
  }

  std::vector<float> k_row(Dh), v_row(Dh), scores, probs;
  std::vector<double> acc(Dh);
  std::vector<char> visible;
  std::vector<int64_t> ancestors;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t q0 = query_start[s];
    const int64_t q_len = query_start[s + 1] - q0;
    const int64_t kv_len = kv_lens[s];
    const int64_t prefix = kv_len - q_len;  // committed KV positions before this step's queries
    const int32_t* table = block_tables + s * max_blocks;
    for (int64_t j = 0; j < q_len; ++j) {
      // Which KV positions query j sees.
      visible.assign(kv_len, 0);
      if (parents != nullptr) {
        // Ancestors of j, nearest first; their depth below j gives their sequence position.
        std::vector<int64_t>& chain = ancestors;
        chain.clear();
        for (int64_t node = j; node >= 0; node = parents[q0 + node]) chain.push_back(node);
        const int64_t depth = static_cast<int64_t>(chain.size()) - 1;
        const int64_t first = WindowStart(prefix + depth, params.window);
        std::fill(visible.begin() + std::min(first, prefix), visible.begin() + prefix, 1);
        for (size_t a = 0; a < chain.size(); ++a) {
          if (prefix + depth - static_cast<int64_t>(a) >= first) visible[prefix + chain[a]] = 1;
        }
      } else {
        const int64_t last = params.causal ? prefix + j : kv_len - 1;
        const int64_t first = WindowStart(prefix + j, params.window);
        std::fill(visible.begin() + std::min(first, last + 1), visible.begin() + last + 1, 1);
      }
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kv_head = h / group;
        const float* qh = q + ((q0 + j) * H + h) * Dh;
        scores.assign(kv_len, -std::numeric_limits<float>::infinity());
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t pos = 0; pos < kv_len; ++pos) {
          if (!visible[pos]) continue;
          LoadKv(k_cache, table[pos / B], pos % B, kv_head, k_row.data());
          scores[pos] = static_cast<float>(Dot(qh, k_row.data(), Dh)) * params.scale;
          max_score = std::max(max_score, scores[pos]);
        }
        probs.assign(kv_len, 0.0f);
        double sum = 0.0;
        for (int64_t pos = 0; pos < kv_len; ++pos) {
          if (!visible[pos]) continue;
          probs[pos] = std::exp(scores[pos] - max_score);
          sum += probs[pos];
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t pos = 0; pos < kv_len; ++pos) {
          if (!visible[pos]) continue;
          LoadKv(v_cache, table[pos / B], pos % B, kv_head, v_row.data());
          const double p = probs[pos];
          for (int64_t d = 0; d < Dh; ++d) acc[d] += p * v_row[d];
        }
        float* oh = out + ((q0 + j) * H + h) * Dh;
        for (int64_t d = 0; d < Dh; ++d) {
          oh[d] = sum > 0.0 ? static_cast<float>(acc[d] / sum) : 0.0f;
        }
      }
    }
  }
  return Status();
}

Status Logits(const float* x, int64_t n_tokens, int64_t dim, uint32_t w_dtype, const void* w,
              int64_t vocab, const int32_t* rows, int64_t n_rows, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    if (rows[r] < 0 || rows[r] >= n_tokens) {
      return OutOfRange("LOGITS: rows[", r, "]=", rows[r], " is outside [0, T=", n_tokens, ")");
    }
  }
  std::vector<float> gathered(static_cast<size_t>(n_rows * dim));
  for (int64_t r = 0; r < n_rows; ++r) {
    std::memcpy(gathered.data() + r * dim, x + rows[r] * dim, dim * sizeof(float));
  }
  Matmul(gathered.data(), n_rows, dim, w_dtype, w, vocab, out);
  return Status();
}

void Moe(const float* x, int64_t n_tokens, int64_t dim, int64_t ff, uint32_t router_dtype,
         const void* router, const ExpertWeights& gate, const ExpertWeights& up,
         const ExpertWeights& down, const MoeParams& p, float* out, int32_t* stats) {
  const int64_t E = p.n_experts, K = p.top_k;
  // 1. Routing: per token the K selected experts and their weights.
  std::vector<float> logits(static_cast<size_t>(n_tokens * E));
  Matmul(x, n_tokens, dim, router_dtype, router, E, logits.data());
  std::vector<int64_t> chosen(static_cast<size_t>(n_tokens * K));
  std::vector<double> weight(static_cast<size_t>(n_tokens * K));
  std::vector<double> score(static_cast<size_t>(E));
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* l = logits.data() + t * E;
    if (p.routing == KESTREL_MOE_ROUTING_SIGMOID_TOPK) {
      for (int64_t e = 0; e < E; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(l[e])));
    } else {
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t e = 0; e < E; ++e) max = std::max(max, static_cast<double>(l[e]));
      double sum = 0.0;
      for (int64_t e = 0; e < E; ++e) sum += (score[e] = std::exp(static_cast<double>(l[e]) - max));
      for (int64_t e = 0; e < E; ++e) score[e] /= sum;
    }
    // Rank by score, ties to the lower id; a NaN score ranks last (so the order stays strict).
    auto key = [&](int64_t e) {
      return std::isnan(score[e]) ? -std::numeric_limits<double>::infinity() : score[e];
    };
    for (int64_t e = 0; e < E; ++e) order[e] = e;
    std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int64_t a, int64_t b) {
      const double ka = key(a), kb = key(b);
      return ka > kb || (ka == kb && a < b);
    });
    double selected = 0.0;
    for (int64_t k = 0; k < K; ++k) selected += score[order[k]];
    for (int64_t k = 0; k < K; ++k) {
      chosen[t * K + k] = order[k];
      weight[t * K + k] = p.routing == KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM
                              ? score[order[k]] / selected
                              : score[order[k]];
    }
  }
  if (stats != nullptr) {
    std::fill(stats, stats + E, 0);
    for (int64_t e : chosen) ++stats[e];
  }

  // 2. Each local expert over the tokens routed to it, accumulated in double.
  std::vector<double> acc(static_cast<size_t>(n_tokens * dim), 0.0);
  const uint64_t gate_bytes = static_cast<uint64_t>(ff) * RowBytes(gate.dtype, dim);
  const uint64_t up_bytes = static_cast<uint64_t>(ff) * RowBytes(up.dtype, dim);
  const uint64_t down_bytes = static_cast<uint64_t>(dim) * RowBytes(down.dtype, ff);
  std::vector<float> xs, g, u, y;
  std::vector<int64_t> rows;
  std::vector<double> row_weight;
  for (int64_t i = 0; i < p.n_local_experts; ++i) {
    const int64_t e = p.first_expert + i;
    rows.clear();
    row_weight.clear();
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t k = 0; k < K; ++k) {
        if (chosen[t * K + k] == e) {
          rows.push_back(t);
          row_weight.push_back(weight[t * K + k]);
        }
      }
    }
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n == 0) continue;
    xs.resize(static_cast<size_t>(n * dim));
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(xs.data() + r * dim, x + rows[r] * dim, dim * sizeof(float));
    }
    g.resize(static_cast<size_t>(n * ff));
    u.resize(static_cast<size_t>(n * ff));
    y.resize(static_cast<size_t>(n * dim));
    Matmul(xs.data(), n, dim, gate.dtype, static_cast<const uint8_t*>(gate.data) + i * gate_bytes,
           ff, g.data());
    Matmul(xs.data(), n, dim, up.dtype, static_cast<const uint8_t*>(up.data) + i * up_bytes, ff,
           u.data());
    Swiglu(g.data(), u.data(), n * ff, g.data());
    Matmul(g.data(), n, ff, down.dtype, static_cast<const uint8_t*>(down.data) + i * down_bytes,
           dim, y.data());
    for (int64_t r = 0; r < n; ++r) {
      double* a = acc.data() + rows[r] * dim;
      for (int64_t d = 0; d < dim; ++d) a[d] += row_weight[r] * static_cast<double>(y[r * dim + d]);
    }
  }
  for (size_t j = 0; j < acc.size(); ++j) out[j] = static_cast<float>(acc[j]);
}

}  // namespace kestrel::plugin_sdk
