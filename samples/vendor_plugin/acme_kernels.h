// The "Acme" device's kernels: what a vendor replaces with calls into its own driver. Here they
// are plain loops on host pointers, so the sample runs anywhere.
#ifndef ACME_KERNELS_H_
#define ACME_KERNELS_H_

#include <cstdint>

namespace acme {

void Add(const float* a, const float* b, int64_t n, float* out);
void Swiglu(const float* gate, const float* up, int64_t n, float* out);
void RmsNorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out);
// y [t, n] = x [t, k] * w^T (+ bias [n] when not NULL), w [n, k] of any weight dtype of the plugin
// ABI (rows dequantized with the SDK's dtype helpers).
void Matmul(const float* x, int64_t t, int64_t k, uint32_t w_dtype, const void* w, int64_t n,
            const float* bias, float* y);

}  // namespace acme

#endif  // ACME_KERNELS_H_
