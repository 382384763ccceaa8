// Shared helpers of the Kestrel OpenCL kernels (OpenCL C 1.2, no extension required).
//
// WG, the work-group size of every kernel launched with a local size, is a power of two set by
// the host at build time (-DWG=...). Offsets (`*_off`) are in elements of the pointer's type and
// let one cl_mem hold several tensors without sub-buffers (whose alignment rules vary by vendor).
#ifndef WG
#define WG 64
#endif

inline float hsum4(float4 v) { return (v.x + v.y) + (v.z + v.w); }
inline float hsum16(float16 v) {
  const float8 a = v.lo + v.hi;
  return hsum4(a.lo + a.hi);
}

// Sum of `v` over the work-group (a tree in local memory); every work-item gets the result.
inline float wg_sum(float v, local float* scratch) {
  const uint lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

// Max of `v` over the work-group (-INFINITY is the identity).
inline float wg_max(float v, local float* scratch) {
  const uint lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

// ---- weight layout conversions (run once per call for weights passed as plain buffers) --------
// GGUF Q8_0 (34-byte blocks: f16 scale + 32 x int8) -> f32 scales[nb] + int8 quants[nb * 32].
kernel void repack_q8(global const uchar* src, ulong src_off, global float* scales,
                      global char* qs, ulong n_blocks) {
  const ulong b = get_global_id(0);
  if (b >= n_blocks) return;
  global const uchar* p = src + src_off + b * 34;
  scales[b] = vload_half(0, (global const half*)p);
  vstore16(as_char16(vload16(0, p + 2)), 0, qs + b * 32);
  vstore16(as_char16(vload16(0, p + 18)), 0, qs + b * 32 + 16);
}

// GGUF Q4_0 (18-byte blocks: f16 scale + 16 bytes of nibbles) -> f32 scales + 16-byte quants.
kernel void repack_q4(global const uchar* src, ulong src_off, global float* scales,
                      global uchar* qs, ulong n_blocks) {
  const ulong b = get_global_id(0);
  if (b >= n_blocks) return;
  global const uchar* p = src + src_off + b * 18;
  scales[b] = vload_half(0, (global const half*)p);
  vstore16(vload16(0, p + 2), 0, qs + b * 16);
}

kernel void bf16_to_f32(global const ushort* src, ulong src_off, global float* dst, ulong n) {
  const ulong i = get_global_id(0);
  if (i < n) dst[i] = as_float((uint)src[src_off + i] << 16);
}
