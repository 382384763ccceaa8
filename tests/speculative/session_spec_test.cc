// Speculative decoding in sessions: greedy output is token-identical to plain decoding (the
// golden ids) for every method, on stories260K and tiny-moe, on every device here (ref, cpu,
// opencl), and the speculative statistics show real speculation happened.
#include "runtime/speculative/spec_config.h"
#include "tests/speculative/spec_test_util.h"

namespace kestrel::testing {
namespace {

using runtime::SpecMethod;

using Param = SpecParam;

class SessionSpecTest : public ::testing::TestWithParam<Param> {
 protected:
  // Runs every golden case of `file` with the method; returns the stats summed.
  runtime::SpecStats RunGolden(const std::string& file, const std::string& golden) {
    runtime::SpecStats total;
    const Param& p = GetParam();
    const runtime::Model* model = SpecEnv::Get().Model(file, p.device);
    EXPECT_NE(model, nullptr);
    if (model == nullptr) return total;
    runtime::SessionConfig config;
    config.context_length = 128;
    config.sampler.temperature = 0.0f;
    config.spec.method = p.method;
    config.spec.max_draft = 4;
    if (p.method == SpecMethod::kDraft || p.method == SpecMethod::kAuto) {
      // stories260K's first 4 layers; tiny-moe drafts with itself (same vocab, tests the plumbing).
      config.spec.draft_model = file == "stories260K.gguf"
                                    ? SpecEnv::Get().Model("stories260K-first4L.gguf", p.device)
                                    : model;
    }
    auto session = runtime::Session::Create(model, SpecEnv::Get().Ref(), config);
    EXPECT_TRUE(session.ok()) << session.status();
    if (!session.ok()) return total;
    std::vector<GoldenCase> cases = ReadGolden(golden);
    // The fast cpu plugin runs every case; ref (double accumulation) and OpenCL (trees verified
    // through the reference fallback, with host copies of the KV) run two, to keep CI short.
    if (p.device != "cpu" && cases.size() > 2) cases.resize(2);
    for (const GoldenCase& c : cases) {
      runtime::GenerateRequest req;
      req.prompt = c.prompt;
      req.max_new_tokens = static_cast<uint32_t>(c.generated.size());
      auto r = (*session)->Generate(req);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) continue;
      EXPECT_EQ(r->tokens, c.generated);
      EXPECT_EQ(r->stop_reason, runtime::StopReason::kMaxTokens);
      total.Add(r->spec);
    }
    return total;
  }
};

TEST_P(SessionSpecTest, Stories260KGreedyEqualsGolden) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam().device);
  runtime::SpecStats st = RunGolden("stories260K.gguf", "stories260K.golden.json");
  // Every method drafts on this text; the draft model and n-gram get accepted tokens.
  EXPECT_GT(st.steps + st.plain_steps, 0u);
  if (GetParam().method != SpecMethod::kAuto) {
    EXPECT_GT(st.drafted, 0u) << runtime::SpecMethodName(GetParam().method);
  }
  if (GetParam().method == SpecMethod::kDraft || GetParam().method == SpecMethod::kNgram) {
    EXPECT_GT(st.accepted, 0u);
  }
  std::printf("[ stats    ] %s %s: steps %llu plain %llu drafted %llu accepted %llu\n",
              GetParam().device.c_str(), runtime::SpecMethodName(GetParam().method),
              (unsigned long long)st.steps, (unsigned long long)st.plain_steps,
              (unsigned long long)st.drafted, (unsigned long long)st.accepted);
}

TEST_P(SessionSpecTest, TinyMoeGreedyEqualsGolden) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam().device);
  RunGolden("tiny-moe-f32.gguf", "tiny-moe-f32.golden.json");
}

std::vector<Param> Params() {
  std::vector<Param> out;
  for (const char* d : {"ref", "cpu", "opencl"}) {
    for (SpecMethod m : {SpecMethod::kNgram, SpecMethod::kLookahead, SpecMethod::kDraft,
                         SpecMethod::kSelf, SpecMethod::kAuto}) {
      out.push_back({d, m});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllMethods, SessionSpecTest, ::testing::ValuesIn(Params()), SpecParamName);

}  // namespace
}  // namespace kestrel::testing
