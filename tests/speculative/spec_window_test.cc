// Speculative decoding over sliding-window KV groups: a Session over gemma3-tiny (window 8 on
// layers 0 and 1, layer 2 global; block size 4) keeps its local layers' KV capped at the window
// while draft trees are verified, moved onto consecutive slots (in every KV group) and rolled
// back. Greedy output must equal plain decoding's token for token for every method, on ref and
// cpu (the cpu tree-mask kernel follows the windowed decode step's tiles), drafts must be capped
// at one window of nodes, and the local pool must never grow past the window's blocks.
#include <algorithm>
#include <string>
#include <vector>

#include "runtime/speculative/spec_config.h"
#include "tests/arch/arch_test_util.h"
#include "tests/speculative/spec_test_util.h"

namespace kestrel::testing {
namespace {

using runtime::SpecMethod;

class SpecWindowTest : public ::testing::TestWithParam<SpecParam> {
 protected:
  static constexpr uint32_t kBlock = 4, kContext = 128, kNew = 48;
  // window 8, steps of at most 8: positions [n - 7, n + 8) lie in at most 5 blocks of 4.
  static constexpr uint32_t kLocalCap = 5;

  runtime::GenerateResult Run(const runtime::Model* model, SpecMethod method, uint32_t* max_local) {
    runtime::SessionConfig c;
    c.context_length = kContext;
    c.block_size = kBlock;
    c.sampler.temperature = 0.0f;
    c.spec.method = method;
    c.spec.max_draft = 12;  // more than a window's step allows: the session must cap the tree
    c.spec.tree_budget = 24;
    auto s = runtime::Session::Create(model, SpecEnv::Get().Ref(), c);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return {};
    EXPECT_EQ((*s)->kv_blocks_held().size(), 2u) << "the local layers have no KV group";
    runtime::GenerateRequest req;
    // A repetitive prompt longer than the window (prefilled in window-sized steps), so n-gram and
    // lookahead find continuations.
    for (int rep = 0; rep < 4; ++rep) {
      for (int32_t t : {17, 230, 41, 99, 5, 310, 77}) req.prompt.push_back(t);
    }
    req.max_new_tokens = kNew;
    req.on_token = [&](int32_t, absl::string_view) {
      const std::vector<uint32_t> held = (*s)->kv_blocks_held();
      if (held.size() > 1) *max_local = std::max(*max_local, held[1]);
      return true;
    };
    auto r = (*s)->Generate(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : runtime::GenerateResult{};
  }
};

TEST_P(SpecWindowTest, GreedyEqualsPlainWithCappedWindowKv) {
  const SpecParam& p = GetParam();
  KESTREL_SPEC_DEVICE_OR_SKIP(p.device);
  const std::string path = SynthModel("gemma3-tiny");
  std::string why;
  hal::Device* device = SpecEnv::Get().Device(p.device, &why);
  auto model = runtime::Model::Load(path, device, {});
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->config().layers[0].sliding_window, 8u);

  uint32_t plain_local = 0, spec_local = 0;
  const runtime::GenerateResult plain = Run(model->get(), SpecMethod::kOff, &plain_local);
  ASSERT_EQ(plain.tokens.size(), kNew);
  const runtime::GenerateResult spec = Run(model->get(), p.method, &spec_local);
  EXPECT_EQ(spec.tokens, plain.tokens);
  EXPECT_EQ(spec.stop_reason, runtime::StopReason::kMaxTokens);
  EXPECT_GT(spec.spec.steps, 0u) << "no speculative step ran";
  EXPECT_GT(spec.spec.drafted, 0u);
  // A step carries the pending token and at most 7 draft nodes (one window of 8 positions).
  EXPECT_LE(spec.spec.drafted, spec.spec.steps * 7);
  EXPECT_LE(plain_local, kLocalCap);
  EXPECT_LE(spec_local, kLocalCap);
  EXPECT_GE(spec_local, 3u);
}

std::vector<SpecParam> Params() {
  std::vector<SpecParam> out;
  for (const char* device : {"ref", "cpu"}) {
    for (SpecMethod m : {SpecMethod::kNgram, SpecMethod::kLookahead, SpecMethod::kSelf}) {
      out.push_back({device, m});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Windows, SpecWindowTest, ::testing::ValuesIn(Params()), SpecParamName);

}  // namespace
}  // namespace kestrel::testing
