// Batch invariance of the Q4_0 / Q8_0 GEMM (kernels.h gemm_q) on every level this CPU has: the
// outputs of a token are the same bits whether it is computed alone (the decode GEMV) or in a
// batch of T = 2..63 (the small-batch kernels: speculative verification, the engine's batched
// decode). Greedy speculative decoding and the engine-vs-session identity tests rely on it, and
// the model-level tests that check it see only a few logits. Run once per decode GEMV style
// (KESTREL_CPU_GEMV=rows|tiles: two GEMV forms, one set of small-batch kernels, so greedy output
// does not depend on the CPU's vendor). Closeness to `ref` is cpu_conformance_test's job.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cpu_features.h"
#include "gtest/gtest.h"
#include "kernels.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "packed_weight.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::plugins::cpu {
namespace {

struct QuantActs {
  int64_t n_groups;
  std::vector<int8_t> qs;
  std::vector<int32_t> bias;
  std::vector<float> d;
  QActView View(int64_t token) const {
    return {n_groups, qs.data() + token * n_groups * kActGroupBytes,
            bias.data() + token * n_groups * 16, d.data() + token * n_groups * kGroupBlocks};
  }
};

QuantActs Quantize(const KernelTable& kt, const std::vector<float>& x, int64_t t, int64_t k,
                   int32_t offset) {
  QuantActs q{GroupsFor(k), {}, {}, {}};
  q.qs.resize(t * q.n_groups * kActGroupBytes);
  q.bias.resize(t * q.n_groups * 16);
  q.d.resize(t * q.n_groups * kGroupBlocks);
  for (int64_t i = 0; i < t; ++i) {
    kt.quantize_row_act(x.data() + i * k, k, q.n_groups, offset,
                        q.qs.data() + i * q.n_groups * kActGroupBytes,
                        q.bias.data() + i * q.n_groups * 16,
                        q.d.data() + i * q.n_groups * kGroupBlocks);
  }
  return q;
}

TEST(SmallBatchGemmTest, BatchedTokensAreBitIdenticalToTheGemv) {
  SEED_TRACE();
  std::mt19937_64 gen(plugin_sdk::testing_util::TestSeed());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::printf("decode GEMV style: %s\n", DecodeGemvStyle() == GemvStyle::kRows ? "rows" : "tiles");
  // K: 7 groups (a 3-group tail of the 4-group scale steps), 1 partial group, 33 groups (32 + a
  // 1-block group); T: the token chunks of the group tiles (ForEachTokenChunk: 2, 3, 2+2, 3+2,
  // 3+3+2, ...; T = 4 has its own 2 x 4 tile), 63 the last batch below the vnni lane GEMM.
  const int64_t kTokens[] = {2, 3, 4, 5, 8, 9, 16, 31, 32, 63};
  struct Shape {
    int64_t k, n;
  };
  const Shape shapes[] = {{800, 9}, {96, 5}, {4128, 6}};
  for (IsaLevel level : {IsaLevel::kPortable, IsaLevel::kAvx2, IsaLevel::kAvx512, IsaLevel::kVnni,
                         IsaLevel::kAmx, IsaLevel::kNeon, IsaLevel::kDotprod}) {
    if (!IsaLevelSupported(level)) {
      std::printf("level %s: not on this CPU, skipped\n", IsaLevelName(level));
      continue;
    }
    const KernelTable& kt = GetKernels(level);
    SCOPED_TRACE(IsaLevelName(level));
    for (uint32_t dt : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_Q8_0}) {
      for (const Shape& s : shapes) {
        SCOPED_TRACE(std::string(plugin_sdk::DtypeName(dt)) + " K=" + std::to_string(s.k) +
                     " N=" + std::to_string(s.n));
        std::vector<float> wf(s.n * s.k);
        for (float& v : wf) v = normal(gen);
        std::vector<uint8_t> gguf(plugin_sdk::RowBytes(dt, s.k) * s.n);
        for (int64_t j = 0; j < s.n; ++j) {
          uint8_t* row = gguf.data() + j * plugin_sdk::RowBytes(dt, s.k);
          if (dt == KESTREL_DTYPE_Q4_0) {
            plugin_sdk::QuantizeRowQ4_0(wf.data() + j * s.k, s.k, row);
          } else {
            plugin_sdk::QuantizeRowQ8_0(wf.data() + j * s.k, s.k, row);
          }
        }
        const std::unique_ptr<PackedQ> w =
            RepackQ(plugin_sdk::testing_util::Desc(dt, {s.n, s.k}), gguf.data());
        const int64_t t_max = kTokens[std::size(kTokens) - 1];
        std::vector<float> x(t_max * s.k);
        for (float& v : x) v = normal(gen);
        const QuantActs acts = Quantize(kt, x, t_max, s.k, w->view.offset);
        // The GEMV, one token at a time, over rows split as the thread pool might ([0, 3), rest).
        std::vector<float> alone(t_max * s.n, NAN);
        for (int64_t t = 0; t < t_max; ++t) {
          kt.gemm_q(w->view, acts.View(t), 1, 0, 3, alone.data() + t * s.n, s.n);
          kt.gemm_q(w->view, acts.View(t), 1, 3, s.n, alone.data() + t * s.n, s.n);
        }
        for (int64_t tokens : kTokens) {
          std::vector<float> batch(tokens * s.n, NAN);
          kt.gemm_q(w->view, acts.View(0), tokens, 0, 3, batch.data(), s.n);
          kt.gemm_q(w->view, acts.View(0), tokens, 3, s.n, batch.data(), s.n);
          EXPECT_EQ(std::memcmp(batch.data(), alone.data(), batch.size() * sizeof(float)), 0)
              << "T=" << tokens << ": some output differs from the one-token GEMV";
        }
      }
    }
  }
}

}  // namespace
}  // namespace kestrel::plugins::cpu
