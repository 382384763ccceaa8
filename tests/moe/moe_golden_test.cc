// Golden test of the synthetic Mixtral-style model tiny-moe-f32 (4 experts, top-2, see
// ../shared/models/README.md): prompt ids and greedy ids equal llama.cpp's for every case, and the
// logits of the first generated position are within 1e-4 of llama.cpp's (F32 KV cache). The
// device is KESTREL_TEST_DEVICE (default "ref"); a device without MOE runs it on ref (fallback).
#include <cmath>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return nlohmann::json::parse(f);
}

class MoeGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = ReadJson(ModelPath("tiny-moe-f32.golden.json"));
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), ModelPath("tiny-moe-f32.gguf"), TestDevice(), &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  }
  nlohmann::json golden_;
  RuntimePtr rt_;
  ModelPtr model_;
};

std::vector<int32_t> Tokenize(kestrel_model_t* m, const std::string& text) {
  size_t n = 0;
  KESTREL_EXPECT_OK(kestrel_tokenize(m, text.data(), text.size(), true, nullptr, 0, &n));
  std::vector<int32_t> ids(n);
  KESTREL_EXPECT_OK(kestrel_tokenize(m, text.data(), text.size(), true, ids.data(), ids.size(), &n));
  return ids;
}

TEST_F(MoeGoldenTest, ModelInfoReportsTheExperts) {
  // The file's own description of the rule this suite checks.
  const std::string rule = golden_["moe_semantics"];
  EXPECT_NE(rule.find("softmax over all experts"), std::string::npos) << rule;
  EXPECT_NE(rule.find("top-2"), std::string::npos) << rule;
  kestrel_model_info_t info{};
  info.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_info(model_.get(), &info));
  EXPECT_EQ(info.n_experts, 4u);
  EXPECT_EQ(info.n_experts_used, 2u);
  EXPECT_EQ(info.n_layers, 4u);
  EXPECT_EQ(info.n_embd, 64u);
  EXPECT_EQ(info.n_ff, 128u);
  EXPECT_EQ(info.vocab_size, 512u);
}

TEST_F(MoeGoldenTest, AllCasesTokenExact) {
  ASSERT_EQ(golden_["cases"].size(), 3u);
  for (const auto& c : golden_["cases"]) {
    const std::string prompt = c["prompt"];
    SCOPED_TRACE("prompt: " + prompt);
    const std::vector<int32_t> want_prompt = c["prompt_ids"];
    const std::vector<int32_t> want_ids = c["generated_ids"];
    EXPECT_EQ(Tokenize(model_.get(), prompt), want_prompt);

    SessionPtr session = MakeGreedySession(model_.get(), 128);
    ASSERT_NE(session, nullptr);
    Collected got;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = static_cast<uint32_t>(want_ids.size());
    g.on_token = &Collected::OnToken;
    g.user_data = &got;
    kestrel_generate_stats_t stats{};
    stats.struct_size = sizeof(stats);
    KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), prompt.data(), prompt.size(), &g, &stats));
    EXPECT_EQ(got.tokens, want_ids);
    EXPECT_EQ(got.text, FromHex(c["generated_text_hex"]));
    EXPECT_EQ(stats.n_prompt_tokens, want_prompt.size());
    EXPECT_EQ(stats.n_generated_tokens, want_ids.size());
    EXPECT_EQ(stats.stop_reason, KESTREL_STOP_MAX_TOKENS);
  }
}

TEST_F(MoeGoldenTest, LogitsMatchReference) {
  const auto& ref = golden_["logits0"];
  const std::vector<int32_t> prompt = ref["prompt_ids"];
  const std::vector<float> want = ref["logits_kv_f32"];
  SessionPtr session = MakeGreedySession(model_.get(), 128);
  KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_session_get_logits(session.get(), nullptr, 0, &n));
  ASSERT_EQ(n, want.size());
  std::vector<float> got(n);
  KESTREL_ASSERT_OK(kestrel_session_get_logits(session.get(), got.data(), got.size(), &n));
  double max_abs = 0;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << "logit " << i;
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(got[i]) - want[i]));
  }
  EXPECT_LT(max_abs, 1e-4) << "max abs logit error vs llama.cpp (F32 KV)";
  RecordProperty("max_abs_logit_error", std::to_string(max_abs));
  std::printf("tiny-moe-f32 logits0: max abs error vs llama.cpp %.3g\n", max_abs);
}

}  // namespace
}  // namespace kestrel::testing
