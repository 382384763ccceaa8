// Paged attention for the CPU plugin: per (sequence, KV head, chunk of queries) work item, the
// KV blocks are visited once for all query heads of the group and all queries of the chunk, with
// an online (flash-decoding style) softmax: running max m, running sum l, running output acc.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "plugins/cpu/cpu_ops.h"

namespace kestrel::plugins::cpu {
namespace {

using ref::InvalidArgument;
using ref::OutOfRange;

constexpr int64_t kQueryChunk = 16;

// The same checks, in the same order and with the same messages, as ref::PagedAttention.
Status Validate(const AttentionArgs& a) {
  const int64_t B = a.block_size;
  const int32_t* qs = a.query_start;
  if (qs[0] != 0) return InvalidArgument("PAGED_ATTENTION: query_start[0]=", qs[0], " != 0");
  if (qs[a.n_seqs] != a.n_tokens) {
    return InvalidArgument("PAGED_ATTENTION: query_start[", a.n_seqs, "]=", qs[a.n_seqs],
                           " != T=", a.n_tokens);
  }
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    if (qs[s + 1] < qs[s]) {
      return InvalidArgument("PAGED_ATTENTION: query_start is not non-decreasing: query_start[",
                             s + 1, "]=", qs[s + 1], " < query_start[", s, "]=", qs[s]);
    }
    const int64_t q_len = qs[s + 1] - qs[s];
    if (a.kv_lens[s] < q_len || a.kv_lens[s] > a.max_blocks * B) {
      return OutOfRange("PAGED_ATTENTION: kv_lens[", s, "]=", a.kv_lens[s], " is outside [q_len=",
                        q_len, ", MB*B=", a.max_blocks * B, "]");
    }
    const int64_t used_blocks = (a.kv_lens[s] + B - 1) / B;
    for (int64_t b = 0; b < used_blocks; ++b) {
      const int32_t block = a.block_tables[s * a.max_blocks + b];
      if (block < 0 || block >= a.n_blocks) {
        return OutOfRange("PAGED_ATTENTION: block_tables[", s, "][", b, "]=", block,
                          " is outside [0, ", a.n_blocks, ")");
      }
    }
    if (a.parents != nullptr) {
      for (int64_t j = 0; j < q_len; ++j) {
        const int32_t parent = a.parents[qs[s] + j];
        if (parent < -1 || parent >= q_len || parent == j) {
          return OutOfRange("PAGED_ATTENTION: parents[", qs[s] + j, "]=", parent,
                            " is not -1 or another query of sequence ", s, " (q_len=", q_len, ")");
        }
      }
      for (int64_t j = 0; j < q_len; ++j) {
        int64_t node = j;
        for (int64_t steps = 0; node >= 0; ++steps) {
          if (steps > q_len) {
            return InvalidArgument("PAGED_ATTENTION: parents of sequence ", s,
                                   " contain a cycle through query ", j);
          }
          node = a.parents[qs[s] + node];
        }
      }
    }
  }
  return Status();
}

struct WorkItem {
  int64_t seq;
  int64_t kv_head;
  int64_t j0, j1;  // queries [j0, j1) of the sequence
};

struct Scratch {
  std::vector<float> k, v, scores, m, l, acc;
  std::vector<char> visible;  // tree mask: [queries][q_len] ancestor-or-self flags
};

void AttendItem(const KernelTable& kt, const AttentionArgs& a, const WorkItem& w, Scratch& sc) {
  const int64_t Dh = a.head_dim, B = a.block_size, Hkv = a.n_kv_heads;
  const int64_t group = a.n_heads / Hkv;
  const int64_t q0 = a.query_start[w.seq];
  const int64_t q_len = a.query_start[w.seq + 1] - q0;
  const int64_t kv_len = a.kv_lens[w.seq];
  const int64_t prefix = kv_len - q_len;
  const int32_t* table = a.block_tables + w.seq * a.max_blocks;
  const int64_t nq = w.j1 - w.j0;
  const int64_t rows = nq * group;  // query vectors: (j, h) -> (j - j0) * group + (h - h0)
  const bool tree = a.parents != nullptr;

  sc.k.resize(static_cast<size_t>(B * Dh));
  sc.v.resize(static_cast<size_t>(B * Dh));
  sc.scores.resize(static_cast<size_t>(B));
  sc.m.assign(static_cast<size_t>(rows), -std::numeric_limits<float>::infinity());
  sc.l.assign(static_cast<size_t>(rows), 0.0f);
  sc.acc.assign(static_cast<size_t>(rows * Dh), 0.0f);
  if (tree) {
    sc.visible.assign(static_cast<size_t>(nq * q_len), 0);
    for (int64_t j = w.j0; j < w.j1; ++j) {
      for (int64_t node = j; node >= 0; node = a.parents[q0 + node]) {
        sc.visible[(j - w.j0) * q_len + node] = 1;
      }
    }
  }
  // Last KV position any query of the chunk sees.
  const int64_t last = (tree || !a.causal) ? kv_len - 1 : prefix + w.j1 - 1;
  const int64_t row_elems = Hkv * Dh;  // elements per cache slot
  for (int64_t p0 = 0; p0 <= last; p0 += B) {
    const int64_t n = std::min(B, last + 1 - p0);
    const int64_t block = table[p0 / B];
    const int64_t base = (block * B * Hkv + w.kv_head) * Dh;  // element of (block, 0, kv_head, 0)
    const float* kp;
    const float* vp;
    int64_t kstride, vstride;
    if (a.k_dtype == KESTREL_DTYPE_F16) {
      const uint16_t* src = static_cast<const uint16_t*>(a.k_cache) + base;
      for (int64_t o = 0; o < n; ++o) kt.f16_to_f32(src + o * row_elems, sc.k.data() + o * Dh, Dh);
      kp = sc.k.data();
      kstride = Dh;
    } else {
      kp = static_cast<const float*>(a.k_cache) + base;
      kstride = row_elems;
    }
    if (a.v_dtype == KESTREL_DTYPE_F16) {
      const uint16_t* src = static_cast<const uint16_t*>(a.v_cache) + base;
      for (int64_t o = 0; o < n; ++o) kt.f16_to_f32(src + o * row_elems, sc.v.data() + o * Dh, Dh);
      vp = sc.v.data();
      vstride = Dh;
    } else {
      vp = static_cast<const float*>(a.v_cache) + base;
      vstride = row_elems;
    }
    for (int64_t j = w.j0; j < w.j1; ++j) {
      // Visible positions of this block for query j: [p0, p0 + n_vis) except for tree masks.
      int64_t n_vis = n;
      if (!tree && a.causal) n_vis = std::min(n, prefix + j + 1 - p0);
      if (n_vis <= 0) continue;
      if (!tree && kt.attend_block != nullptr) {
        for (int64_t hh = 0; hh < group; ++hh) {
          const int64_t h = w.kv_head * group + hh;
          const int64_t row = (j - w.j0) * group + hh;
          kt.attend_block(a.q + ((q0 + j) * a.n_heads + h) * Dh, kp, kstride, vp, vstride, n_vis, Dh,
                          a.scale, &sc.m[row], &sc.l[row], sc.acc.data() + row * Dh,
                          sc.scores.data());
        }
        continue;
      }
      for (int64_t hh = 0; hh < group; ++hh) {
        const int64_t h = w.kv_head * group + hh;
        const int64_t row = (j - w.j0) * group + hh;
        const float* qv = a.q + ((q0 + j) * a.n_heads + h) * Dh;
        float bmax = -std::numeric_limits<float>::infinity();
        for (int64_t o = 0; o < n_vis; ++o) {
          const int64_t pos = p0 + o;
          if (tree && pos >= prefix && !sc.visible[(j - w.j0) * q_len + (pos - prefix)]) {
            sc.scores[o] = -std::numeric_limits<float>::infinity();
            continue;
          }
          const float s = kt.dot_f32(qv, kp + o * kstride, Dh) * a.scale;
          sc.scores[o] = s;
          bmax = std::max(bmax, s);
        }
        if (bmax == -std::numeric_limits<float>::infinity()) continue;
        float* acc = sc.acc.data() + row * Dh;
        const float m_old = sc.m[row];
        const float m_new = std::max(m_old, bmax);
        if (m_old != m_new && sc.l[row] != 0.0f) {
          const float corr = std::exp(m_old - m_new);
          sc.l[row] *= corr;
          for (int64_t d = 0; d < Dh; ++d) acc[d] *= corr;
        }
        sc.m[row] = m_new;
        float sum = 0.0f;
        for (int64_t o = 0; o < n_vis; ++o) {
          if (sc.scores[o] == -std::numeric_limits<float>::infinity()) continue;
          const float p = std::exp(sc.scores[o] - m_new);
          sum += p;
          kt.axpy_f32(p, vp + o * vstride, acc, Dh);
        }
        sc.l[row] += sum;
      }
    }
  }
  for (int64_t j = w.j0; j < w.j1; ++j) {
    for (int64_t hh = 0; hh < group; ++hh) {
      const int64_t h = w.kv_head * group + hh;
      const int64_t row = (j - w.j0) * group + hh;
      float* o = a.out + ((q0 + j) * a.n_heads + h) * Dh;
      const float l = sc.l[row];
      const float* acc = sc.acc.data() + row * Dh;
      if (l > 0.0f) {
        const float inv = 1.0f / l;
        for (int64_t d = 0; d < Dh; ++d) o[d] = acc[d] * inv;
      } else {
        std::fill(o, o + Dh, 0.0f);
      }
    }
  }
}

}  // namespace

Status PagedAttentionCpu(const OpContext& ctx, const AttentionArgs& a) {
  KESTREL_REF_RETURN_IF_ERROR(Validate(a));
  std::vector<WorkItem> items;
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    const int64_t q_len = a.query_start[s + 1] - a.query_start[s];
    for (int64_t j0 = 0; j0 < q_len; j0 += kQueryChunk) {
      for (int64_t g = 0; g < a.n_kv_heads; ++g) {
        items.push_back({s, g, j0, std::min(q_len, j0 + kQueryChunk)});
      }
    }
  }
  // Longest items first (causal chunks late in a sequence see the most KV).
  std::stable_sort(items.begin(), items.end(),
                   [](const WorkItem& x, const WorkItem& y) { return x.j0 > y.j0; });
  std::vector<Scratch> scratch(static_cast<size_t>(ctx.pool->size()));
  // Rough work estimate (query heads x visible KV x head_dim); small steps stay on this thread.
  int64_t work = 0;
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    work += (a.query_start[s + 1] - a.query_start[s]) * static_cast<int64_t>(a.kv_lens[s]);
  }
  work *= a.n_heads * a.head_dim;
  if (work < (int64_t{1} << 16)) {
    for (const WorkItem& item : items) AttendItem(*ctx.kernels, a, item, scratch[0]);
    return Status();
  }
  ctx.pool->Run(static_cast<int64_t>(items.size()), [&](int64_t i, int thread) {
    AttendItem(*ctx.kernels, a, items[static_cast<size_t>(i)], scratch[static_cast<size_t>(thread)]);
  });
  return Status();
}

}  // namespace kestrel::plugins::cpu
