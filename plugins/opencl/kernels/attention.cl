// PAGED_ATTENTION: varlen prefill + decode over block tables, GQA, causal or full, optional
// sliding window (positions before qpos + 1 - window are skipped).
//
// One work-group per (query token, head). Query tokens find their sequence by binary search in
// query_start. The visible KV positions are processed in chunks of WG with an online softmax
// (running max and sum, flash-attention style): each work-item scores one position of the chunk
// (q held in local memory), the chunk max / sum are reduced in local memory, and the V
// accumulation splits the work-group into `nparts` groups of tpp = WG / nparts work-items, each
// group summing every nparts-th position of the chunk over the head dims (ATT_MAXD dims per
// work-item at most: head_dim <= ATT_MAXD * WG). Partial accumulators are reduced at the end.
// Indices (block tables, query_start, kv_lens) were validated on the host.
#define ATT_MAXD 4

#define LOAD_F32(p, i) ((p)[i])
#define LOAD_F16(p, i) vload_half((i), (p))

#define DEFINE_PAGED_ATTENTION(NAME, KTYPE, LOADK, VTYPE, LOADV)                               \
  kernel void NAME(global const float* q, ulong q_off, global const KTYPE* kc, ulong kc_off,   \
                   global const VTYPE* vc, ulong vc_off, global const int* tables,             \
                   ulong tables_off, global const int* qstart, ulong qstart_off,               \
                   global const int* kvlens, ulong kvlens_off, global float* out,              \
                   ulong out_off, uint n_seqs, uint max_blocks, uint n_heads, uint n_kv_heads, \
                   uint head_dim, uint block_size, int causal, float scale, uint nparts,      \
                   uint window) {                                                              \
    local float qloc[ATT_MAXD * WG];                                                            \
    local float probs[WG];                                                                      \
    local float red[WG];                                                                        \
    const uint lid = get_local_id(0);                                                           \
    const uint t = get_group_id(0) / n_heads;                                                   \
    const uint h = get_group_id(0) % n_heads;                                                   \
    kc += kc_off;                                                                               \
    vc += vc_off;                                                                               \
    qstart += qstart_off;                                                                       \
    /* sequence s: qstart[s] <= t < qstart[s + 1] */                                            \
    uint lo = 0, hi = n_seqs - 1;                                                               \
    while (lo < hi) {                                                                           \
      const uint mid = (lo + hi) / 2;                                                           \
      if ((uint)qstart[mid + 1] > t) hi = mid; else lo = mid + 1;                               \
    }                                                                                           \
    const uint s = lo;                                                                          \
    const uint q_len = (uint)(qstart[s + 1] - qstart[s]);                                       \
    const uint kv_len = (uint)kvlens[kvlens_off + s];                                           \
    const uint qpos = kv_len - q_len + (t - (uint)qstart[s]);                                   \
    const uint n_vis = causal ? qpos + 1 : kv_len;                                              \
    /* sliding window: positions before first are hidden (and their blocks may be freed) */     \
    const uint first = (window > 0 && qpos + 1 > window) ? qpos + 1 - window : 0;               \
    global const int* table = tables + tables_off + (ulong)s * max_blocks;                      \
    const uint kvh = h / (n_heads / n_kv_heads);                                                \
    const ulong slot_stride = (ulong)n_kv_heads * head_dim;                                     \
    global const float* qh = q + q_off + ((ulong)t * n_heads + h) * head_dim;                   \
    for (uint d = lid; d < head_dim; d += WG) qloc[d] = qh[d];                                  \
    barrier(CLK_LOCAL_MEM_FENCE);                                                               \
    const uint tpp = WG / nparts;                                                               \
    const uint li = lid % tpp;                                                                  \
    const uint part = lid / tpp;                                                                \
    float acc[ATT_MAXD];                                                                        \
    for (uint a = 0; a < ATT_MAXD; ++a) acc[a] = 0.0f;                                          \
    float m = -INFINITY;                                                                        \
    float l = 0.0f;                                                                             \
    for (uint c0 = first; c0 < n_vis; c0 += WG) {                                               \
      const uint pos = c0 + lid;                                                                \
      float sc = -INFINITY;                                                                     \
      if (pos < n_vis) {                                                                        \
        const ulong base = ((ulong)table[pos / block_size] * block_size + pos % block_size) *   \
                               slot_stride + (ulong)kvh * head_dim;                             \
        float dotv = 0.0f;                                                                      \
        for (uint d = 0; d < head_dim; ++d) dotv += qloc[d] * LOADK(kc, base + d);              \
        sc = dotv * scale;                                                                      \
      }                                                                                         \
      const float m_new = fmax(m, wg_max(sc, red));                                             \
      const float corr = exp(m - m_new);                                                        \
      const float p = pos < n_vis ? exp(sc - m_new) : 0.0f;                                     \
      probs[lid] = p;                                                                           \
      l = l * corr + wg_sum(p, red);                                                            \
      for (uint a = 0; a < ATT_MAXD; ++a) acc[a] *= corr;                                       \
      const uint cn = min((uint)WG, n_vis - c0);                                                \
      if (part < nparts) {                                                                      \
        for (uint i = part; i < cn; i += nparts) {                                              \
          const uint pp = c0 + i;                                                               \
          const ulong base = ((ulong)table[pp / block_size] * block_size + pp % block_size) *   \
                                 slot_stride + (ulong)kvh * head_dim;                           \
          const float pi = probs[i];                                                            \
          for (uint a = 0; a < ATT_MAXD; ++a) {                                                 \
            const uint d = li + a * tpp;                                                        \
            if (d < head_dim) acc[a] += pi * LOADV(vc, base + d);                               \
          }                                                                                     \
        }                                                                                       \
      }                                                                                         \
      m = m_new;                                                                                \
      barrier(CLK_LOCAL_MEM_FENCE);                                                             \
    }                                                                                           \
    global float* oh = out + out_off + ((ulong)t * n_heads + h) * head_dim;                     \
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;                                               \
    if (nparts == 1) {                                                                          \
      for (uint a = 0; a < ATT_MAXD; ++a) {                                                     \
        const uint d = li + a * tpp;                                                            \
        if (d < head_dim) oh[d] = acc[a] * inv;                                                 \
      }                                                                                         \
    } else {                                                                                    \
      /* head_dim <= tpp here: one dim per work-item; sum the parts in local memory. */         \
      red[lid] = acc[0];                                                                        \
      barrier(CLK_LOCAL_MEM_FENCE);                                                             \
      if (part == 0 && li < head_dim) {                                                         \
        float sum = 0.0f;                                                                       \
        for (uint pi = 0; pi < nparts; ++pi) sum += red[pi * tpp + li];                         \
        oh[li] = sum * inv;                                                                     \
      }                                                                                         \
    }                                                                                           \
  }

DEFINE_PAGED_ATTENTION(attn_k32_v32, float, LOAD_F32, float, LOAD_F32)
DEFINE_PAGED_ATTENTION(attn_k32_v16, float, LOAD_F32, half, LOAD_F16)
DEFINE_PAGED_ATTENTION(attn_k16_v32, half, LOAD_F16, float, LOAD_F32)
DEFINE_PAGED_ATTENTION(attn_k16_v16, half, LOAD_F16, half, LOAD_F16)
