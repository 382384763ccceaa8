// The reference plugin's GGUF formats Q4_1, Q5_0, Q5_1, Q2_K..Q6_K: sizes, hand-made blocks with
// known values, the integer unpacking other plugins repack from, and MATMUL / LOGITS /
// EMBEDDING_GATHER / MOE on these weights, which must equal the same ops on an F32 copy of the
// dequantized weights bit for bit (ref dequantizes a row, then accumulates in double). Bit-exactness
// of the dequantization itself against gguf-py: quants_gguf_test.py.
#include "kestrel/plugin_sdk/quants.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/reference_ops.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::plugin_sdk {
namespace {

using testing_util::Desc;
using testing_util::OpDesc;
using testing_util::Rng;
using testing_util::TestSeed;

const uint32_t kExtra[] = {KESTREL_DTYPE_Q4_1, KESTREL_DTYPE_Q5_0, KESTREL_DTYPE_Q5_1,
                           KESTREL_DTYPE_Q2_K, KESTREL_DTYPE_Q3_K, KESTREL_DTYPE_Q4_K,
                           KESTREL_DTYPE_Q5_K, KESTREL_DTYPE_Q6_K};

void PutHalf(uint8_t* p, float f) {
  const uint16_t h = FloatToHalf(f);
  std::memcpy(p, &h, 2);
}

std::vector<uint8_t> RandomRows(uint32_t dt, int64_t rows, int64_t cols, uint32_t salt) {
  std::mt19937_64 rng(TestSeed() ^ (salt * 0x9E3779B97F4A7C15ull));
  const int64_t blocks = rows * cols / ExtraQuantBlockElements(dt);
  std::vector<uint8_t> bytes(blocks * ExtraQuantBlockBytes(dt));
  RandomExtraBlocks(dt, blocks, /*moderate=*/true, rng, bytes.data());
  return bytes;
}

std::vector<float> Dequantized(uint32_t dt, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  DequantizeRow(dt, bytes.data(), n, out.data());
  return out;
}

TEST(QuantsTest, SizesNamesAndMasksFollowGgml) {
  struct Want {
    uint32_t dt;
    const char* name;
    int64_t elems;
    size_t bytes;
  };
  const Want want[] = {{KESTREL_DTYPE_Q4_1, "Q4_1", 32, 20},  {KESTREL_DTYPE_Q5_0, "Q5_0", 32, 22},
                       {KESTREL_DTYPE_Q5_1, "Q5_1", 32, 24},  {KESTREL_DTYPE_Q2_K, "Q2_K", 256, 84},
                       {KESTREL_DTYPE_Q3_K, "Q3_K", 256, 110}, {KESTREL_DTYPE_Q4_K, "Q4_K", 256, 144},
                       {KESTREL_DTYPE_Q5_K, "Q5_K", 256, 176}, {KESTREL_DTYPE_Q6_K, "Q6_K", 256, 210}};
  for (const Want& w : want) {
    EXPECT_TRUE(IsWeightDtype(w.dt)) << w.name;
    EXPECT_TRUE(IsBlockQuantized(w.dt)) << w.name;
    EXPECT_EQ(IsKQuant(w.dt), w.elems == 256) << w.name;
    EXPECT_EQ(DtypeBlockElements(w.dt), w.elems) << w.name;
    EXPECT_EQ(DtypeBlockBytes(w.dt), w.bytes) << w.name;
    EXPECT_STREQ(DtypeName(w.dt), w.name);
    EXPECT_EQ(RowBytes(w.dt, 2 * w.elems), 2 * w.bytes) << w.name;
  }
  EXPECT_FALSE(IsExtraQuant(KESTREL_DTYPE_Q4_0));
  EXPECT_FALSE(IsWeightDtype(26));
  // A row that is not a whole number of blocks is a malformed descriptor.
  const kestrel_tensor_desc_t bad = Desc(KESTREL_DTYPE_Q4_K, {2, 128});
  EXPECT_EQ(ValidateTensorDesc(bad, "w").code(), KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(ValidateTensorDesc(bad, "w").message().find("Q4_K block size 256"), std::string::npos)
      << ValidateTensorDesc(bad, "w").message();
}

TEST(QuantsTest, HandMadeBlocksHaveTheirDocumentedValues) {
  // Q4_1: d = 0.5, m = -1: element j = nibble * 0.5 - 1 (low nibble j, high nibble j + 16).
  uint8_t q41[20];
  PutHalf(q41, 0.5f);
  PutHalf(q41 + 2, -1.0f);
  for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float out[256];
  DequantizeRow(KESTREL_DTYPE_Q4_1, q41, 32, out);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], j * 0.5f - 1.0f) << j;
    EXPECT_EQ(out[j + 16], (15 - j) * 0.5f - 1.0f) << j;
  }
  // Q5_0: qh sets bit 4 of odd elements: value = (nibble | 16 * odd) - 16, d = 2.
  uint8_t q50[22];
  PutHalf(q50, 2.0f);
  const uint32_t qh = 0xAAAAAAAAu;
  std::memcpy(q50 + 2, &qh, 4);
  for (int j = 0; j < 16; ++j) q50[6 + j] = static_cast<uint8_t>(3 | (5 << 4));
  DequantizeRow(KESTREL_DTYPE_Q5_0, q50, 32, out);
  for (int e = 0; e < 32; ++e) {
    const int q = (e < 16 ? 3 : 5) | ((e & 1) << 4);
    EXPECT_EQ(out[e], 2.0f * (q - 16)) << e;
  }
  // Q4_K: d = 1, dmin = 0.25, sub-block s has sc = s + 1 and m = 2 s (s >= 4 uses the packed high
  // bits); every quant is the element's index mod 16.
  uint8_t q4k[144] = {};
  PutHalf(q4k, 1.0f);
  PutHalf(q4k + 2, 0.25f);
  uint8_t* s12 = q4k + 4;
  const int sc[8] = {1, 2, 3, 4, 50, 6, 63, 8}, mn[8] = {0, 2, 4, 6, 8, 40, 12, 63};
  for (int s = 0; s < 4; ++s) {
    s12[s] = static_cast<uint8_t>(sc[s] | ((sc[s + 4] >> 4) << 6));
    s12[s + 4] = static_cast<uint8_t>(mn[s] | ((mn[s + 4] >> 4) << 6));
    s12[s + 8] = static_cast<uint8_t>((sc[s + 4] & 15) | ((mn[s + 4] & 15) << 4));
  }
  for (int e = 0; e < 256; ++e) {
    const int c = e / 64, j = (e % 64) / 32, l = e % 32;
    q4k[16 + 32 * c + l] |= static_cast<uint8_t>((e % 16) << (4 * j));
  }
  DequantizeRow(KESTREL_DTYPE_Q4_K, q4k, 256, out);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(out[e], static_cast<float>(sc[e / 32] * (e % 16)) - 0.25f * mn[e / 32]) << e;
  }
  // Q6_K: d = 0.5, scales[s] = s - 8; element e has q = e % 64 (value (q - 32) * 0.5 * sc).
  uint8_t q6k[210] = {};
  PutHalf(q6k + 208, 0.5f);
  for (int s = 0; s < 16; ++s) q6k[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(s - 8));
  for (int e = 0; e < 256; ++e) {
    const int q = e % 64, h = e / 128, r = e % 128;
    q6k[64 * h + r % 64] |= static_cast<uint8_t>((q & 15) << (4 * (r / 64)));
    q6k[128 + 32 * h + r % 32] |= static_cast<uint8_t>((q >> 4) << (2 * (r / 32)));
  }
  DequantizeRow(KESTREL_DTYPE_Q6_K, q6k, 256, out);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(out[e], 0.5f * (e / 16 - 8) * static_cast<float>(e % 64 - 32)) << e;
  }
}

TEST(QuantsTest, UnpackedIntegersGiveTheDequantizedValues) {
  SEED_TRACE();
  for (uint32_t dt : kExtra) {
    SCOPED_TRACE(DtypeName(dt));
    const int64_t n = 4 * ExtraQuantBlockElements(dt);
    const std::vector<uint8_t> bytes = RandomRows(dt, 1, n, dt);
    const std::vector<float> want = Dequantized(dt, bytes, n);
    const int64_t elems = ExtraQuantBlockElements(dt);
    for (int64_t b = 0; b < 4; ++b) {
      UnpackedBlock u;
      UnpackBlock(dt, bytes.data() + b * ExtraQuantBlockBytes(dt), &u);
      for (int64_t e = 0; e < elems; ++e) {
        ASSERT_LT(u.q[e], 1 << u.bits) << e;
        double a, c;
        if (IsKQuant(dt)) {
          a = static_cast<double>(u.d) * u.sc[e / u.sub];
          c = -static_cast<double>(u.dmin) * u.m[e / u.sub];
        } else {
          a = u.a32;
          c = u.b32;
        }
        const double v = a * u.q[e] + c;
        ASSERT_NEAR(v, want[b * elems + e], 1e-6 * (std::fabs(v) + std::fabs(c) + 1e-3))
            << "block " << b << " element " << e;
      }
    }
  }
}

TEST(QuantsTest, OpsOnQuantWeightsEqualOpsOnTheirF32Values) {
  SEED_TRACE();
  Rng rng(77);
  for (uint32_t dt : kExtra) {
    SCOPED_TRACE(DtypeName(dt));
    const int64_t k = 2 * ExtraQuantBlockElements(dt) + (IsKQuant(dt) ? 0 : 32);
    const int64_t n = 19, t = 5;
    const std::vector<uint8_t> w = RandomRows(dt, n, k, 100 + dt);
    const std::vector<float> wf = Dequantized(dt, w, n * k);
    const std::vector<float> x = rng.Floats(t * k);

    // The op layer accepts the dtype for every weight-taking kind.
    kestrel_tensor_arg_t args[2] = {};
    args[0].desc = Desc(KESTREL_DTYPE_F32, {t, k});
    args[1].desc = Desc(dt, {n, k});
    kestrel_tensor_arg_t out_arg{};
    out_arg.desc = Desc(KESTREL_DTYPE_F32, {t, n});
    const std::vector<kestrel_tensor_arg_t> ins = {args[0], args[1]}, outs = {out_arg};
    const kestrel_op_desc_t op = OpDesc(KESTREL_OP_MATMUL, ins, outs, nullptr, 0);
    OpCheck check;
    const Status st = CheckOp(op, &check);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_TRUE(check.supported) << check.reason;

    std::vector<float> got(t * n), want(t * n);
    Matmul(x.data(), t, k, dt, w.data(), n, got.data());
    Matmul(x.data(), t, k, KESTREL_DTYPE_F32, wf.data(), n, want.data());
    EXPECT_EQ(got, want) << "MATMUL";

    const std::vector<int32_t> rows = {4, 0, 2};
    std::vector<float> lg(3 * n), lw(3 * n);
    ASSERT_TRUE(Logits(x.data(), t, k, dt, w.data(), n, rows.data(), 3, lg.data()).ok());
    ASSERT_TRUE(Logits(x.data(), t, k, KESTREL_DTYPE_F32, wf.data(), n, rows.data(), 3, lw.data()).ok());
    EXPECT_EQ(lg, lw) << "LOGITS";

    const std::vector<int32_t> ids = {3, 18, 0, 3};
    std::vector<float> eg(4 * k), ew(4 * k);
    ASSERT_TRUE(EmbeddingGather(dt, w.data(), n, k, ids.data(), 4, eg.data()).ok());
    ASSERT_TRUE(EmbeddingGather(KESTREL_DTYPE_F32, wf.data(), n, k, ids.data(), 4, ew.data()).ok());
    EXPECT_EQ(eg, ew) << "EMBEDDING_GATHER";
    const std::vector<int32_t> bad = {n};
    EXPECT_EQ(EmbeddingGather(dt, w.data(), n, k, bad.data(), 1, eg.data()).code(),
              KESTREL_PLUGIN_OUT_OF_RANGE);

    // MOE: 4 experts of this dtype (gate/up [E, F, D] with D = k, down [E, D, F] with F = k),
    // an F32 router.
    const int64_t E = 4, D = k, F = k;
    const std::vector<uint8_t> gate = RandomRows(dt, E * F, D, 200 + dt);
    const std::vector<uint8_t> up = RandomRows(dt, E * F, D, 300 + dt);
    const std::vector<uint8_t> down = RandomRows(dt, E * D, F, 400 + dt);
    const std::vector<float> router = rng.Floats(E * D);
    const std::vector<float> gf = Dequantized(dt, gate, E * F * D);
    const std::vector<float> uf = Dequantized(dt, up, E * F * D);
    const std::vector<float> df = Dequantized(dt, down, E * D * F);
    MoeParams p;
    p.n_experts = E;
    p.top_k = 2;
    p.n_local_experts = E;
    std::vector<float> mg(t * D), mw(t * D);
    std::vector<int32_t> sg(E), sw(E);
    Moe(x.data(), t, D, F, KESTREL_DTYPE_F32, router.data(), {dt, gate.data()}, {dt, up.data()},
        {dt, down.data()}, p, mg.data(), sg.data());
    Moe(x.data(), t, D, F, KESTREL_DTYPE_F32, router.data(), {KESTREL_DTYPE_F32, gf.data()},
        {KESTREL_DTYPE_F32, uf.data()}, {KESTREL_DTYPE_F32, df.data()}, p, mw.data(), sw.data());
    EXPECT_EQ(mg, mw) << "MOE";
    EXPECT_EQ(sg, sw) << "MOE stats";
  }
}

}  // namespace
}  // namespace kestrel::plugin_sdk
