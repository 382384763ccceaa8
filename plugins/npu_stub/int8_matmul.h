// The stub NPU's int8 matmul (W8A8): weights compiled once into int8 tiles with one f32 scale per
// output channel, activations quantized per token with a dynamic scale, products accumulated in
// int32 and scaled back to f32. Portable C++17 on host pointers (the "device memory" of the stub);
// deterministic; thread-safe (no state).
//
// Compiled layout of an [N, K] weight: Nt = ceil(N / kTileRows) row tiles, Kt = ceil(K / kTileK)
// depth tiles, the int8 tiles [Nt][Kt][kTileRows][kTileK] (zero padded), then the f32 scales
// [Nt * kTileRows] (scale n = max|W[n, :]| / 127, 0 for padding rows and all-zero rows).
#ifndef KESTREL_PLUGINS_NPU_STUB_INT8_MATMUL_H_
#define KESTREL_PLUGINS_NPU_STUB_INT8_MATMUL_H_

#include <cstddef>
#include <cstdint>

namespace kestrel::plugins::npu {

inline constexpr int64_t kTileRows = 16;
inline constexpr int64_t kTileK = 64;

// Bytes of the compiled form of an [n, k] weight.
uint64_t CompiledWeightBytes(int64_t n, int64_t k);

// Compiles the [n, k] weight of `dtype` (F32, F16, BF16, Q8_0, Q4_0; GGUF row layout) at `src`
// into `dst` (CompiledWeightBytes). Each row is dequantized to f32 first, then quantized to int8
// with its own scale (round to nearest, ties away from zero).
void CompileWeight(uint32_t dtype, const void* src, int64_t n, int64_t k, uint8_t* dst);

// y[t, n] = sum_k x[t, k] w[n, k] for x [t, k] f32 and the compiled [n, k] weight, as W8A8:
// q_x = round(x / s_t) with s_t = max|x[t, :]| / 127 per token, acc = sum q_x q_w in int32,
// y = acc * s_t * s_n. y must not overlap x.
void MatmulW8A8(const uint8_t* compiled, int64_t n, int64_t k, const float* x, int64_t t,
                float* y);

}  // namespace kestrel::plugins::npu

#endif  // KESTREL_PLUGINS_NPU_STUB_INT8_MATMUL_H_
