// Conformance of the CUDA plugin against the reference plugin, through the HAL, with the shared
// device-conformance harness (tests/device_conformance: both plugins dlopen()ed by one
// PluginRegistry, every op on both devices with the same fresh random inputs, seed printed on
// failure, KESTREL_TEST_SEED reproduces, outputs poisoned, relative norm error or bit for bit).
// The shared cases: every op, op_query answers, data-dependent errors, in-place ops, streams and
// events through the raw plugin table. Here: the CUDA device and its skip, the matmul shapes of
// its GEMV and cuBLAS paths, the split-K decode and prefill tiles of its attention, and tree
// masks. The test binary itself does not link CUDA. Without a CUDA device every test is skipped
// with the plugin's reason.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/device_conformance/device_conformance.h"

namespace kestrel::plugins::cuda {
namespace {

namespace cases = conformance::cases;
using conformance::Attention;
using conformance::Bytes;
using conformance::F32;
using conformance::Name;
using conformance::OpCase;
using conformance::Out;
using conformance::Rng;
using conformance::RunOn;
using conformance::Seq;
using conformance::Weight;

const conformance::Devices& Env() { return conformance::LoadDevices("cuda"); }

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(Env().ref, nullptr) << "the reference plugin did not load from "
                                  << conformance::PluginDir();
    if (Env().dev == nullptr) GTEST_SKIP() << "no CUDA device: " << Env().why_not;
  }
};

void Check(const OpCase& c, const std::string& what) { conformance::Check(Env(), c, what); }

// ---- element-wise and per-row ops -----------------------------------------------------------------
TEST_F(CudaTest, AddAndSwiglu) { cases::AddAndSwiglu(Env()); }
TEST_F(CudaTest, AddInPlace) { cases::AddInPlace(Env()); }
TEST_F(CudaTest, RmsNorm) { cases::RmsNorm(Env()); }
TEST_F(CudaTest, Rope) { cases::Rope(Env()); }
TEST_F(CudaTest, EmbeddingGatherEveryWeightDtype) { cases::EmbeddingGatherEveryWeightDtype(Env()); }

// ---- matmul and logits ----------------------------------------------------------------------------
TEST_F(CudaTest, MatmulEveryWeightDtypeAndOddShapes) {
  // T <= 8: the decode GEMV (T = 8 is its largest batch); T > 8: cuBLAS SGEMM (on dequantised
  // f32 tiles for the non-F32 formats).
  cases::MatmulEveryWeightDtype(Env(), {{1, 64, 64}, {5, 96, 33}, {8, 256, 7}, {1, 2080, 5},
                                        {2, 64, 172}, {9, 256, 7}, {33, 96, 40}, {64, 128, 130}},
                                // stories260K's FFN-down K (not a block multiple), and K = 13
                                {{3, 172, 64}, {12, 172, 64}, {2, 13, 3}, {10, 13, 3}});
}

TEST_F(CudaTest, MatmulPrefillTilesLargeQuantizedWeights) {
  // N * K = 4100 * 4096 > the 16M-element dequantisation tile: two cuBLAS calls write the two
  // column ranges of out.
  Rng rng(16);
  for (uint32_t dtype : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_F16}) {
    const int64_t t = 9, k = 4096, n = 4100;
    OpCase c;
    c.kind = KESTREL_OP_MATMUL;
    c.in = {F32({t, k}, rng.Floats(t * k)), Weight(rng, dtype, n, k, true)};
    c.out = {Out(KESTREL_DTYPE_F32, {t, n})};
    c.tol = 2e-6 * std::sqrt(static_cast<double>(k)) + 1e-6;
    Check(c, Name(dtype) + " T=9 K=4096 N=4100");
  }
}

// Also 10 rows, more than the GEMV takes: the cuBLAS path, from a buffer weight.
TEST_F(CudaTest, LogitsPicksRows) { cases::LogitsPicksRows(Env(), /*ten_rows=*/true); }

// ---- KV cache ops and paged attention ----------------------------------------------------------
TEST_F(CudaTest, KvWriteF32AndF16Caches) { cases::KvWriteF32AndF16Caches(Env()); }
TEST_F(CudaTest, KvBlockCopyAppliesPairsInOrder) { cases::KvBlockCopyAppliesPairsInOrder(Env()); }
TEST_F(CudaTest, PagedAttentionVarlenPrefillAndDecode) {
  cases::PagedAttentionVarlenPrefillAndDecode(Env());
}
TEST_F(CudaTest, PagedAttentionF16Caches) { cases::PagedAttentionF16Caches(Env()); }
TEST_F(CudaTest, PagedAttentionSingleDecodeLongContext) {
  cases::PagedAttentionSingleDecodeLongContext(Env());
}

TEST_F(CudaTest, PagedAttentionSplitKDecodeGqa) {
  // Every sequence has one query (or none): the split-K decode kernel. Long contexts make many
  // splits (up to 64 per sequence and KV head), with a partial last block and a sequence shorter
  // than one split; GQA groups of 1, 4, 8 and 16 query heads per KV head; Dh up to 256.
  Rng rng(17);
  const std::vector<Seq> decode = {{1, 600}, {1, 1}, {0, 5}, {1, 5000}, {1, 33}};
  struct Config { int64_t h, hkv, dh, b; };
  for (const Config& k : {Config{8, 2, 128, 16}, Config{4, 4, 64, 32}, Config{16, 1, 64, 16},
                          Config{8, 1, 256, 16}, Config{6, 2, 24, 16}, Config{2, 2, 8, 32}}) {
    for (uint32_t kd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
      const std::string what = "H=" + std::to_string(k.h) + " Hkv=" + std::to_string(k.hkv) +
                               " Dh=" + std::to_string(k.dh) + " B=" + std::to_string(k.b) +
                               " K/V " + Name(kd);
      Check(Attention(rng, k.h, k.hkv, k.dh, k.b, kd, kd, true, decode), what);
    }
  }
}

TEST_F(CudaTest, PagedAttentionPrefillTilesAndLargeHeads) {
  // Many query tiles per sequence (16 queries per tile up to Dh 128, 8 above), a prefill over a
  // cached prefix and a mixed step with decodes; Dh 256 takes the smaller tile.
  Rng rng(18);
  const std::vector<Seq> prefill = {{40, 40}, {1, 90}, {17, 300}, {0, 3}};
  for (int64_t dh : {64, 128, 256}) {
    for (bool causal : {true, false}) {
      Check(Attention(rng, 4, 2, dh, 16, KESTREL_DTYPE_F16, KESTREL_DTYPE_F32, causal, prefill),
            "Dh=" + std::to_string(dh) + (causal ? " causal" : " full"));
    }
  }
}

TEST_F(CudaTest, PagedAttentionTreeMask) {
  // Speculative verification: each query sees the committed prefix, its ancestors and itself
  // (parents shuffled so they need not precede their children); `causal` is ignored.
  Rng rng(19);
  const std::vector<Seq> seqs = {{7, 30}, {1, 12}, {12, 12}, {0, 4}, {20, 100}};
  for (bool causal : {true, false}) {
    for (int64_t dh : {8, 64, 256}) {
      Check(Attention(rng, 4, 2, dh, 16, KESTREL_DTYPE_F32, KESTREL_DTYPE_F16, causal, seqs,
                      /*tree=*/true),
            "tree Dh=" + std::to_string(dh) + (causal ? " causal flag" : " full flag"));
    }
  }
}

TEST_F(CudaTest, TreeMaskErrors) {
  Rng rng(20);
  std::vector<std::vector<uint8_t>> outs;
  // A cycle (0 -> 1 -> 0) and a parent out of range are errors, not hangs or accesses.
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{1, 0, -1},
                                          std::vector<int32_t>{-1, 3, 0}}) {
    OpCase att = Attention(rng, 2, 1, 8, 16, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true,
                           {{3, 10}}, /*tree=*/true);
    att.in[6].bytes = Bytes(bad);
    const absl::Status s = RunOn(Env().dev, att, &outs);
    EXPECT_TRUE(s.code() == absl::StatusCode::kInvalidArgument ||
                s.code() == absl::StatusCode::kOutOfRange)
        << s;
  }
}

// ---- op_query, data-dependent errors, names ------------------------------------------------------
// Tree-mask attention: implemented here (PREFERRED).
TEST_F(CudaTest, OpQueryLevels) { cases::OpQueryLevels(Env(), KESTREL_OP_PREFERRED); }
TEST_F(CudaTest, OutOfRangeIndicesAreErrorsNotAccesses) {
  cases::OutOfRangeIndicesAreErrorsNotAccesses(Env());
}
TEST_F(CudaTest, DeviceNamesAndCaps) { cases::DeviceNamesAndCaps(Env()); }

// ---- raw plugin table: streams and events ----------------------------------------------------------
TEST_F(CudaTest, AsyncWriteOpReadOrderOnOneStream) {
  cases::AsyncWriteOpReadOrderOnOneStream(Env());
}
TEST_F(CudaTest, EventWaitAcrossTwoStreams) { cases::EventWaitAcrossTwoStreams(Env()); }

}  // namespace
}  // namespace kestrel::plugins::cuda
