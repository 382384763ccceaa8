// Speculative decoding inside continuous batching: every request's greedy output equals the
// golden ids while the engine verifies trees of different sizes for several sequences in one
// varlen step, with 2-token KV blocks (trees span blocks), the prefix cache on (rolled-back
// blocks never enter it) and forks sharing prompt blocks copy-on-write.
#include "runtime/engine/engine.h"
#include "runtime/speculative/spec_config.h"
#include "tests/speculative/spec_test_util.h"

namespace kestrel::testing {
namespace {

using runtime::SpecMethod;

using Param = SpecParam;

class EngineSpecTest : public ::testing::TestWithParam<Param> {
 protected:
  std::unique_ptr<runtime::Engine> MakeEngine(const runtime::Model* model,
                                              uint32_t max_batch_tokens = 64) {
    runtime::EngineConfig c;
    c.context_length = 128;
    c.max_sequences = 16;
    c.max_batch_tokens = max_batch_tokens;
    auto e = runtime::Engine::Create(model, SpecEnv::Get().Ref(), c);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  runtime::SpecConfig Spec(const std::string& file) {
    runtime::SpecConfig s;
    s.method = GetParam().method;
    s.max_draft = 4;
    if (s.method == SpecMethod::kDraft) {
      s.draft_model = file == "stories260K.gguf"
                          ? SpecEnv::Get().Model("stories260K-first4L.gguf", GetParam().device)
                          : SpecEnv::Get().Model(file, GetParam().device);
    }
    return s;
  }
  // Submits every golden case (speculating ones and, with `mixed`, a plain copy of each), runs to
  // the end and checks every output.
  void RunGolden(const std::string& file, const std::string& golden, bool mixed) {
    const runtime::Model* model = SpecEnv::Get().Model(file, GetParam().device);
    ASSERT_NE(model, nullptr);
    auto engine = MakeEngine(model);
    ASSERT_NE(engine, nullptr);
    std::vector<std::pair<uint64_t, std::vector<int32_t>>> want;
    std::vector<GoldenCase> cases = ReadGolden(golden);
    // All cases on cpu; three on ref and OpenCL (slower devices), to keep CI short.
    if (GetParam().device != "cpu" && cases.size() > 3) cases.resize(3);
    for (const GoldenCase& c : cases) {
      for (int plain = 0; plain <= (mixed ? 1 : 0); ++plain) {
        runtime::EngineRequest r;
        r.prompt = c.prompt;
        r.max_new_tokens = static_cast<uint32_t>(c.generated.size());
        r.sampler.temperature = 0.0f;
        if (!plain) r.spec = Spec(file);
        auto id = engine->Submit(r);
        ASSERT_TRUE(id.ok()) << id.status();
        want.push_back({*id, c.generated});
      }
    }
    ASSERT_TRUE(engine->Wait(0, -1).ok());
    uint64_t drafted = 0;
    for (auto& [id, ids] : want) {
      auto out = engine->Result(id);
      ASSERT_TRUE(out.ok());
      EXPECT_EQ(out->samples[0].tokens, ids) << "request " << id << ": " << out->status;
      drafted += out->spec.drafted;
    }
    if (GetParam().method != SpecMethod::kAuto) {
      EXPECT_GT(drafted, 0u);
    }
    EXPECT_EQ(engine->Stats().kv_blocks_used, engine->Stats().kv_blocks_cached)
        << "every block not in the prefix cache is free again";
  }
};

TEST_P(EngineSpecTest, Stories260KBatchEqualsGolden) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam().device);
  RunGolden("stories260K.gguf", "stories260K.golden.json", /*mixed=*/true);
}

TEST_P(EngineSpecTest, TinyMoeBatchEqualsGolden) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam().device);
  RunGolden("tiny-moe-f32.gguf", "tiny-moe-f32.golden.json", /*mixed=*/false);
}

// The same prompt twice, one after the other: the second takes the first's prompt blocks from the
// prefix cache; and a request with two greedy samples (a fork: the partial prompt block is
// shared copy-on-write, then each sample's trees write and roll back on their own copies).
TEST_P(EngineSpecTest, PrefixCacheAndForksAfterRollbacks) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam().device);
  const runtime::Model* model = SpecEnv::Get().Model("stories260K.gguf", GetParam().device);
  ASSERT_NE(model, nullptr);
  auto engine = MakeEngine(model);
  const GoldenCase c = ReadGolden("stories260K.golden.json")[1];
  for (int round = 0; round < 2; ++round) {
    runtime::EngineRequest r;
    r.prompt = c.prompt;
    r.max_new_tokens = static_cast<uint32_t>(c.generated.size());
    r.sampler.temperature = 0.0f;
    r.n = round == 0 ? 1 : 2;
    r.spec = Spec("stories260K.gguf");
    auto id = engine->Submit(r);
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(engine->Wait(*id, -1).ok());
    auto out = engine->Result(*id);
    ASSERT_TRUE(out.ok());
    for (const auto& s : out->samples) EXPECT_EQ(s.tokens, c.generated) << "round " << round;
    if (round == 1) {
      EXPECT_GT(out->n_cached_prompt_tokens, 0u);
    }
  }
  EXPECT_GT(engine->Stats().prefix_cache_hits, 0u);
}

std::vector<Param> Params() {
  std::vector<Param> out;
  for (SpecMethod m : {SpecMethod::kNgram, SpecMethod::kLookahead, SpecMethod::kDraft,
                       SpecMethod::kSelf, SpecMethod::kAuto}) {
    out.push_back({"ref", m});
    out.push_back({"cpu", m});
  }
  // OpenCL runs causal chains itself and tree steps' attention on the reference fallback: one
  // chain method and one tree method keep the suite short.
  out.push_back({"opencl", SpecMethod::kDraft});
  out.push_back({"opencl", SpecMethod::kLookahead});
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllMethods, EngineSpecTest, ::testing::ValuesIn(Params()), SpecParamName);

}  // namespace
}  // namespace kestrel::testing
