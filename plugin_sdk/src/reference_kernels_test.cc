// Reference kernels vs float64 oracles written independently (test_util.h). Every input is
// random (seed printed on failure), every output is poisoned with NaN first, errors are relative
// norms with a tier per format, and NaN never passes.
#include "kestrel/plugin_sdk/reference_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <vector>

#include "kestrel/plugin_sdk/half.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::plugin_sdk {
namespace {

using testing_util::AttnCase;
using testing_util::MakeAttnCase;
using testing_util::OracleAttention;
using testing_util::OracleElement;
using testing_util::OracleHalf;
using testing_util::OracleBf16;
using testing_util::OracleRoundBf16;
using testing_util::OracleRoundHalf;
using testing_util::OracleRowBytes;
using testing_util::Poisoned;
using testing_util::RandomWeights;
using testing_util::RelErr;
using testing_util::Rng;

constexpr double kF32Tol = 1e-5;

const uint32_t kWeightDtypes[] = {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16, KESTREL_DTYPE_BF16,
                                  KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_Q4_0};

// ---- number formats -----------------------------------------------------------------------------

TEST(HalfTest, EveryHalfDecodesExactly) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const double expected = OracleHalf(static_cast<uint16_t>(code));
    const float got = HalfToFloat(static_cast<uint16_t>(code));
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(got)) << "code " << code;
      ASSERT_TRUE(std::isnan(HalfToFloat(FloatToHalf(got)))) << "code " << code;
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), expected) << "code " << code;
    // Every half survives the round trip bit for bit (incl. -0 and subnormals).
    ASSERT_EQ(FloatToHalf(got), code) << "code " << code;
  }
}

TEST(HalfTest, FloatToHalfRoundsToNearestEven) {
  SEED_TRACE();
  Rng rng(1);
  std::vector<float> samples;
  for (int i = 0; i < 200000; ++i) {
    // Spread over every half exponent, incl. subnormal, overflow and tiny values.
    const float mag = std::ldexp(rng.Uniform(1.0f, 2.0f), rng.Int(-27, 17));
    samples.push_back(rng.Int(0, 1) ? mag : -mag);
  }
  // Exact ties between two halves (and between 0 and the smallest subnormal).
  for (int e = -25; e < 15; ++e) {
    for (int m = 0; m < 64; ++m) {
      samples.push_back(std::ldexp(1.0f + (2 * m + 1) / 2048.0f, e));
    }
  }
  samples.push_back(65519.0f);
  samples.push_back(65520.0f);
  samples.push_back(std::ldexp(1.0f, -25));
  samples.push_back(std::ldexp(1.5f, -25));
  for (float f : samples) {
    const double expected = OracleRoundHalf(f);
    const float got = HalfToFloat(FloatToHalf(f));
    ASSERT_EQ(static_cast<double>(got), expected) << "f=" << f;
    ASSERT_EQ(std::signbit(got), std::signbit(f)) << "f=" << f;
  }
  EXPECT_TRUE(std::isinf(HalfToFloat(FloatToHalf(std::numeric_limits<float>::infinity()))));
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(HalfTest, Bf16RoundsToNearestEven) {
  SEED_TRACE();
  Rng rng(2);
  for (int i = 0; i < 200000; ++i) {
    const float mag = std::ldexp(rng.Uniform(1.0f, 2.0f), rng.Int(-120, 120));
    const float f = rng.Int(0, 1) ? mag : -mag;
    ASSERT_EQ(static_cast<double>(Bf16ToFloat(FloatToBf16(f))), OracleRoundBf16(f)) << "f=" << f;
  }
  for (uint32_t code = 0; code < 65536; ++code) {
    const double expected = OracleBf16(static_cast<uint16_t>(code));
    if (std::isnan(expected)) continue;
    ASSERT_EQ(static_cast<double>(Bf16ToFloat(static_cast<uint16_t>(code))), expected);
  }
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(DequantizeTest, EveryWeightDtypeMatchesIndependentDecoder) {
  SEED_TRACE();
  Rng rng(3);
  for (uint32_t dtype : kWeightDtypes) {
    SCOPED_TRACE(DtypeName(dtype));
    const int64_t n = 32 * 7;
    const std::vector<uint8_t> bytes = RandomWeights(rng, dtype, 1, n);
    ASSERT_EQ(RowBytes(dtype, n), OracleRowBytes(dtype, n));
    std::vector<float> out = Poisoned(n);
    DequantizeRow(dtype, bytes.data(), n, out.data());
    for (int64_t i = 0; i < n; ++i) {
      // Every format's values are exact in f32, so equality is the right test.
      ASSERT_EQ(static_cast<double>(out[i]), OracleElement(dtype, bytes.data(), i)) << "i=" << i;
    }
  }
}

// Quantize -> dequantize stays within each format's own error bound, per element.
TEST(DequantizeTest, QuantizeRoundTripWithinFormatBound) {
  SEED_TRACE();
  Rng rng(4);
  const int64_t n = 32 * 64;
  std::vector<float> x = rng.Floats(n, -3.0f, 3.0f);
  for (int64_t i = 0; i < 32; ++i) x[i] = 0.0f;  // an all-zero block
  for (uint32_t dtype : {KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_Q4_0}) {
    SCOPED_TRACE(DtypeName(dtype));
    std::vector<uint8_t> q(RowBytes(dtype, n));
    if (dtype == KESTREL_DTYPE_Q8_0) {
      QuantizeRowQ8_0(x.data(), n, q.data());
    } else {
      QuantizeRowQ4_0(x.data(), n, q.data());
    }
    std::vector<float> y = Poisoned(n);
    DequantizeRow(dtype, q.data(), n, y.data());
    for (int64_t b = 0; b < n / 32; ++b) {
      double amax = 0.0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(static_cast<double>(x[b * 32 + j])));
      // Q8_0: step amax/127, error <= step/2; Q4_0: step amax/8, the clipped side (+8 -> 7) errs
      // by up to one step. Plus the f16 rounding of the scale (2^-11 relative on the largest q).
      const double bound = dtype == KESTREL_DTYPE_Q8_0 ? amax / 127.0 * (0.5 + 127.0 / 2048.0)
                                                       : amax / 8.0 * (1.0 + 8.0 / 2048.0);
      for (int j = 0; j < 32; ++j) {
        const int64_t i = b * 32 + j;
        ASSERT_TRUE(std::isfinite(y[i]));
        ASSERT_LE(std::fabs(static_cast<double>(y[i]) - x[i]), bound + 1e-12) << "i=" << i;
      }
    }
  }
}

// ---- ops ----------------------------------------------------------------------------------------

TEST(EmbeddingGatherTest, AllDtypesAndOutOfRangeIds) {
  SEED_TRACE();
  Rng rng(5);
  const int64_t V = 37, D = 64, T = 11;
  for (uint32_t dtype : kWeightDtypes) {
    SCOPED_TRACE(DtypeName(dtype));
    const std::vector<uint8_t> table = RandomWeights(rng, dtype, V, D);
    std::vector<int32_t> ids(T);
    for (auto& id : ids) id = rng.Int(0, V - 1);
    ids[0] = 0;
    ids[1] = V - 1;
    std::vector<float> out = Poisoned(T * D);
    ASSERT_TRUE(EmbeddingGather(dtype, table.data(), V, D, ids.data(), T, out.data()).ok());
    std::vector<double> expected(T * D);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t d = 0; d < D; ++d) {
        expected[t * D + d] = OracleElement(dtype, table.data() + ids[t] * OracleRowBytes(dtype, D), d);
      }
    }
    EXPECT_LE(RelErr(out, expected), kF32Tol);
    // With a scale (Gemma's sqrt(n_embd)).
    const float scale = 25.298221f;
    std::vector<float> scaled = Poisoned(T * D);
    ASSERT_TRUE(EmbeddingGather(dtype, table.data(), V, D, ids.data(), T, scaled.data(), scale).ok());
    std::vector<double> expected_scaled(expected);
    for (double& e : expected_scaled) e *= scale;
    EXPECT_LE(RelErr(scaled, expected_scaled), kF32Tol);

    for (int32_t bad : {-1, static_cast<int32_t>(V), std::numeric_limits<int32_t>::max(),
                        std::numeric_limits<int32_t>::min()}) {
      ids[T - 1] = bad;
      std::vector<float> untouched = Poisoned(T * D);
      const Status s = EmbeddingGather(dtype, table.data(), V, D, ids.data(), T, untouched.data());
      EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE);
      EXPECT_NE(s.message().find("ids[10]"), std::string::npos) << s.message();
      EXPECT_TRUE(std::isnan(untouched[0]));
    }
  }
}

TEST(RmsNormTest, MatchesFloat64) {
  SEED_TRACE();
  Rng rng(6);
  for (int64_t D : {64, 288, 7}) {
    const int64_t T = 5;
    const std::vector<float> x = rng.Floats(T * D, -2.0f, 2.0f), w = rng.Floats(D);
    std::vector<float> out = Poisoned(T * D);
    RmsNorm(x.data(), w.data(), T, D, 1e-5f, out.data());
    EXPECT_LE(RelErr(out, testing_util::OracleRmsNorm(x, w, T, D, 1e-5)), kF32Tol) << "D=" << D;
    // In place.
    std::vector<float> inplace = x;
    RmsNorm(inplace.data(), w.data(), T, D, 1e-5f, inplace.data());
    EXPECT_EQ(inplace, out);
  }
}

TEST(RopeTest, BothStylesPartialRotationMatchFloat64) {
  SEED_TRACE();
  Rng rng(7);
  const int64_t T = 9, H = 3, Dh = 16;
  for (uint32_t style : {KESTREL_ROPE_STYLE_NORM, KESTREL_ROPE_STYLE_NEOX}) {
    for (int64_t n_rot : {int64_t{16}, int64_t{8}, int64_t{6}}) {
      for (float freq_scale : {1.0f, 0.25f}) {
        SCOPED_TRACE(::testing::Message() << "style=" << style << " n_rot=" << n_rot
                                          << " freq_scale=" << freq_scale);
        const std::vector<float> x = rng.Floats(T * H * Dh);
        std::vector<int32_t> pos(T);
        for (auto& p : pos) p = rng.Int(0, 300);
        pos[0] = 0;
        RopeParams p;
        p.style = style;
        p.n_rot = n_rot;
        p.freq_base = 10000.0f;
        p.freq_scale = freq_scale;
        std::vector<float> out = Poisoned(x.size());
        Rope(x.data(), pos.data(), T, H, Dh, p, out.data());
        // llama.cpp's iterated float theta drifts ~1 ulp per pair; with positions <= 300 the
        // angle error stays ~1e-5 rad.
        const auto expected =
            testing_util::OracleRope(x, pos, T, H, Dh, style, n_rot, 10000.0, freq_scale);
        EXPECT_LE(RelErr(out, expected), 3e-5);
        // The unrotated tail is copied exactly.
        for (int64_t i = 0; i < T * H; ++i) {
          for (int64_t d = n_rot; d < Dh; ++d) ASSERT_EQ(out[i * Dh + d], x[i * Dh + d]);
        }
        std::vector<float> inplace = x;
        Rope(inplace.data(), pos.data(), T, H, Dh, p, inplace.data());
        EXPECT_EQ(inplace, out);
      }
    }
  }
}

// Llama 3 / Phi-3 frequency factors (plugin ABI 1.2): each pair's angle divided by its factor.
TEST(RopeTest, FreqFactorsDivideEachPairsAngleAsFloat64) {
  SEED_TRACE();
  Rng rng(17);
  const int64_t T = 7, H = 2, Dh = 16;
  for (uint32_t style : {KESTREL_ROPE_STYLE_NORM, KESTREL_ROPE_STYLE_NEOX}) {
    for (int64_t n_rot : {int64_t{16}, int64_t{8}}) {
      SCOPED_TRACE(::testing::Message() << "style=" << style << " n_rot=" << n_rot);
      const std::vector<float> x = rng.Floats(T * H * Dh);
      std::vector<int32_t> pos(T);
      for (auto& p : pos) p = rng.Int(0, 300);
      const std::vector<float> ff = rng.Floats(n_rot / 2, 0.5f, 40.0f);
      RopeParams p;
      p.style = style;
      p.n_rot = n_rot;
      p.freq_base = 500000.0f;
      p.freq_scale = 1.0f;
      p.freq_factors = ff.data();
      std::vector<float> out = Poisoned(x.size());
      Rope(x.data(), pos.data(), T, H, Dh, p, out.data());
      EXPECT_LE(RelErr(out, testing_util::OracleRope(x, pos, T, H, Dh, style, n_rot, 500000.0, 1.0,
                                                     ff.data())),
                3e-5);
      // Factors of 1 are the plain rotation, bit for bit.
      const std::vector<float> ones(n_rot / 2, 1.0f);
      p.freq_factors = ones.data();
      std::vector<float> with_ones = Poisoned(x.size()), plain = Poisoned(x.size());
      Rope(x.data(), pos.data(), T, H, Dh, p, with_ones.data());
      p.freq_factors = nullptr;
      Rope(x.data(), pos.data(), T, H, Dh, p, plain.data());
      EXPECT_EQ(with_ones, plain);
    }
  }
}

TEST(MatmulTest, BiasIsAddedToEveryRow) {
  SEED_TRACE();
  Rng rng(18);
  const int64_t T = 5, K = 64, N = 19;
  const std::vector<float> x = rng.Floats(T * K);
  const std::vector<uint8_t> w = RandomWeights(rng, KESTREL_DTYPE_F32, N, K);
  const std::vector<float> bias = rng.Floats(N, -3.0f, 3.0f);
  std::vector<float> y = Poisoned(T * N);
  Matmul(x.data(), T, K, KESTREL_DTYPE_F32, w.data(), N, y.data());
  AddBias(bias.data(), T, N, y.data());
  std::vector<double> want = testing_util::OracleMatmul(x, T, K, KESTREL_DTYPE_F32, w.data(), N);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t n = 0; n < N; ++n) want[t * N + n] += bias[n];
  }
  EXPECT_LE(RelErr(y, want), kF32Tol);
}

TEST(MatmulTest, EveryWeightDtypeMatchesFloat64) {
  SEED_TRACE();
  Rng rng(8);
  const int64_t T = 6, K = 96, N = 45;
  for (uint32_t dtype : kWeightDtypes) {
    SCOPED_TRACE(DtypeName(dtype));
    const std::vector<float> x = rng.Floats(T * K);
    const std::vector<uint8_t> w = RandomWeights(rng, dtype, N, K);
    std::vector<float> y = Poisoned(T * N);
    Matmul(x.data(), T, K, dtype, w.data(), N, y.data());
    // The oracle decodes the same f16/bf16/quantized values, so every format meets the f32 tier.
    EXPECT_LE(RelErr(y, testing_util::OracleMatmul(x, T, K, dtype, w.data(), N)), kF32Tol);
  }
}

TEST(ElementwiseTest, GegluMatchesFloat64) {
  SEED_TRACE();
  Rng rng(18);
  const std::vector<float> g = rng.Floats(1000, -8.0f, 8.0f), u = rng.Floats(1000, -2.0f, 2.0f);
  std::vector<double> want(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const double x = g[i];
    // gelu_pytorch_tanh, written out: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
    want[i] = 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
  }
  std::vector<float> out = Poisoned(g.size());
  Geglu(g.data(), u.data(), static_cast<int64_t>(g.size()), out.data());
  EXPECT_LE(RelErr(out, want), 1e-6);
  // In place over gate.
  std::vector<float> inplace = g;
  Geglu(inplace.data(), u.data(), static_cast<int64_t>(g.size()), inplace.data());
  EXPECT_EQ(inplace, out);
}

TEST(ElementwiseTest, SwigluAndAdd) {
  SEED_TRACE();
  Rng rng(9);
  const int64_t n = 1000;
  const std::vector<float> a = rng.Floats(n, -8.0f, 8.0f), b = rng.Floats(n, -8.0f, 8.0f);
  std::vector<float> out = Poisoned(n);
  Swiglu(a.data(), b.data(), n, out.data());
  std::vector<double> expected(n);
  for (int64_t i = 0; i < n; ++i) expected[i] = a[i] / (1.0 + std::exp(-static_cast<double>(a[i]))) * b[i];
  EXPECT_LE(RelErr(out, expected), kF32Tol);
  out = Poisoned(n);
  Add(a.data(), b.data(), n, out.data());
  for (int64_t i = 0; i < n; ++i) expected[i] = static_cast<double>(a[i]) + b[i];
  EXPECT_LE(RelErr(out, expected), kF32Tol);
}

// Decodes element i of a cache as the oracle sees it.
double CacheAt(uint32_t dtype, const std::vector<uint8_t>& cache, int64_t i) {
  return OracleElement(dtype, cache.data(), i);
}

TEST(KvCacheTest, WriteF32AndF16Caches) {
  SEED_TRACE();
  Rng rng(10);
  const int64_t NB = 6, B = 16, Hkv = 4, Dh = 8, T = 20, row = Hkv * Dh;
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    SCOPED_TRACE(DtypeName(dtype));
    const size_t elem = dtype == KESTREL_DTYPE_F16 ? 2 : 4;
    std::vector<uint8_t> kc(NB * B * row * elem), vc(kc.size());
    for (auto& byte : kc) byte = static_cast<uint8_t>(rng.Int(0, 255));
    for (auto& byte : vc) byte = static_cast<uint8_t>(rng.Int(0, 255));
    const std::vector<uint8_t> k_before = kc, v_before = vc;
    const std::vector<float> k = rng.Floats(T * row, -4.0f, 4.0f), v = rng.Floats(T * row, -4.0f, 4.0f);
    std::vector<int32_t> slots(NB * B);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng.gen());
    slots.resize(T);  // distinct random slots across blocks
    KvCacheView kv{dtype, kc.data(), NB, B, Hkv, Dh}, vv{dtype, vc.data(), NB, B, Hkv, Dh};
    ASSERT_TRUE(KvWrite(k.data(), v.data(), slots.data(), T, kv, vv).ok());
    std::vector<bool> written(NB * B, false);
    for (int64_t t = 0; t < T; ++t) {
      written[slots[t]] = true;
      for (int64_t e = 0; e < row; ++e) {
        const double ek = dtype == KESTREL_DTYPE_F16 ? OracleRoundHalf(k[t * row + e]) : k[t * row + e];
        const double ev = dtype == KESTREL_DTYPE_F16 ? OracleRoundHalf(v[t * row + e]) : v[t * row + e];
        ASSERT_EQ(CacheAt(dtype, kc, slots[t] * row + e), ek);
        ASSERT_EQ(CacheAt(dtype, vc, slots[t] * row + e), ev);
      }
    }
    for (int64_t s = 0; s < NB * B; ++s) {  // other slots untouched
      if (written[s]) continue;
      ASSERT_EQ(0, std::memcmp(kc.data() + s * row * elem, k_before.data() + s * row * elem, row * elem));
      ASSERT_EQ(0, std::memcmp(vc.data() + s * row * elem, v_before.data() + s * row * elem, row * elem));
    }
    // Out-of-range slots write nothing.
    const std::vector<uint8_t> k_after = kc;
    for (int32_t bad : {-1, static_cast<int32_t>(NB * B)}) {
      slots[T - 1] = bad;
      const Status s = KvWrite(k.data(), v.data(), slots.data(), T, kv, vv);
      EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE) << s.message();
      EXPECT_EQ(kc, k_after);
    }
  }
}

TEST(KvCacheTest, BlockCopyF32AndF16) {
  SEED_TRACE();
  Rng rng(11);
  const int64_t NB = 8, B = 32, Hkv = 2, Dh = 8;
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    SCOPED_TRACE(DtypeName(dtype));
    const size_t block_bytes = B * Hkv * Dh * (dtype == KESTREL_DTYPE_F16 ? 2 : 4);
    std::vector<uint8_t> kc(NB * block_bytes), vc(NB * block_bytes);
    for (auto& byte : kc) byte = static_cast<uint8_t>(rng.Int(0, 255));
    for (auto& byte : vc) byte = static_cast<uint8_t>(rng.Int(0, 255));
    // Pairs in order, incl. a chain (3 -> 5 then 5 -> 1) and a self copy.
    const std::vector<int32_t> pairs = {3, 5, 5, 1, 0, 7, 2, 2};
    std::vector<uint8_t> ek = kc, ev = vc;
    for (size_t p = 0; p < pairs.size(); p += 2) {
      std::vector<uint8_t> tmp(ek.begin() + pairs[p] * block_bytes, ek.begin() + (pairs[p] + 1) * block_bytes);
      std::copy(tmp.begin(), tmp.end(), ek.begin() + pairs[p + 1] * block_bytes);
      tmp.assign(ev.begin() + pairs[p] * block_bytes, ev.begin() + (pairs[p] + 1) * block_bytes);
      std::copy(tmp.begin(), tmp.end(), ev.begin() + pairs[p + 1] * block_bytes);
    }
    KvCacheView kv{dtype, kc.data(), NB, B, Hkv, Dh}, vv{dtype, vc.data(), NB, B, Hkv, Dh};
    ASSERT_TRUE(KvBlockCopy(pairs.data(), 4, kv, vv).ok());
    EXPECT_EQ(kc, ek);
    EXPECT_EQ(vc, ev);
    const std::vector<int32_t> bad = {0, 1, 2, static_cast<int32_t>(NB)};
    const Status s = KvBlockCopy(bad.data(), 2, kv, vv);
    EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE);
    EXPECT_NE(s.message().find("pairs[1][1]=8"), std::string::npos) << s.message();
    EXPECT_EQ(kc, ek);
  }
}

// Runs the kernel on a case and compares with the oracle.
double RunAttention(const AttnCase& c, Status* status = nullptr) {
  AttnCase m = c;  // the kernel takes mutable views
  KvCacheView kv{m.cache_dtype, m.k_cache.data(), m.NB, m.B, m.Hkv, m.Dh};
  KvCacheView vv{m.cache_dtype, m.v_cache.data(), m.NB, m.B, m.Hkv, m.Dh};
  AttentionParams p;
  p.n_heads = m.H;
  p.n_kv_heads = m.Hkv;
  p.head_dim = m.Dh;
  p.causal = m.causal;
  p.scale = m.scale;
  p.window = m.window;
  std::vector<float> out = Poisoned(m.T() * m.H * m.Dh);
  const Status s = PagedAttention(m.q.data(), kv, vv, m.block_tables.data(),
                                  static_cast<int64_t>(m.q_lens.size()), m.MB, m.query_start.data(),
                                  m.kv_lens.data(), m.parents.empty() ? nullptr : m.parents.data(),
                                  m.T(), p, out.data());
  if (status != nullptr) *status = s;
  if (!s.ok()) return std::numeric_limits<double>::infinity();
  return RelErr(out, OracleAttention(c));
}

struct AttnShape {
  int64_t H, Hkv, Dh, B;
};
void PrintTo(const AttnShape& s, std::ostream* os) {
  *os << "H=" << s.H << " Hkv=" << s.Hkv << " Dh=" << s.Dh << " B=" << s.B;
}

class PagedAttentionTest : public ::testing::TestWithParam<std::tuple<AttnShape, uint32_t>> {};

TEST_P(PagedAttentionTest, DecodePrefillVarlenMatchFloat64) {
  SEED_TRACE();
  const auto [shape, dtype] = GetParam();
  Rng rng(12 + static_cast<uint32_t>(shape.H * 100 + shape.B + dtype));
  // Decode only (q_len 1), several sequences.
  {
    AttnCase c = MakeAttnCase(rng, shape.H, shape.Hkv, shape.Dh, shape.B, dtype, {1, 1, 1},
                              {1, 37, static_cast<int32_t>(2 * shape.B)});
    EXPECT_LE(RunAttention(c), kF32Tol) << "decode";
  }
  // Mixed varlen: a fresh prefill, a prefill with a cached prefix, a decode, an empty sequence.
  {
    AttnCase c = MakeAttnCase(rng, shape.H, shape.Hkv, shape.Dh, shape.B, dtype, {5, 7, 1, 0},
                              {5, 7 + 40, 23, 9});
    EXPECT_LE(RunAttention(c), kF32Tol) << "varlen causal";
    c.causal = false;
    EXPECT_LE(RunAttention(c), kF32Tol) << "varlen non-causal";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PagedAttentionTest,
    ::testing::Combine(::testing::Values(AttnShape{8, 4, 8, 16},   // stories260K-like GQA
                                         AttnShape{8, 4, 16, 32},  // GQA, block 32
                                         AttnShape{4, 4, 16, 16},  // H == Hkv
                                         AttnShape{6, 1, 8, 32}),  // MQA
                       ::testing::Values(KESTREL_DTYPE_F32, KESTREL_DTYPE_F16)));

TEST(PagedAttentionTreeTest, TreeMaskMatchesFloat64) {
  SEED_TRACE();
  Rng rng(13);
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    SCOPED_TRACE(DtypeName(dtype));
    // Sequence 0: a tree of 6 draft tokens after a 20-token prefix; sequence 1: a chain of 3
    // (equivalent to causal); sequence 2: a single root.
    AttnCase c = MakeAttnCase(rng, 8, 4, 8, 16, dtype, {6, 3, 1}, {26, 3 + 17, 5});
    c.parents = {-1, 0, 0, 1, 1, 2, /*seq 1*/ -1, 0, 1, /*seq 2*/ -1};
    EXPECT_LE(RunAttention(c), kF32Tol);
    // A tree given out of topological order (parent after child) is still a tree.
    c.parents = {-1, 3, 0, 0, 1, 2, -1, 0, 1, -1};
    EXPECT_LE(RunAttention(c), kF32Tol);
    // A chain must equal plain causal attention.
    AttnCase chain = c;
    chain.parents = {-1, 0, 1, 2, 3, 4, -1, 0, 1, -1};
    AttnCase causal = chain;
    causal.parents.clear();
    EXPECT_LE(RunAttention(chain), kF32Tol);
    EXPECT_LE(RunAttention(causal), kF32Tol);
  }
}

TEST(PagedAttentionWindowTest, WindowsCrossingBlocksMatchFloat64) {
  SEED_TRACE();
  Rng rng(15);
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    SCOPED_TRACE(DtypeName(dtype));
    // Windows smaller than, equal to, not a multiple of and larger than the block size; decode
    // far past the window, a prefill longer than the window, chunked prefill after a prefix.
    for (int64_t window : {1, 3, 4, 5, 16, 37, 500}) {
      SCOPED_TRACE(::testing::Message() << "window " << window);
      AttnCase c = MakeAttnCase(rng, 8, 2, 8, 4, dtype, {1, 23, 9, 1, 0}, {61, 23, 50, 3, 7});
      c.window = window;
      EXPECT_LE(RunAttention(c), kF32Tol) << "with every block";
      // The blocks out of every query's window are freed: the kernel must not read them.
      FreeBlocksBeforeWindow(c);
      EXPECT_LE(RunAttention(c), kF32Tol) << "with freed blocks";
      c.causal = false;
      EXPECT_LE(RunAttention(c), kF32Tol) << "non-causal";
    }
  }
}

TEST(PagedAttentionWindowTest, TreeMaskWithWindowMatchesFloat64) {
  SEED_TRACE();
  Rng rng(16);
  // Trees after a prefix longer than the window; a window shorter than the tree's depth hides
  // the deep nodes' far ancestors too.
  for (int64_t window : {2, 3, 6, 20}) {
    SCOPED_TRACE(::testing::Message() << "window " << window);
    AttnCase c = MakeAttnCase(rng, 4, 2, 8, 4, KESTREL_DTYPE_F32, {6, 3}, {26, 3 + 17});
    c.parents = {-1, 0, 0, 1, 3, 2, /*seq 1*/ -1, 0, 1};
    c.window = window;
    FreeBlocksBeforeWindow(c);
    EXPECT_LE(RunAttention(c), kF32Tol);
    // A chain tree equals causal attention with the same window.
    c.parents = {-1, 0, 1, 2, 3, 4, -1, 0, 1};
    AttnCase causal = c;
    causal.parents.clear();
    EXPECT_LE(RunAttention(c), kF32Tol);
    EXPECT_LE(RunAttention(causal), kF32Tol);
  }
}

TEST(PagedAttentionWindowTest, FreedBlockInsideTheWindowIsAnError) {
  SEED_TRACE();
  Rng rng(17);
  AttnCase c = MakeAttnCase(rng, 4, 2, 8, 4, KESTREL_DTYPE_F32, {1}, {40});
  c.window = 10;  // the query at 39 sees 30..39: blocks 7..9
  FreeBlocksBeforeWindow(c);
  Status s;
  ASSERT_LE(RunAttention(c, &s), kF32Tol) << s.message();
  c.block_tables[7] = -1;
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE);
  EXPECT_NE(s.message().find("block_tables[0][7]"), std::string::npos) << s.message();
}

TEST(PagedAttentionTreeTest, BadIndicesAreErrorsNotCrashes) {
  SEED_TRACE();
  Rng rng(14);
  const AttnCase good = MakeAttnCase(rng, 8, 4, 8, 16, KESTREL_DTYPE_F32, {2, 1}, {30, 17});
  Status s;
  ASSERT_LE(RunAttention(good, &s), kF32Tol);

  AttnCase c = good;
  c.block_tables[0] = static_cast<int32_t>(c.NB);
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE);
  EXPECT_NE(s.message().find("block_tables[0][0]"), std::string::npos) << s.message();

  c = good;
  c.block_tables[1] = -1;  // second block of sequence 0, which it uses
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE);

  c = good;
  c.kv_lens[1] = static_cast<int32_t>(c.MB * c.B + 1);
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE) << s.message();

  c = good;
  c.kv_lens[0] = 1;  // fewer KV tokens than queries
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE) << s.message();

  c = good;
  c.query_start[0] = 1;  // must start at 0
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_INVALID_ARGUMENT) << s.message();

  c = good;
  c.query_start[1] = 4;  // decreasing: 4 > query_start[2] = 3
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_INVALID_ARGUMENT) << s.message();

  c = good;
  c.parents = {-1, 5, -1};  // parent outside the sequence's queries
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE) << s.message();

  c = good;
  c.parents = {1, 0, -1};  // a cycle
  RunAttention(c, &s);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_INVALID_ARGUMENT) << s.message();
  EXPECT_NE(s.message().find("cycle"), std::string::npos);
}

TEST(LogitsTest, RowGatherAndMatmul) {
  SEED_TRACE();
  Rng rng(15);
  const int64_t T = 7, D = 64, V = 50;
  for (uint32_t dtype : kWeightDtypes) {
    SCOPED_TRACE(DtypeName(dtype));
    const std::vector<float> x = rng.Floats(T * D);
    const std::vector<uint8_t> w = RandomWeights(rng, dtype, V, D);
    std::vector<int32_t> rows = {6, 0, 3, 6};
    std::vector<float> out = Poisoned(rows.size() * V);
    ASSERT_TRUE(Logits(x.data(), T, D, dtype, w.data(), V, rows.data(), 4, out.data()).ok());
    std::vector<float> gathered;
    for (int32_t r : rows) gathered.insert(gathered.end(), x.begin() + r * D, x.begin() + (r + 1) * D);
    EXPECT_LE(RelErr(out, testing_util::OracleMatmul(gathered, 4, D, dtype, w.data(), V)), kF32Tol);
    rows[2] = static_cast<int32_t>(T);
    const Status s = Logits(x.data(), T, D, dtype, w.data(), V, rows.data(), 4, out.data());
    EXPECT_EQ(s.code(), KESTREL_PLUGIN_OUT_OF_RANGE);
    EXPECT_NE(s.message().find("rows[2]=7"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace kestrel::plugin_sdk
