// MATMUL / LOGITS: out[T, N] = x[T, K] * w[N, K]^T, f32 accumulation.
//
// One work-group of WG work-items computes a tile of MM_TOK tokens x MM_ROWS weight rows: the
// work-items split K (vector loads: float4 / vload_half4 / 16-byte quant blocks), each keeps
// MM_TOK * MM_ROWS partial sums, and the tile is reduced in local memory. A weight block is
// loaded and dequantised once per tile and reused for MM_TOK tokens; in decode (T = 1) this is
// the usual "one work-group per row block" GEMV. Global size: (WG * ceil(N / MM_ROWS),
// ceil(T / MM_TOK)). With use_rows, token i reads x row rows[i] (LOGITS); rows are range-checked
// on the host. Quantised weights use the repacked layout (f32 scales, then quants alone) so the
// quants of a block are one aligned 16/32-byte vector load.
#define MM_ROWS 4
#define MM_TOK 4
#define MM_ACC (MM_ROWS * MM_TOK)

// Reduces the MM_ACC partial sums of every work-item and writes the tile.
inline void mm_store(const float* acc, local float* red, global float* out, uint t0, uint n0,
                     uint T, uint N) {
  const uint lid = get_local_id(0);
  for (uint i = 0; i < MM_ACC; ++i) red[i * WG + lid] = acc[i];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) {
      for (uint i = 0; i < MM_ACC; ++i) red[i * WG + lid] += red[i * WG + lid + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid < MM_ACC) {
    const uint ti = lid / MM_ROWS;
    const uint ri = lid % MM_ROWS;
    if (t0 + ti < T && n0 + ri < N) out[(ulong)(t0 + ti) * N + n0 + ri] = red[lid * WG];
  }
}

// Start of every matmul kernel: tile origin and the x row of each token of the tile (tokens past
// T repeat the last one; their results are not stored).
#define MM_BEGIN                                                          \
  local float red[MM_ACC * WG];                                           \
  const uint lid = get_local_id(0);                                       \
  const uint n0 = get_group_id(0) * MM_ROWS;                              \
  const uint t0 = get_group_id(1) * MM_TOK;                               \
  global const float* xr[MM_TOK];                                         \
  for (uint i = 0; i < MM_TOK; ++i) {                                     \
    const uint t = min(t0 + i, T - 1);                                    \
    const uint xt = use_rows ? (uint)rows[rows_off + t] : t;              \
    xr[i] = x + x_off + (ulong)xt * K;                                    \
  }                                                                       \
  float acc[MM_ACC];                                                      \
  for (uint i = 0; i < MM_ACC; ++i) acc[i] = 0.0f;

#define MM_ARGS                                                                  \
  global const float *x, ulong x_off, global const int *rows, ulong rows_off,    \
      int use_rows, global float *out, ulong out_off, uint T, uint K, uint N

kernel void matmul_f32(MM_ARGS, global const float* w, ulong w_off) {
  MM_BEGIN
  global const float* wr[MM_ROWS];
  for (uint r = 0; r < MM_ROWS; ++r) wr[r] = w + w_off + (ulong)min(n0 + r, N - 1) * K;
  const uint k4 = K / 4;
  for (uint c = lid; c < k4; c += WG) {
    float4 wv[MM_ROWS];
    for (uint r = 0; r < MM_ROWS; ++r) wv[r] = vload4(c, wr[r]);
    for (uint i = 0; i < MM_TOK; ++i) {
      const float4 xv = vload4(c, xr[i]);
      for (uint r = 0; r < MM_ROWS; ++r) acc[i * MM_ROWS + r] += hsum4(xv * wv[r]);
    }
  }
  for (uint k = k4 * 4 + lid; k < K; k += WG) {
    for (uint i = 0; i < MM_TOK; ++i) {
      for (uint r = 0; r < MM_ROWS; ++r) acc[i * MM_ROWS + r] += xr[i][k] * wr[r][k];
    }
  }
  mm_store(acc, red, out + out_off, t0, n0, T, N);
}

// F16 weights are storage only: converted with vload_half (no cl_khr_fp16 needed).
kernel void matmul_f16(MM_ARGS, global const half* w, ulong w_off) {
  MM_BEGIN
  global const half* wr[MM_ROWS];
  for (uint r = 0; r < MM_ROWS; ++r) wr[r] = w + w_off + (ulong)min(n0 + r, N - 1) * K;
  const uint k4 = K / 4;
  for (uint c = lid; c < k4; c += WG) {
    float4 wv[MM_ROWS];
    for (uint r = 0; r < MM_ROWS; ++r) wv[r] = vload_half4(c, wr[r]);
    for (uint i = 0; i < MM_TOK; ++i) {
      const float4 xv = vload4(c, xr[i]);
      for (uint r = 0; r < MM_ROWS; ++r) acc[i * MM_ROWS + r] += hsum4(xv * wv[r]);
    }
  }
  for (uint k = k4 * 4 + lid; k < K; k += WG) {
    for (uint i = 0; i < MM_TOK; ++i) {
      for (uint r = 0; r < MM_ROWS; ++r) {
        acc[i * MM_ROWS + r] += xr[i][k] * vload_half(k, wr[r]);
      }
    }
  }
  mm_store(acc, red, out + out_off, t0, n0, T, N);
}

// Repacked Q8_0: scales[N * nb] (f32), quants[N * K] (int8, 32 per block).
kernel void matmul_q8(MM_ARGS, global const float* scales, global const char* qs) {
  MM_BEGIN
  const uint nb = K / 32;
  for (uint b = lid; b < nb; b += WG) {
    float16 xl[MM_TOK], xh[MM_TOK];
    for (uint i = 0; i < MM_TOK; ++i) {
      xl[i] = vload16(0, xr[i] + b * 32);
      xh[i] = vload16(0, xr[i] + b * 32 + 16);
    }
    for (uint r = 0; r < MM_ROWS; ++r) {
      const ulong blk = (ulong)min(n0 + r, N - 1) * nb + b;
      const float s = scales[blk];
      const float16 wl = convert_float16(vload16(0, qs + blk * 32));
      const float16 wh = convert_float16(vload16(0, qs + blk * 32 + 16));
      for (uint i = 0; i < MM_TOK; ++i) {
        acc[i * MM_ROWS + r] += s * hsum16(wl * xl[i] + wh * xh[i]);
      }
    }
  }
  mm_store(acc, red, out + out_off, t0, n0, T, N);
}

// Repacked Q4_0: scales[N * nb] (f32), quants[N * K / 2] (16 bytes per block).
kernel void matmul_q4(MM_ARGS, global const float* scales, global const uchar* qs) {
  MM_BEGIN
  const uint nb = K / 32;
  for (uint b = lid; b < nb; b += WG) {
    float16 xl[MM_TOK], xh[MM_TOK];
    for (uint i = 0; i < MM_TOK; ++i) {
      xl[i] = vload16(0, xr[i] + b * 32);
      xh[i] = vload16(0, xr[i] + b * 32 + 16);
    }
    for (uint r = 0; r < MM_ROWS; ++r) {
      const ulong blk = (ulong)min(n0 + r, N - 1) * nb + b;
      const float s = scales[blk];
      const uchar16 q = vload16(0, qs + blk * 16);
      const float16 wl = convert_float16(convert_int16(q & (uchar16)(0x0F)) - 8);
      const float16 wh = convert_float16(convert_int16(q >> (uchar16)(4)) - 8);
      for (uint i = 0; i < MM_TOK; ++i) {
        acc[i * MM_ROWS + r] += s * hsum16(wl * xl[i] + wh * xh[i]);
      }
    }
  }
  mm_store(acc, red, out + out_off, t0, n0, T, N);
}

// Small K (at most 2 * WG elements): splitting K across a work-group would leave most of it idle
// and pay a local-memory reduction per output, so each work-item computes one output (t, n) on
// its own, with 4-wide (or 16/32-element block) vector loads. Global size: (N rounded up, T).
#define MM_SMALL_BEGIN                                                    \
  const uint n = get_global_id(0);                                        \
  const uint t = get_global_id(1);                                        \
  if (n >= N || t >= T) return;                                           \
  const uint xt = use_rows ? (uint)rows[rows_off + t] : t;                \
  global const float* xrow = x + x_off + (ulong)xt * K;                   \
  float4 acc4 = (float4)(0.0f);                                           \
  float acc = 0.0f;

kernel void matmul_small_f32(MM_ARGS, global const float* w, ulong w_off) {
  MM_SMALL_BEGIN
  global const float* wr = w + w_off + (ulong)n * K;
  const uint k4 = K / 4;
  for (uint c = 0; c < k4; ++c) acc4 += vload4(c, xrow) * vload4(c, wr);
  for (uint k = k4 * 4; k < K; ++k) acc += xrow[k] * wr[k];
  out[out_off + (ulong)t * N + n] = hsum4(acc4) + acc;
}

kernel void matmul_small_f16(MM_ARGS, global const half* w, ulong w_off) {
  MM_SMALL_BEGIN
  global const half* wr = w + w_off + (ulong)n * K;
  const uint k4 = K / 4;
  for (uint c = 0; c < k4; ++c) acc4 += vload4(c, xrow) * vload_half4(c, wr);
  for (uint k = k4 * 4; k < K; ++k) acc += xrow[k] * vload_half(k, wr);
  out[out_off + (ulong)t * N + n] = hsum4(acc4) + acc;
}

kernel void matmul_small_q8(MM_ARGS, global const float* scales, global const char* qs) {
  MM_SMALL_BEGIN
  const uint nb = K / 32;
  for (uint b = 0; b < nb; ++b) {
    const ulong blk = (ulong)n * nb + b;
    const float16 wl = convert_float16(vload16(0, qs + blk * 32));
    const float16 wh = convert_float16(vload16(0, qs + blk * 32 + 16));
    acc += scales[blk] * hsum16(wl * vload16(0, xrow + b * 32) + wh * vload16(0, xrow + b * 32 + 16));
  }
  out[out_off + (ulong)t * N + n] = hsum4(acc4) + acc;
}

kernel void matmul_small_q4(MM_ARGS, global const float* scales, global const uchar* qs) {
  MM_SMALL_BEGIN
  const uint nb = K / 32;
  for (uint b = 0; b < nb; ++b) {
    const ulong blk = (ulong)n * nb + b;
    const uchar16 q = vload16(0, qs + blk * 16);
    const float16 wl = convert_float16(convert_int16(q & (uchar16)(0x0F)) - 8);
    const float16 wh = convert_float16(convert_int16(q >> (uchar16)(4)) - 8);
    acc += scales[blk] * hsum16(wl * vload16(0, xrow + b * 32) + wh * vload16(0, xrow + b * 32 + 16));
  }
  out[out_off + (ulong)t * N + n] = hsum4(acc4) + acc;
}
