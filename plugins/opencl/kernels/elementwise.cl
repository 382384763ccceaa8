// Element-wise and per-row ops: ADD, SWIGLU, RMSNORM, ROPE, EMBEDDING_GATHER, KV_WRITE.
//
// FP_CONTRACT is off here so that RMSNorm and RoPE do llama.cpp's float operations in its order
// (no fused multiply-add), which keeps the golden tests token-exact.
#pragma OPENCL FP_CONTRACT OFF

// out[i] = a[i] + b[i]; one work-item per 4 elements (out may alias a or b).
kernel void add_f32(global const float* a, ulong a_off, global const float* b, ulong b_off,
                    global float* out, ulong out_off, ulong n) {
  a += a_off;
  b += b_off;
  out += out_off;
  const ulong i = get_global_id(0) * 4;
  if (i + 4 <= n) {
    vstore4(vload4(0, a + i) + vload4(0, b + i), 0, out + i);
  } else {
    for (ulong j = i; j < n; ++j) out[j] = a[j] + b[j];
  }
}

inline float silu_mul(float g, float u) { return (g / (1.0f + exp(-g))) * u; }

// GELU, tanh approximation (PyTorch's gelu_pytorch_tanh): 0.5 g (1 + tanh(u)), u = sqrt(2/pi) (g +
// 0.044715 g^3), computed as g * sigmoid(2u) (the same value): for a very negative g, 1 + tanh(u)
// cancels in float and loses the relative precision ref's double result has (like the cpu plugin).
inline float gelu_tanh(float g) {
  const float u = 0.7978845608028654f * (g + 0.044715f * g * g * g);
  return g / (1.0f + exp(-2.0f * u));
}

// out = gelu(gate) * up (GeGLU); one work-item per 4 elements.
kernel void geglu_f32(global const float* gate, ulong g_off, global const float* up,
                      ulong u_off, global float* out, ulong out_off, ulong n) {
  gate += g_off;
  up += u_off;
  out += out_off;
  const ulong i = get_global_id(0) * 4;
  for (ulong j = i; j < min(i + 4, n); ++j) out[j] = gelu_tanh(gate[j]) * up[j];
}

// out = silu(gate) * up; one work-item per 4 elements.
kernel void swiglu_f32(global const float* gate, ulong g_off, global const float* up,
                       ulong u_off, global float* out, ulong out_off, ulong n) {
  gate += g_off;
  up += u_off;
  out += out_off;
  const ulong i = get_global_id(0) * 4;
  if (i + 4 <= n) {
    const float4 g = vload4(0, gate + i);
    const float4 u = vload4(0, up + i);
    vstore4((g / (1.0f + exp(-g))) * u, 0, out + i);
  } else {
    for (ulong j = i; j < n; ++j) out[j] = silu_mul(gate[j], up[j]);
  }
}

// One work-group per row: sum of squares reduced in local memory, then (x * scale) * w.
kernel void rmsnorm_f32(global const float* x, ulong x_off, global const float* w, ulong w_off,
                        global float* out, ulong out_off, uint dim, float eps) {
  local float scratch[WG];
  const uint lid = get_local_id(0);
  const ulong row = get_group_id(0);
  x += x_off + row * dim;
  out += out_off + row * dim;
  w += w_off;
  float sum = 0.0f;
  for (uint i = lid; i < dim; i += WG) sum += x[i] * x[i];
  sum = wg_sum(sum, scratch);
  const float mean = sum / (float)dim;
  const float scale = 1.0f / sqrt(mean + eps);
  for (uint i = lid; i < dim; i += WG) out[i] = (x[i] * scale) * w[i];
}

// One work-item per (token, head, pair): pairs [0, n_rot/2) rotate, the rest copy one of the
// n_rot..head_dim pass-through elements. Works in place (out == x).
kernel void rope_f32(global const float* x, ulong x_off, global const int* pos, ulong pos_off,
                     global float* out, ulong out_off, uint n_tokens, uint n_heads, uint head_dim,
                     uint n_rot, uint neox, float theta_scale, float freq_scale,
                     global const float* ff, ulong ff_off, uint has_ff) {
  const uint half_rot = n_rot / 2;
  const uint per_head = half_rot + (head_dim - n_rot);
  const ulong gid = get_global_id(0);
  if (gid >= (ulong)n_tokens * n_heads * per_head) return;
  const uint i = gid % per_head;
  const ulong th = gid / per_head;  // token * n_heads + head
  const uint t = th / n_heads;
  global const float* xr = x + x_off + th * head_dim;
  global float* yr = out + out_off + th * head_dim;
  if (i >= half_rot) {
    const uint e = n_rot + (i - half_rot);
    yr[e] = xr[e];
    return;
  }
  // llama.cpp's rope cache: theta starts at the position and is multiplied by theta_scale once
  // per pair, in float.
  float theta = (float)pos[pos_off + t];
  for (uint k = 0; k < i; ++k) theta *= theta_scale;
  // Frequency factors (plugin ABI 1.2): the pair's angle is divided by its factor.
  const float angle = has_ff ? freq_scale * (theta / ff[ff_off + i]) : freq_scale * theta;
  const float c = cos(angle);
  const float s = sin(angle);
  const uint i0 = neox ? i : 2 * i;
  const uint i1 = neox ? i + half_rot : 2 * i + 1;
  const float x0 = xr[i0];
  const float x1 = xr[i1];
  yr[i0] = x0 * c - x1 * s;
  yr[i1] = x0 * s + x1 * c;
}

// MATMUL bias (plugin ABI 1.2): out[t, j] += bias[j] over n_tokens rows of n; global (n * T).
kernel void add_bias_f32(global float* out, ulong out_off, global const float* bias,
                         ulong bias_off, uint n, ulong total) {
  const ulong i = get_global_id(0);
  if (i >= total) return;
  out[out_off + i] += bias[bias_off + i % n];
}

// EMBEDDING_GATHER: global (dim rounded up to WG, T); ids were range-checked on the host.
kernel void embed_f32(global const float* table, ulong table_off, global const int* ids,
                      ulong ids_off, global float* out, ulong out_off, uint dim, float scale) {
  const uint d = get_global_id(0);
  const ulong t = get_global_id(1);
  if (d >= dim) return;
  out[out_off + t * dim + d] = (table[table_off + (ulong)ids[ids_off + t] * dim + d]) * scale;
}

kernel void embed_f16(global const half* table, ulong table_off, global const int* ids,
                      ulong ids_off, global float* out, ulong out_off, uint dim, float scale) {
  const uint d = get_global_id(0);
  const ulong t = get_global_id(1);
  if (d >= dim) return;
  out[out_off + t * dim + d] = (vload_half(table_off + (ulong)ids[ids_off + t] * dim + d, table)) * scale;
}

// Repacked Q8_0: scales[row * nb + block], quants[row * dim + k].
kernel void embed_q8(global const float* scales, global const char* qs, global const int* ids,
                     ulong ids_off, global float* out, ulong out_off, uint dim, float scale) {
  const uint d = get_global_id(0);
  const ulong t = get_global_id(1);
  if (d >= dim) return;
  const ulong row = (ulong)ids[ids_off + t];
  const float s = scales[row * (dim / 32) + d / 32];
  out[out_off + t * dim + d] = ((float)qs[row * dim + d] * s) * scale;
}

// Repacked Q4_0: scales[row * nb + block], 16 bytes of nibbles per block (element j of a block
// in the low nibble of byte j, element j + 16 in the high nibble).
kernel void embed_q4(global const float* scales, global const uchar* qs, global const int* ids,
                     ulong ids_off, global float* out, ulong out_off, uint dim, float scale) {
  const uint d = get_global_id(0);
  const ulong t = get_global_id(1);
  if (d >= dim) return;
  const ulong row = (ulong)ids[ids_off + t];
  const uint j = d % 32;
  const uchar q = qs[row * (dim / 2) + (d / 32) * 16 + (j % 16)];
  const int nib = j < 16 ? (q & 0x0F) : (q >> 4);
  out[out_off + t * dim + d] = ((float)(nib - 8) * scales[row * (dim / 32) + d / 32]) * scale;
}

// KV_WRITE for one cache: cache[slots[t] * row + j] = src[t * row + j]; global (row up, T).
kernel void kv_write_f32(global const float* src, ulong src_off, global const int* slots,
                         ulong slots_off, global float* cache, ulong cache_off, uint row) {
  const uint j = get_global_id(0);
  const ulong t = get_global_id(1);
  if (j >= row) return;
  cache[cache_off + (ulong)slots[slots_off + t] * row + j] = src[src_off + t * row + j];
}

kernel void kv_write_f16(global const float* src, ulong src_off, global const int* slots,
                         ulong slots_off, global half* cache, ulong cache_off, uint row) {
  const uint j = get_global_id(0);
  const ulong t = get_global_id(1);
  if (j >= row) return;
  vstore_half_rte(src[src_off + t * row + j], cache_off + (ulong)slots[slots_off + t] * row + j,
                  cache);
}

#pragma OPENCL FP_CONTRACT ON
