#include "acme_kernels.h"

#include <cmath>
#include <vector>

#include "kestrel/plugin_sdk/dtype.h"

namespace acme {

void Add(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void Swiglu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void RmsNorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double sum = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / dim) + eps);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = xr[i] * scale * w[i];
  }
}

void Matmul(const float* x, int64_t t, int64_t k, uint32_t w_dtype, const void* w, int64_t n,
            const float* bias, float* y) {
  const uint64_t row_bytes = kestrel::plugin_sdk::RowBytes(w_dtype, k);
  std::vector<float> row(static_cast<size_t>(k));
  std::vector<float> result(static_cast<size_t>(t * n));
  for (int64_t j = 0; j < n; ++j) {
    kestrel::plugin_sdk::DequantizeRow(w_dtype, static_cast<const uint8_t*>(w) + j * row_bytes, k,
                                       row.data());
    for (int64_t i = 0; i < t; ++i) {
      double acc = 0.0;
      for (int64_t c = 0; c < k; ++c) acc += static_cast<double>(x[i * k + c]) * row[c];
      result[i * n + j] = static_cast<float>(acc);
      if (bias != nullptr) result[i * n + j] += bias[j];
    }
  }
  for (int64_t i = 0; i < t * n; ++i) y[i] = result[i];  // y may not alias x; written last anyway
}

}  // namespace acme
