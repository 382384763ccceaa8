#include "int8_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kestrel/plugin_sdk/dtype.h"

namespace kestrel::plugins::npu {
namespace {

int64_t Tiles(int64_t n, int64_t tile) { return (n + tile - 1) / tile; }

// Symmetric int8 of v / scale, round half away from zero, clamped to [-127, 127].
int8_t Quantize(float v, float inv_scale) {
  const long q = std::lround(v * inv_scale);
  return static_cast<int8_t>(std::clamp<long>(q, -127, 127));
}

}  // namespace

uint64_t CompiledWeightBytes(int64_t n, int64_t k) {
  const uint64_t rows = static_cast<uint64_t>(Tiles(n, kTileRows) * kTileRows);
  const uint64_t depth = static_cast<uint64_t>(Tiles(k, kTileK) * kTileK);
  return rows * depth + rows * sizeof(float);
}

void CompileWeight(uint32_t dtype, const void* src, int64_t n, int64_t k, uint8_t* dst) {
  const int64_t nt = Tiles(n, kTileRows), kt = Tiles(k, kTileK);
  const uint64_t tile_bytes = static_cast<uint64_t>(kTileRows * kTileK);
  std::memset(dst, 0, CompiledWeightBytes(n, k));
  float* scales = reinterpret_cast<float*>(dst + static_cast<uint64_t>(nt * kt) * tile_bytes);
  const uint64_t row_bytes = plugin_sdk::RowBytes(dtype, k);
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    plugin_sdk::DequantizeRow(dtype, static_cast<const uint8_t*>(src) + r * row_bytes, k,
                              row.data());
    float amax = 0.0f;
    for (float v : row) amax = std::max(amax, std::fabs(v));
    const float scale = amax / 127.0f;
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    scales[r] = scale;
    const int64_t tr = r / kTileRows, rr = r % kTileRows;
    for (int64_t c = 0; c < k; ++c) {
      const int64_t tk = c / kTileK, kk = c % kTileK;
      uint8_t* tile = dst + static_cast<uint64_t>(tr * kt + tk) * tile_bytes;
      tile[rr * kTileK + kk] = static_cast<uint8_t>(Quantize(row[c], inv));
    }
  }
}

void MatmulW8A8(const uint8_t* compiled, int64_t n, int64_t k, const float* x, int64_t t,
                float* y) {
  const int64_t nt = Tiles(n, kTileRows), kt = Tiles(k, kTileK);
  const uint64_t tile_bytes = static_cast<uint64_t>(kTileRows * kTileK);
  const float* scales =
      reinterpret_cast<const float*>(compiled + static_cast<uint64_t>(nt * kt) * tile_bytes);
  std::vector<int8_t> qx(static_cast<size_t>(kt * kTileK), 0);
  std::vector<int32_t> acc(kTileRows);
  for (int64_t i = 0; i < t; ++i) {
    const float* xi = x + i * k;
    float amax = 0.0f;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(xi[c]));
    const float sx = amax / 127.0f;
    const float inv = sx > 0.0f ? 1.0f / sx : 0.0f;
    for (int64_t c = 0; c < k; ++c) qx[c] = Quantize(xi[c], inv);
    for (int64_t tr = 0; tr < nt; ++tr) {
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t tk = 0; tk < kt; ++tk) {
        const int8_t* tile =
            reinterpret_cast<const int8_t*>(compiled + static_cast<uint64_t>(tr * kt + tk) * tile_bytes);
        const int8_t* q = qx.data() + tk * kTileK;
        for (int64_t rr = 0; rr < kTileRows; ++rr) {
          int32_t sum = 0;
          for (int64_t kk = 0; kk < kTileK; ++kk) sum += int32_t{tile[rr * kTileK + kk]} * q[kk];
          acc[rr] += sum;
        }
      }
      for (int64_t rr = 0; rr < kTileRows && tr * kTileRows + rr < n; ++rr) {
        const int64_t row = tr * kTileRows + rr;
        y[i * n + row] = static_cast<float>(acc[rr]) * sx * scales[row];
      }
    }
  }
}

}  // namespace kestrel::plugins::npu
