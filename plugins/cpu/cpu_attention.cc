// Paged attention for the CPU plugin: per (sequence, KV head, chunk of queries) work item, the
// sequence's KV is visited once for all query heads of the group and all queries of the chunk, in
// tiles of max(block_size, 64) positions, with an online (flash-decoding style) softmax per tile:
// running max m, running sum l, running output acc. Tiles are independent of the KV block size,
// so small blocks (less KV waste in the engine) cost only the gather of rows that lie in
// non-consecutive blocks into a contiguous scratch tile.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu_ops.h"

namespace kestrel::plugins::cpu {
namespace {

using plugin_sdk::InvalidArgument;
using plugin_sdk::OutOfRange;

constexpr int64_t kQueryChunk = 16;
// KV positions per online-softmax step (at least; a larger block size is one block per step).
constexpr int64_t kKvTile = 64;

// First KV position a query at sequence position `pos` sees (0 without a window).
int64_t WindowStart(int64_t pos, int64_t window) {
  return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
}

// The same checks, in the same order and with the same messages, as plugin_sdk::PagedAttention.
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
    // With a window the blocks wholly before the first visible position are not read.
    for (int64_t b = WindowStart(a.kv_lens[s] - q_len, a.window) / B; b < used_blocks; ++b) {
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
  std::vector<float> tk, tv;      // tree mask: one query's tile in logical order
  std::vector<char> visible;     // tree mask: [queries][q_len] ancestor-or-self flags
  std::vector<int64_t> first;    // per query of the item: first visible KV position (window)
  std::vector<int64_t> depth;    // tree: depth of each query of the sequence
};

// Rows [p0, p0 + n) of one KV head of a cache, as f32 rows at ptr + o * stride (o < n). The tile
// may span several blocks of the sequence's table. F32 rows are used in place when the tile lies
// in one block or in physically consecutive blocks (then the slot stride is uniform); otherwise
// (and always for F16) they are gathered/converted into `scratch` (n rows of Dh).
struct TileRows {
  const float* ptr;
  int64_t stride;
};

TileRows GatherTile(const KernelTable& kt, const AttentionArgs& a, const void* cache,
                    uint32_t dtype, const int32_t* table, int64_t kv_head, int64_t p0, int64_t n,
                    std::vector<float>& scratch) {
  const int64_t Dh = a.head_dim, B = a.block_size, Hkv = a.n_kv_heads;
  const int64_t row_elems = Hkv * Dh;  // elements per cache slot
  const int64_t b0 = p0 / B, b1 = (p0 + n - 1) / B;
  // Element of (block, slot offset o, kv_head, 0).
  auto at = [&](int64_t block, int64_t o) { return ((block * B + o) * Hkv + kv_head) * Dh; };
  if (dtype != KESTREL_DTYPE_F16) {
    bool consecutive = true;
    for (int64_t b = b0; b < b1 && consecutive; ++b) consecutive = table[b + 1] == table[b] + 1;
    if (consecutive) {
      return {static_cast<const float*>(cache) + at(table[b0], p0 % B), row_elems};
    }
  }
  float* dst = scratch.data();
  for (int64_t p = p0; p < p0 + n;) {
    const int64_t block = table[p / B];
    const int64_t o0 = p % B;
    const int64_t cnt = std::min(B - o0, p0 + n - p);  // rows of this block in the tile
    const int64_t base = at(block, o0);
    if (dtype == KESTREL_DTYPE_F16) {
      const uint16_t* src = static_cast<const uint16_t*>(cache) + base;
      for (int64_t o = 0; o < cnt; ++o) kt.f16_to_f32(src + o * row_elems, dst + o * Dh, Dh);
    } else {
      const float* src = static_cast<const float*>(cache) + base;
      for (int64_t o = 0; o < cnt; ++o) {
        std::memcpy(dst + o * Dh, src + o * row_elems, static_cast<size_t>(Dh) * sizeof(float));
      }
    }
    dst += cnt * Dh;
    p += cnt;
  }
  return {scratch.data(), Dh};
}

// Depth of each query of a tree (0: a root). Parents need not precede their children (the op
// contract allows any order), so each chain is walked; Validate has ruled out cycles.
void TreeDepths(const int32_t* parents, int64_t q_len, std::vector<int64_t>* depth) {
  depth->assign(static_cast<size_t>(q_len), 0);
  for (int64_t j = 0; j < q_len; ++j) {
    for (int64_t node = parents[j]; node >= 0; node = parents[node]) ++(*depth)[j];
  }
}

// Tree-mask attention with the decode kernel (attend_block): query j sees the committed prefix
// (from its window's first position) and its ancestors, which are laid out in their logical order
// (prefix, then root ... j) and split into the same tiles of `tile` logical positions a one-token
// decode step at j's position would use (a windowed decode step's tiles start at the block of
// its first visible position). So a verified tree node gets exactly the attention output plain
// decoding computes for the same token at the same position (greedy speculative output stays
// token-identical on this device, not just within rounding). Without a window the prefix's
// whole tiles are the same for every query and gathered once.
void AttendTree(const KernelTable& kt, const AttentionArgs& a, const WorkItem& w, int64_t tile,
                Scratch& sc) {
  const int64_t Dh = a.head_dim, B = a.block_size;
  const int64_t group = a.n_heads / a.n_kv_heads;
  const int64_t q0 = a.query_start[w.seq];
  const int64_t q_len = a.query_start[w.seq + 1] - q0;
  const int64_t prefix = a.kv_lens[w.seq] - q_len;
  const int32_t* table = a.block_tables + w.seq * a.max_blocks;
  auto attend = [&](int64_t j, const float* k, int64_t ks, const float* v, int64_t vs, int64_t n) {
    for (int64_t hh = 0; hh < group; ++hh) {
      const int64_t row = (j - w.j0) * group + hh;
      kt.attend_block(a.q + ((q0 + j) * a.n_heads + w.kv_head * group + hh) * Dh, k, ks, v, vs, n,
                      Dh, a.scale, &sc.m[row], &sc.l[row], sc.acc.data() + row * Dh,
                      sc.scores.data());
    }
  };
  const int64_t shared_tiles = a.window > 0 ? 0 : prefix / tile;
  for (int64_t t = 0; t < shared_tiles; ++t) {
    const TileRows kr = GatherTile(kt, a, a.k_cache, a.k_dtype, table, w.kv_head, t * tile, tile, sc.k);
    const TileRows vr = GatherTile(kt, a, a.v_cache, a.v_dtype, table, w.kv_head, t * tile, tile, sc.v);
    for (int64_t j = w.j0; j < w.j1; ++j) attend(j, kr.ptr, kr.stride, vr.ptr, vr.stride, tile);
  }
  TreeDepths(a.parents + q0, q_len, &sc.depth);
  // The rest per query: the visible prefix tail, then the ancestors root-first, in tiles of the
  // logical grid that starts at `grid` (0, or the block of the window's first position).
  std::vector<int64_t> slots;
  std::vector<float> one_k(static_cast<size_t>(Dh)), one_v(static_cast<size_t>(Dh));
  sc.tk.resize(static_cast<size_t>(tile * Dh));
  sc.tv.resize(static_cast<size_t>(tile * Dh));
  for (int64_t j = w.j0; j < w.j1; ++j) {
    const int64_t first = WindowStart(prefix + sc.depth[j], a.window);
    const int64_t grid = a.window > 0 ? first / B * B : shared_tiles * tile;
    const int64_t from = std::max(first, grid);
    slots.clear();
    for (int64_t p = from; p < prefix; ++p) slots.push_back(p);
    const size_t first_node = slots.size();
    for (int64_t node = j; node >= 0; node = a.parents[q0 + node]) {
      if (prefix + sc.depth[node] >= first) slots.push_back(prefix + node);
    }
    std::reverse(slots.begin() + static_cast<std::ptrdiff_t>(first_node), slots.end());
    // The first tile holds the logical positions [from, grid + tile).
    size_t s0 = 0;
    int64_t n = std::min<int64_t>(grid + tile - from, static_cast<int64_t>(slots.size()));
    while (s0 < slots.size()) {
      for (int64_t o = 0; o < n; ++o) {
        const TileRows kr = GatherTile(kt, a, a.k_cache, a.k_dtype, table, w.kv_head, slots[s0 + o], 1, one_k);
        const TileRows vr = GatherTile(kt, a, a.v_cache, a.v_dtype, table, w.kv_head, slots[s0 + o], 1, one_v);
        std::memcpy(sc.tk.data() + o * Dh, kr.ptr, static_cast<size_t>(Dh) * sizeof(float));
        std::memcpy(sc.tv.data() + o * Dh, vr.ptr, static_cast<size_t>(Dh) * sizeof(float));
      }
      attend(j, sc.tk.data(), Dh, sc.tv.data(), Dh, n);
      s0 += static_cast<size_t>(n);
      n = std::min<int64_t>(tile, static_cast<int64_t>(slots.size() - s0));
    }
  }
}

// out = acc / l per query vector of the item (0 where nothing was visible).
void Finish(const AttentionArgs& a, const WorkItem& w, const Scratch& sc) {
  const int64_t Dh = a.head_dim;
  const int64_t group = a.n_heads / a.n_kv_heads;
  const int64_t q0 = a.query_start[w.seq];
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
  // KV positions per online-softmax step: independent of the block size (B is a power of two,
  // so a tile of max(B, kKvTile) positions starts at a block boundary and covers whole blocks).
  const int64_t tile = std::max(B, kKvTile);

  sc.k.resize(static_cast<size_t>(tile * Dh));
  sc.v.resize(static_cast<size_t>(tile * Dh));
  sc.scores.resize(static_cast<size_t>(tile));
  sc.m.assign(static_cast<size_t>(rows), -std::numeric_limits<float>::infinity());
  sc.l.assign(static_cast<size_t>(rows), 0.0f);
  sc.acc.assign(static_cast<size_t>(rows * Dh), 0.0f);
  if (tree && kt.attend_block != nullptr) {
    AttendTree(kt, a, w, tile, sc);
    Finish(a, w, sc);
    return;
  }
  // The window hides KV positions before first[j] from query j (its sequence position is
  // prefix + j for a chain, prefix + depth for a tree node; ancestors count at their depth).
  sc.first.assign(static_cast<size_t>(nq), 0);
  if (tree) {
    TreeDepths(a.parents + q0, q_len, &sc.depth);
    sc.visible.assign(static_cast<size_t>(nq * q_len), 0);
    for (int64_t j = w.j0; j < w.j1; ++j) {
      const int64_t first = WindowStart(prefix + sc.depth[j], a.window);
      sc.first[j - w.j0] = first;
      for (int64_t node = j; node >= 0; node = a.parents[q0 + node]) {
        if (prefix + sc.depth[node] >= first) sc.visible[(j - w.j0) * q_len + node] = 1;
      }
    }
  } else {
    for (int64_t j = w.j0; j < w.j1; ++j) sc.first[j - w.j0] = WindowStart(prefix + j, a.window);
  }
  // Last KV position any query of the chunk sees; the first is the first query's window start
  // (a tree root's for trees), taken from its block's start so no tile reads an earlier
  // (possibly freed, -1) block-table entry.
  const int64_t last = (tree || !a.causal) ? kv_len - 1 : prefix + w.j1 - 1;
  const int64_t first_any = tree ? WindowStart(prefix, a.window) : sc.first[0];
  for (int64_t p0 = first_any / B * B; p0 <= last; p0 += tile) {
    const int64_t n = std::min(tile, last + 1 - p0);
    const TileRows kr = GatherTile(kt, a, a.k_cache, a.k_dtype, table, w.kv_head, p0, n, sc.k);
    const TileRows vr = GatherTile(kt, a, a.v_cache, a.v_dtype, table, w.kv_head, p0, n, sc.v);
    const float* kp = kr.ptr;
    const float* vp = vr.ptr;
    const int64_t kstride = kr.stride, vstride = vr.stride;
    for (int64_t j = w.j0; j < w.j1; ++j) {
      // Visible positions of this tile for query j: [p0 + lo, p0 + n_vis) except for tree
      // masks (whose prefix part starts at first[j] too).
      const int64_t first = sc.first[j - w.j0];
      // A tree node's visibility is its ancestry (sc.visible), not its physical slot: under a
      // window that starts inside the tree, an ancestor can sit at a slot below `first` (nodes
      // come in any order), so no tile is skipped by `first` for trees.
      const int64_t lo = tree ? 0 : std::max<int64_t>(0, first - p0);
      int64_t n_vis = n;
      if (!tree && a.causal) n_vis = std::min(n, prefix + j + 1 - p0);
      if (n_vis <= lo) continue;
      if (!tree && kt.attend_block != nullptr) {
        for (int64_t hh = 0; hh < group; ++hh) {
          const int64_t h = w.kv_head * group + hh;
          const int64_t row = (j - w.j0) * group + hh;
          kt.attend_block(a.q + ((q0 + j) * a.n_heads + h) * Dh, kp + lo * kstride, kstride,
                          vp + lo * vstride, vstride, n_vis - lo, Dh, a.scale, &sc.m[row],
                          &sc.l[row], sc.acc.data() + row * Dh, sc.scores.data());
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
          const bool hidden = (tree && pos >= prefix)
                                  ? !sc.visible[(j - w.j0) * q_len + (pos - prefix)]
                                  : pos < first;
          if (hidden) {
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
  Finish(a, w, sc);
}

}  // namespace

Status PagedAttentionCpu(const OpContext& ctx, const AttentionArgs& a) {
  KESTREL_SDK_RETURN_IF_ERROR(Validate(a));
  thread_local std::vector<WorkItem> items_buf;  // the caller's, kept between ops
  std::vector<WorkItem>& items = items_buf;      // (workers must see the caller's, not theirs)
  items.clear();
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    const int64_t q_len = a.query_start[s + 1] - a.query_start[s];
    for (int64_t j0 = 0; j0 < q_len; j0 += kQueryChunk) {
      for (int64_t g = 0; g < a.n_kv_heads; ++g) {
        items.push_back({s, g, j0, std::min(q_len, j0 + kQueryChunk)});
      }
    }
  }
  // Longest items first (causal chunks late in a sequence see the most KV).
  // (std::sort with the build order as tie-break: stable_sort allocates a buffer per call.)
  std::sort(items.begin(), items.end(), [](const WorkItem& x, const WorkItem& y) {
    if (x.j0 != y.j0) return x.j0 > y.j0;
    return x.seq != y.seq ? x.seq < y.seq : x.kv_head < y.kv_head;
  });
  // Per-thread scratch kept between ops (the pool's threads are persistent): a decode step runs
  // one attention per layer, and fresh vectors cost a dozen allocations each time.
  auto scratch = []() -> Scratch& {
    thread_local Scratch sc;
    return sc;
  };
  // Rough work estimate (query heads x visible KV x head_dim); small steps stay on this thread.
  int64_t work = 0;
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    work += (a.query_start[s + 1] - a.query_start[s]) * static_cast<int64_t>(a.kv_lens[s]);
  }
  work *= a.n_heads * a.head_dim;
  if (work < (int64_t{1} << 16)) {
    for (const WorkItem& item : items) AttendItem(*ctx.kernels, a, item, scratch());
    return Status();
  }
  ctx.pool->Run(static_cast<int64_t>(items.size()), [&](int64_t i, int) {
    AttendItem(*ctx.kernels, a, items[static_cast<size_t>(i)], scratch());
  });
  return Status();
}

}  // namespace kestrel::plugins::cpu
