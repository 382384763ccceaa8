// Gemma 3 270M (the real Q4_K_M file, fetched by scripts/fetch_models.sh) against
// ../shared/models/gemma-3-270m.golden.json, an independent float64 forward of the same weights,
// through the C API:
//   * ref (exact arithmetic, double accumulation): token-exact. The 270M forward on ref is slow
//     (one thread, every weight row dequantized per use), so CI checks the first
//     KESTREL_GEMMA3_REF_TOKENS generated ids of every case (default 8; 32 checks them all), and
//     the prompt logits of case 1 against gemma-3-270m.logits0.json.
//   * cpu (8-bit activations, like llama.cpp's quantized path): summed over the cases, the leading
//     generated ids that equal the reference are >= 90% of llama.cpp's own sum
//     (llamacpp_quantized_agreement per case).
// The model comes from $KESTREL_MODEL_CACHE (default ~/.cache/kestrel/models); KESTREL_GEMMA3_MODEL
// names another file of the same weights (an F32 copy made with llama-quantize --allow-requantize
// has the same function). Missing: FAIL when KESTREL_REQUIRE_MODELS=1, else skip with a message.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/models/real_model_util.h"

namespace kestrel::testing {
namespace {

std::string Gemma3Path() {
  if (const char* p = std::getenv("KESTREL_GEMMA3_MODEL")) return p;
  return ModelCache() + "/gemma-3-270m-q4_k_m.gguf";
}

nlohmann::json Golden(const std::string& name) {
  std::ifstream f(ModelPath(name));
  EXPECT_TRUE(f.good()) << "cannot open " << ModelPath(name);
  return nlohmann::json::parse(f);
}

int RefTokens() {
  return EnvInt("KESTREL_GEMMA3_REF_TOKENS", 8);
}

class Gemma3ModelTest : public ::testing::Test {
 protected:
  // Loads the model on `device`; skips (or fails, per KESTREL_REQUIRE_MODELS) when it is missing.
  void Load(const std::string& device) {
    const std::string path = Gemma3Path();
    KESTREL_REAL_MODEL_OR_SKIP(path);
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), path, device, &model_);
    // Until the K-quant formats land (issue 12's quant work) this build cannot run the file's
    // Q4_K / Q6_K / Q5_0 tensors: that is a missing capability, reported as a skip naming it.
    if (s != nullptr && kestrel_status_code(s.get()) == KESTREL_STATUS_UNIMPLEMENTED &&
        std::string(kestrel_status_message(s.get())).find("cannot compute with") != std::string::npos) {
      GTEST_SKIP() << "this build cannot run " << path << ": " << kestrel_status_message(s.get());
    }
    ASSERT_EQ(s, nullptr) << path << ": " << kestrel_status_message(s.get());
  }

  // Greedy ids of one case: the prompt ids decoded in one step, then one token per step, at most
  // `n` tokens or up to an end-of-generation token (not included), as the golden file's driver.
  std::vector<int32_t> Generate(const std::vector<int32_t>& prompt, size_t n) {
    SessionPtr session = MakeGreedySession(model_.get(), 128);
    EXPECT_NE(session, nullptr);
    std::vector<int32_t> out;
    KESTREL_EXPECT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
    std::vector<float> logits(262144);
    for (size_t i = 0; i < n; ++i) {
      size_t got = 0;
      KESTREL_EXPECT_OK(kestrel_session_get_logits(session.get(), logits.data(), logits.size(), &got));
      int32_t best = 0;
      for (size_t v = 1; v < got; ++v) {
        if (logits[v] > logits[best]) best = static_cast<int32_t>(v);
      }
      if (best == 1 || best == 106) break;  // EOS, <end_of_turn>
      out.push_back(best);
      KESTREL_EXPECT_OK(kestrel_session_decode(session.get(), &best, 1));
    }
    return out;
  }

  RuntimePtr rt_;
  ModelPtr model_;
};

TEST_F(Gemma3ModelTest, RefIsTokenExact) {
  Load("ref");
  if (HasFatalFailure() || IsSkipped()) return;
  const nlohmann::json golden = Golden("gemma-3-270m.golden.json");
  const size_t n = static_cast<size_t>(RefTokens());
  for (const auto& c : golden["cases"]) {
    SCOPED_TRACE(c["prompt"].get<std::string>());
    const std::vector<int32_t> prompt = c["prompt_ids"];
    std::vector<int32_t> want = c["generated_ids"];
    if (want.size() > n) want.resize(n);
    EXPECT_EQ(Generate(prompt, want.size()), want);
  }
}

TEST_F(Gemma3ModelTest, RefPromptLogitsMatchTheFloat64Reference) {
  Load("ref");
  if (HasFatalFailure() || IsSkipped()) return;
  const nlohmann::json ref = Golden("gemma-3-270m.logits0.json");
  const std::vector<int32_t> prompt = ref["prompt_ids"];
  SessionPtr session = MakeGreedySession(model_.get(), 128);
  KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
  std::vector<float> logits(262144);
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_session_get_logits(session.get(), logits.data(), logits.size(), &n));
  ASSERT_EQ(n, 262144u);
  const std::vector<int32_t> ids = ref["top64_ids"];
  const std::vector<double> want = ref["top64_logits"];
  double max_err = 0, l2 = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    max_err = std::max(max_err, std::fabs(logits[ids[i]] - want[i]));
  }
  for (float v : logits) l2 += static_cast<double>(v) * v;
  // float32 activations with double dot products against a float64 forward: the reference's own
  // float32 check differs by <= 9e-5 over every position.
  EXPECT_LT(max_err, 1e-3) << "top-64 logits";
  EXPECT_NEAR(std::sqrt(l2), ref["l2_norm"].get<double>(), 1e-3 * ref["l2_norm"].get<double>());
  RecordProperty("max_abs_top64_logit_error", std::to_string(max_err));
}

TEST_F(Gemma3ModelTest, CpuAgreesAtLeastNinetyPercentOfLlamaCpp) {
  Load("cpu");
  if (HasFatalFailure() || IsSkipped()) return;
  const nlohmann::json golden = Golden("gemma-3-270m.golden.json");
  int agree = 0, llamacpp = 0;
  for (const auto& c : golden["cases"]) {
    const std::vector<int32_t> prompt = c["prompt_ids"];
    const std::vector<int32_t> want = c["generated_ids"];
    const std::vector<int32_t> got = Generate(prompt, want.size());
    const int lead = LeadingAgreement(got, want);
    agree += lead;
    llamacpp += c["llamacpp_quantized_agreement"].get<int>();
    std::printf("case '%s': %d leading ids agree (llama.cpp %d)\n",
                c["prompt"].get<std::string>().c_str(), lead,
                c["llamacpp_quantized_agreement"].get<int>());
  }
  std::printf("cpu: %d leading ids agree over the cases, llama.cpp %d\n", agree, llamacpp);
  RecordProperty("leading_ids_agree", std::to_string(agree));
  EXPECT_GE(agree * 10, llamacpp * 9) << agree << " leading ids vs llama.cpp's " << llamacpp;
}

}  // namespace
}  // namespace kestrel::testing
