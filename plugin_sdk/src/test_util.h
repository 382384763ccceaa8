// Test support for the plugin SDK's tests and the conformance kit (not installed): random inputs
// seeded from std::random_device (KESTREL_TEST_SEED overrides), the relative-norm error measure,
// and float64 oracles written independently of reference_kernels.cc (different decoding technique, no
// shared helpers) so that a bug in a kernel cannot hide in its own oracle.
#ifndef KESTREL_PLUGIN_SDK_SRC_TEST_UTIL_H_
#define KESTREL_PLUGIN_SDK_SRC_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kestrel/plugin_api.h"

namespace kestrel::plugin_sdk::testing_util {

// The seed of this process's random inputs, printed with every failure through SEED_TRACE().
inline uint32_t TestSeed() {
  static const uint32_t seed = [] {
    if (const char* env = std::getenv("KESTREL_TEST_SEED")) {
      return static_cast<uint32_t>(std::strtoul(env, nullptr, 10));
    }
    return static_cast<uint32_t>(std::random_device{}());
  }();
  return seed;
}

#define SEED_TRACE()                                                              \
  SCOPED_TRACE(::testing::Message()                                              \
               << "random seed " << ::kestrel::plugin_sdk::testing_util::TestSeed() \
               << " (rerun with KESTREL_TEST_SEED=<seed>)")

class Rng {
 public:
  explicit Rng(uint32_t salt) : gen_(TestSeed() ^ (salt * 0x9E3779B9u)) {}
  float Uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen_); }
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }  // [lo, hi]
  std::vector<float> Floats(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = Uniform(lo, hi);
    return v;
  }
  std::mt19937& gen() { return gen_; }

 private:
  std::mt19937 gen_;
};

// ||actual - expected|| / ||expected||; infinity if any actual value is NaN/inf or sizes differ,
// so NaN never passes.
inline double RelErr(const float* actual, const std::vector<double>& expected) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (!std::isfinite(actual[i])) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(actual[i]) - expected[i];
    num += d * d;
    den += expected[i] * expected[i];
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}
inline double RelErr(const std::vector<float>& actual, const std::vector<double>& expected) {
  if (actual.size() != expected.size()) return std::numeric_limits<double>::infinity();
  return RelErr(actual.data(), expected);
}

// ---- descriptors ----------------------------------------------------------------------------------

inline kestrel_tensor_desc_t Desc(uint32_t dtype, const std::vector<int64_t>& dims) {
  kestrel_tensor_desc_t d{};
  d.struct_size = sizeof d;
  d.dtype = dtype;
  d.rank = static_cast<uint32_t>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) d.dims[i] = dims[i];
  return d;
}

// An op descriptor of `kind` (op_version 1) over `in` and `out`, which must outlive it.
inline kestrel_op_desc_t OpDesc(uint32_t kind, const std::vector<kestrel_tensor_arg_t>& in,
                                const std::vector<kestrel_tensor_arg_t>& out,
                                const void* params = nullptr, size_t params_size = 0) {
  kestrel_op_desc_t op{};
  op.struct_size = sizeof op;
  op.kind = kind;
  op.op_version = 1;
  op.n_inputs = static_cast<uint32_t>(in.size());
  op.n_outputs = static_cast<uint32_t>(out.size());
  op.inputs = in.data();
  op.outputs = out.data();
  op.params = params;
  op.params_size = params_size;
  return op;
}

inline std::vector<float> Poisoned(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// ---- independent number formats -----------------------------------------------------------------

// binary16 -> value, by the formula of the standard (not bit surgery).
inline double OracleHalf(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(mant), -24);
  if (exp == 31) {
    return mant ? std::numeric_limits<double>::quiet_NaN()
                : sign * std::numeric_limits<double>::infinity();
  }
  return sign * std::ldexp(1.0 + mant / 1024.0, exp - 15);
}

inline double OracleBf16(uint16_t b) {
  const int sign = (b >> 15) ? -1 : 1;
  const int exp = (b >> 7) & 0xFF;
  const int mant = b & 0x7F;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(mant), -133);
  if (exp == 255) {
    return mant ? std::numeric_limits<double>::quiet_NaN()
                : sign * std::numeric_limits<double>::infinity();
  }
  return sign * std::ldexp(1.0 + mant / 128.0, exp - 127);
}

// The value nearest to x among numbers with `mant_bits` fraction bits and minimum normal
// exponent `min_exp`, ties to even (nearbyint in the default rounding mode), overflow to inf at
// `overflow`. This is what f16 / bf16 rounding must produce.
inline double OracleRound(double x, int mant_bits, int min_exp, double overflow) {
  if (x == 0.0 || !std::isfinite(x)) return x;
  int e = std::ilogb(x);
  e = std::max(e, min_exp);
  const double ulp = std::ldexp(1.0, e - mant_bits);
  const double r = std::nearbyint(x / ulp) * ulp;
  if (std::fabs(r) >= overflow) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}
inline double OracleRoundHalf(double x) { return OracleRound(x, 10, -14, 65520.0); }
inline double OracleRoundBf16(double x) {
  return OracleRound(x, 7, -126, 3.3961775292304e38);  // (2 - 2^-8) * 2^127: halfway to 2^128
}

// Element i of a row of `dtype` at `row` (a row start), decoded independently.
inline double OracleElement(uint32_t dtype, const uint8_t* row, int64_t i) {
  auto u16 = [](const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); };
  switch (dtype) {
    case KESTREL_DTYPE_F32: {
      float f;
      std::memcpy(&f, row + 4 * i, 4);
      return f;
    }
    case KESTREL_DTYPE_F16: return OracleHalf(u16(row + 2 * i));
    case KESTREL_DTYPE_BF16: return OracleBf16(u16(row + 2 * i));
    case KESTREL_DTYPE_Q8_0: {
      const uint8_t* block = row + (i / 32) * 34;
      const int8_t q = static_cast<int8_t>(block[2 + i % 32]);
      return q * OracleHalf(u16(block));
    }
    case KESTREL_DTYPE_Q4_0: {
      const uint8_t* block = row + (i / 32) * 18;
      const int j = static_cast<int>(i % 32);
      const int nibble = j < 16 ? (block[2 + j] & 0xF) : (block[2 + j - 16] >> 4);
      return (nibble - 8) * OracleHalf(u16(block));
    }
    default: return std::numeric_limits<double>::quiet_NaN();
  }
}

inline size_t OracleRowBytes(uint32_t dtype, int64_t n) {
  switch (dtype) {
    case KESTREL_DTYPE_F32: return 4 * n;
    case KESTREL_DTYPE_F16:
    case KESTREL_DTYPE_BF16: return 2 * n;
    case KESTREL_DTYPE_Q8_0: return n / 32 * 34;
    case KESTREL_DTYPE_Q4_0: return n / 32 * 18;
    default: return 0;
  }
}

// Random weights [rows, cols] of `dtype`, encoded independently of the plugin: plain types by
// rounding floats with the oracle rounding; quant blocks as random scales and random quants.
inline std::vector<uint8_t> RandomWeights(Rng& rng, uint32_t dtype, int64_t rows, int64_t cols) {
  std::vector<uint8_t> bytes(OracleRowBytes(dtype, cols) * rows);
  auto put16 = [](uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v & 0xFF);
    p[1] = static_cast<uint8_t>(v >> 8);
  };
  // A random f16 scale in [2^-12, 2^-5): normal, positive or negative.
  auto random_scale = [&]() {
    const uint16_t exp = static_cast<uint16_t>(rng.Int(3, 9));
    const uint16_t mant = static_cast<uint16_t>(rng.Int(0, 1023));
    const uint16_t sign = static_cast<uint16_t>(rng.Int(0, 1) << 15);
    return static_cast<uint16_t>(sign | (exp << 10) | mant);
  };
  const int64_t n = rows * cols;
  switch (dtype) {
    case KESTREL_DTYPE_F32:
      for (int64_t i = 0; i < n; ++i) {
        const float f = rng.Uniform(-1.0f, 1.0f);
        std::memcpy(bytes.data() + 4 * i, &f, 4);
      }
      break;
    case KESTREL_DTYPE_F16:
    case KESTREL_DTYPE_BF16:
      for (int64_t i = 0; i < n; ++i) {
        // Pick a random code directly in a sane range: sign, exponent, mantissa.
        const uint16_t sign = static_cast<uint16_t>(rng.Int(0, 1) << 15);
        uint16_t code;
        if (dtype == KESTREL_DTYPE_F16) {
          code = static_cast<uint16_t>(sign | (rng.Int(0, 15) << 10) | rng.Int(0, 1023));  // incl. subnormals
        } else {
          code = static_cast<uint16_t>(sign | (rng.Int(110, 127) << 7) | rng.Int(0, 127));
        }
        put16(bytes.data() + 2 * i, code);
      }
      break;
    case KESTREL_DTYPE_Q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        uint8_t* block = bytes.data() + b * 34;
        put16(block, random_scale());
        for (int j = 0; j < 32; ++j) block[2 + j] = static_cast<uint8_t>(rng.Int(-127, 127));
      }
      break;
    case KESTREL_DTYPE_Q4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        uint8_t* block = bytes.data() + b * 18;
        put16(block, random_scale());
        for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(rng.Int(0, 255));
      }
      break;
    default: break;
  }
  return bytes;
}

// ---- float64 op oracles -------------------------------------------------------------------------

inline std::vector<double> OracleMatmul(const std::vector<float>& x, int64_t t, int64_t k,
                                        uint32_t dtype, const uint8_t* w, int64_t n) {
  std::vector<double> y(t * n, 0.0);
  const size_t row_bytes = OracleRowBytes(dtype, k);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < t; ++i) {
      double acc = 0.0;
      for (int64_t kk = 0; kk < k; ++kk) acc += x[i * k + kk] * OracleElement(dtype, w + j * row_bytes, kk);
      y[i * n + j] = acc;
    }
  }
  return y;
}

inline std::vector<double> OracleRmsNorm(const std::vector<float>& x, const std::vector<float>& w,
                                         int64_t t, int64_t d, double eps) {
  std::vector<double> y(t * d);
  for (int64_t i = 0; i < t; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[i * d + j]) * x[i * d + j];
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) y[i * d + j] = x[i * d + j] * inv * w[j];
  }
  return y;
}

inline std::vector<double> OracleRope(const std::vector<float>& x, const std::vector<int32_t>& pos,
                                      int64_t t, int64_t h, int64_t dh, uint32_t style,
                                      int64_t n_rot, double base, double scale,
                                      const float* freq_factors = nullptr) {
  std::vector<double> y(x.begin(), x.end());
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t hh = 0; hh < h; ++hh) {
      const int64_t off = (i * h + hh) * dh;
      for (int64_t p = 0; p < n_rot / 2; ++p) {
        const double theta = pos[i] * scale * std::pow(base, -2.0 * p / n_rot) /
                             (freq_factors != nullptr ? double{freq_factors[p]} : 1.0);
        const int64_t a = style == KESTREL_ROPE_STYLE_NEOX ? p : 2 * p;
        const int64_t b = style == KESTREL_ROPE_STYLE_NEOX ? p + n_rot / 2 : 2 * p + 1;
        const double x0 = x[off + a], x1 = x[off + b];
        y[off + a] = x0 * std::cos(theta) - x1 * std::sin(theta);
        y[off + b] = x0 * std::sin(theta) + x1 * std::cos(theta);
      }
    }
  }
  return y;
}

// A paged-attention case described independently of the plugin: per sequence, its query count,
// KV length and block table; optional tree parents. Caches hold F32 or F16 codes.
struct AttnCase {
  int64_t H = 8, Hkv = 4, Dh = 16, B = 16, NB = 0, MB = 0;
  uint32_t cache_dtype = KESTREL_DTYPE_F32;
  bool causal = true;
  float scale = 0.25f;
  int64_t window = 0;  // sliding window (PAGED_ATTENTION v2), 0: none
  std::vector<int32_t> q_lens, kv_lens, query_start, block_tables, parents;  // parents may be empty
  std::vector<float> q;                   // [T, H, Dh]
  std::vector<uint8_t> k_cache, v_cache;  // [NB, B, Hkv, Dh] of cache_dtype
  int64_t T() const { return query_start.empty() ? 0 : query_start.back(); }
  size_t ElemBytes() const { return cache_dtype == KESTREL_DTYPE_F16 ? 2 : 4; }
};

// Fills a case: random q and caches, block tables that draw distinct random blocks from the
// pool in shuffled order (so tables are not in order and sequences interleave).
inline AttnCase MakeAttnCase(Rng& rng, int64_t H, int64_t Hkv, int64_t Dh, int64_t B,
                             uint32_t cache_dtype, const std::vector<int32_t>& q_lens,
                             const std::vector<int32_t>& kv_lens, int64_t spare_blocks = 3) {
  AttnCase c;
  c.H = H; c.Hkv = Hkv; c.Dh = Dh; c.B = B; c.cache_dtype = cache_dtype;
  c.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)));
  c.q_lens = q_lens; c.kv_lens = kv_lens;
  const int64_t S = static_cast<int64_t>(q_lens.size());
  int64_t total_blocks = 0;
  c.MB = 1;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t nb = (kv_lens[s] + B - 1) / B;
    total_blocks += nb;
    c.MB = std::max(c.MB, nb + 1);  // one unused entry at least, set to -1
  }
  c.NB = total_blocks + spare_blocks;
  std::vector<int32_t> pool(c.NB);
  for (int64_t i = 0; i < c.NB; ++i) pool[i] = static_cast<int32_t>(i);
  std::shuffle(pool.begin(), pool.end(), rng.gen());
  c.block_tables.assign(S * c.MB, -1);
  size_t next = 0;
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t b = 0; b < (kv_lens[s] + B - 1) / B; ++b) c.block_tables[s * c.MB + b] = pool[next++];
  }
  c.query_start.assign(1, 0);
  for (int64_t s = 0; s < S; ++s) c.query_start.push_back(c.query_start.back() + q_lens[s]);
  c.q = rng.Floats(c.T() * H * Dh);
  const size_t n = static_cast<size_t>(c.NB * B * Hkv * Dh);
  c.k_cache.resize(n * c.ElemBytes());
  c.v_cache.resize(n * c.ElemBytes());
  for (std::vector<uint8_t>* cache : {&c.k_cache, &c.v_cache}) {
    for (size_t i = 0; i < n; ++i) {
      const float f = rng.Uniform(-1.0f, 1.0f);
      if (cache_dtype == KESTREL_DTYPE_F16) {
        // Random normal half code of magnitude < 1.
        const uint16_t code = static_cast<uint16_t>((rng.Int(0, 1) << 15) | (rng.Int(1, 14) << 10) |
                                                    rng.Int(0, 1023));
        (*cache)[2 * i] = static_cast<uint8_t>(code & 0xFF);
        (*cache)[2 * i + 1] = static_cast<uint8_t>(code >> 8);
      } else {
        std::memcpy(cache->data() + 4 * i, &f, 4);
      }
    }
  }
  return c;
}

// With a window: sets the block-table entries of blocks no query of their sequence can see (every
// position < kv_len - q_len - window + 1) to -1, as a host that freed them would.
inline void FreeBlocksBeforeWindow(AttnCase& c) {
  if (c.window == 0) return;
  for (size_t s = 0; s < c.q_lens.size(); ++s) {
    const int64_t first = c.kv_lens[s] - c.q_lens[s] - c.window + 1;  // first visible position
    for (int64_t b = 0; (b + 1) * c.B <= first; ++b) c.block_tables[s * c.MB + b] = -1;
  }
}

inline double OracleCacheValue(const AttnCase& c, const std::vector<uint8_t>& cache, int32_t block,
                               int64_t off, int64_t kvh, int64_t d) {
  const int64_t i = ((block * c.B + off) * c.Hkv + kvh) * c.Dh + d;
  if (c.cache_dtype == KESTREL_DTYPE_F16) {
    return OracleHalf(static_cast<uint16_t>(cache[2 * i] | (cache[2 * i + 1] << 8)));
  }
  float f;
  std::memcpy(&f, cache.data() + 4 * i, 4);
  return f;
}

inline std::vector<double> OracleAttention(const AttnCase& c) {
  std::vector<double> out(c.T() * c.H * c.Dh, 0.0);
  const int64_t S = static_cast<int64_t>(c.q_lens.size());
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q_len = c.q_lens[s], kv_len = c.kv_lens[s], prefix = kv_len - q_len;
    for (int64_t j = 0; j < q_len; ++j) {
      const int64_t tok = c.query_start[s] + j;
      std::vector<bool> allowed(kv_len, false);
      // Sequence position of each KV entry as the window sees it: itself for the prefix and
      // chains, prefix + depth for tree nodes.
      auto depth = [&](int64_t node) {
        int64_t d = 0;
        while (c.parents[c.query_start[s] + node] != -1) {
          node = c.parents[c.query_start[s] + node];
          ++d;
        }
        return d;
      };
      if (!c.parents.empty()) {
        const int64_t me = prefix + depth(j);
        for (int64_t p = 0; p < prefix; ++p) allowed[p] = c.window == 0 || me - p < c.window;
        for (int64_t a = j; a != -1; a = c.parents[c.query_start[s] + a]) {
          allowed[prefix + a] = c.window == 0 || me - (prefix + depth(a)) < c.window;
        }
      } else {
        for (int64_t p = 0; p < kv_len; ++p) {
          allowed[p] = (!c.causal || p <= prefix + j) && (c.window == 0 || prefix + j - p < c.window);
        }
      }
      for (int64_t h = 0; h < c.H; ++h) {
        const int64_t kvh = h / (c.H / c.Hkv);
        std::vector<double> logits(kv_len, -INFINITY);
        double mx = -INFINITY;
        for (int64_t p = 0; p < kv_len; ++p) {
          if (!allowed[p]) continue;
          const int32_t block = c.block_tables[s * c.MB + p / c.B];
          double dot = 0.0;
          for (int64_t d = 0; d < c.Dh; ++d) {
            dot += c.q[(tok * c.H + h) * c.Dh + d] * OracleCacheValue(c, c.k_cache, block, p % c.B, kvh, d);
          }
          logits[p] = dot * c.scale;
          mx = std::max(mx, logits[p]);
        }
        double z = 0.0;
        for (int64_t p = 0; p < kv_len; ++p) if (allowed[p]) z += std::exp(logits[p] - mx);
        for (int64_t p = 0; p < kv_len; ++p) {
          if (!allowed[p]) continue;
          const double w = std::exp(logits[p] - mx) / z;
          const int32_t block = c.block_tables[s * c.MB + p / c.B];
          for (int64_t d = 0; d < c.Dh; ++d) {
            out[(tok * c.H + h) * c.Dh + d] += w * OracleCacheValue(c, c.v_cache, block, p % c.B, kvh, d);
          }
        }
      }
    }
  }
  return out;
}

}  // namespace kestrel::plugin_sdk::testing_util

#endif  // KESTREL_PLUGIN_SDK_SRC_TEST_UTIL_H_
