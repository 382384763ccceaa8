// ../shared/models/smollm2-135m-instruct.golden.json (issue 12's SmolLM2 golden: llama.cpp b4747
// on an F32 copy of the Q4_1 file) through the C API; Gemma 3's is tests/arch/gemma3_model_test,
// both through the CLI in golden_cli_test.sh. ref token-exact on the first
// KESTREL_MODELS_REF_TOKENS (default 8) generated ids of each case, prompt text tokenized to the
// file's ids (specials parsed for the chat-formatted cases); cpu: leading ids equal to the
// reference, summed over the cases, >= 90% of llama.cpp's quantized path
// (llamacpp_quantized_agreement). A missing model skips, or fails under KESTREL_REQUIRE_MODELS=1.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/models/real_model_util.h"

namespace kestrel::testing {
namespace {

class SmolLM2GoldenTest : public ::testing::Test {
 protected:
  void Load(const std::string& device) {
    const std::string path = ModelCache() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
    KESTREL_REAL_MODEL_OR_SKIP(path);
    std::ifstream f(ModelPath("smollm2-135m-instruct.golden.json"));
    ASSERT_TRUE(f.good()) << ModelPath("smollm2-135m-instruct.golden.json");
    golden_ = nlohmann::json::parse(f);
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), path, device, &model_);
    ASSERT_EQ(s, nullptr) << path << ": " << kestrel_status_message(s.get());
  }
  nlohmann::json golden_;
  RuntimePtr rt_;
  ModelPtr model_;
};

TEST_F(SmolLM2GoldenTest, RefIsTokenExact) {
  Load("ref");
  if (HasFatalFailure() || IsSkipped()) return;
  const size_t n = static_cast<size_t>(EnvInt("KESTREL_MODELS_REF_TOKENS", 8));
  for (const auto& c : golden_["cases"]) {
    std::vector<int32_t> want = c["generated_ids"];
    if (want.size() > n) want.resize(n);
    // The prompt text through the tokenizer, specials parsed for the chat-formatted cases.
    EXPECT_EQ(Tokenize(model_.get(), c["prompt"], true, c["parse_special"].get<bool>()),
              c["prompt_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(GreedyIds(model_.get(), c["prompt_ids"], want.size()), want) << c["prompt"];
  }
}

TEST_F(SmolLM2GoldenTest, CpuAgreesAtLeastNinetyPercentOfLlamaCpp) {
  Load("cpu");
  if (HasFatalFailure() || IsSkipped()) return;
  int agree = 0, llamacpp = 0;
  for (const auto& c : golden_["cases"]) {
    const std::vector<int32_t> want = c["generated_ids"];
    const int lead = LeadingAgreement(GreedyIds(model_.get(), c["prompt_ids"], want.size()), want);
    agree += lead;
    llamacpp += c["llamacpp_quantized_agreement"].get<int>();
    std::printf("case '%s': %d leading ids agree (llama.cpp %d)\n", c["prompt"].get<std::string>().c_str(), lead,
                c["llamacpp_quantized_agreement"].get<int>());
  }
  std::printf("cpu: %d leading ids agree over the cases, llama.cpp %d\n", agree, llamacpp);
  EXPECT_GE(agree * 10, llamacpp * 9) << agree << " leading ids vs llama.cpp's " << llamacpp;
}

}  // namespace
}  // namespace kestrel::testing
