// Op-by-op fallback: a plugin that claims only some ops still runs stories260K token-exact, with
// the other ops on the reference plugin and the data moved between the two devices.
#include <fstream>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "nlohmann/json.hpp"
#include "runtime/model/model.h"
#include "runtime/session/session.h"
#include "tests/test_util.h"
#include "tests/temp_dir.h"
#include "tools/synth/synth_shape.h"
#include "tools/synth/synth_writer.h"

namespace kestrel::testing {
namespace {

TEST(FallbackTest, PartialPluginRunsTheModelWithReferenceFallback) {
  const std::string path = PluginDir() + "/libkestrel_plugin_ref.so:" + KESTREL_PARTIAL_PLUGIN;
  auto registry = hal::PluginRegistry::Create(path, nullptr);
  auto partial = registry->FindDevice("partial");
  ASSERT_TRUE(partial.ok()) << partial.status();
  hal::Device* ref = registry->ReferenceDevice();
  ASSERT_NE(ref, nullptr);

  auto model = runtime::Model::Load(ModelPath("stories260K.gguf"), *partial, {});
  ASSERT_TRUE(model.ok()) << model.status();
  runtime::SessionConfig config;
  config.context_length = 128;
  config.sampler.temperature = 0.0f;
  auto session = runtime::Session::Create(model->get(), ref, config);
  ASSERT_TRUE(session.ok()) << session.status();

  std::ifstream f(ModelPath("stories260K.golden.json"));
  nlohmann::json golden = nlohmann::json::parse(f);
  const auto& c = golden["cases"][0];
  runtime::GenerateRequest req;
  req.prompt = c["prompt_ids"].get<std::vector<int32_t>>();
  req.max_new_tokens = 48;
  auto result = (*session)->Generate(req);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, c["generated_ids"].get<std::vector<int32_t>>());

  const auto& counts = (*session)->executor().ops_per_device();
  ASSERT_EQ(counts.count("partial"), 1u);
  ASSERT_EQ(counts.count("ref"), 1u);
  // 5 layers x (2 norms + 7 matmuls + 2 adds + swiglu) + final norm, per step.
  EXPECT_GT(counts.at("partial"), 0u);
  EXPECT_GT(counts.at("ref"), 0u);
}

TEST(FallbackTest, NoDeviceSupportingAnOpIsAClearError) {
  // Without the reference plugin there is no fallback: the first unsupported op fails by name.
  auto registry = hal::PluginRegistry::Create(KESTREL_PARTIAL_PLUGIN, nullptr);
  auto partial = registry->FindDevice("partial");
  ASSERT_TRUE(partial.ok());
  auto model = runtime::Model::Load(ModelPath("stories260K.gguf"), *partial, {});
  ASSERT_TRUE(model.ok()) << model.status();
  runtime::SessionConfig config;
  config.context_length = 32;
  auto session = runtime::Session::Create(model->get(), nullptr, config);
  ASSERT_TRUE(session.ok()) << session.status();
  const int32_t tokens[2] = {1, 403};
  absl::Status s = (*session)->Decode(tokens);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("EMBEDDING_GATHER"), std::string::npos) << s;
  EXPECT_NE(s.message().find("'partial' does not support it"), std::string::npos) << s;
  EXPECT_EQ((*session)->n_tokens(), 0u);  // a failed step leaves the context unchanged
}

// A plugin of ABI minor 1 is never shown the 1.2 optional inputs (which it would reject as
// malformed) nor the 1.3 GEGLU kind and version-2 forms (embedding scale, attention window): the
// HAL answers UNSUPPORTED for it, and the biased matmuls of a qwen2 model, the GeGLU, scaled
// embedding and windowed attention of a gemma3 model run on the reference plugin, with the same
// greedy tokens as on ref alone.
class FallbackNewerOpsTest : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(Shapes, FallbackNewerOpsTest, ::testing::Values("qwen2-tiny", "gemma3-tiny"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param).substr(0, 5);
                         });

TEST_P(FallbackNewerOpsTest, RunOnTheReferencePluginWithTheSameTokens) {
  const ScopedTempDir tmp("fallback");
  const std::string path = tmp.File(std::string(GetParam()) + ".gguf");
  synth::SynthOptions o;
  o.shape = *synth::PresetShape(GetParam());
  o.type = runtime::GgmlType::F32;
  o.output_path = path;
  ASSERT_TRUE(synth::WriteSyntheticModel(o).ok());
  auto registry = hal::PluginRegistry::Create(
      PluginDir() + "/libkestrel_plugin_ref.so:" + KESTREL_OLD_MINOR_PLUGIN, nullptr);
  auto old = registry->FindDevice("old_minor");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ((*old)->plugin_api_minor(), 1);
  hal::Device* ref = registry->ReferenceDevice();
  runtime::SessionConfig config;
  config.context_length = 64;
  config.sampler.temperature = 0.0f;
  runtime::GenerateRequest req;
  req.prompt = {1, 17, 250, 3};
  req.max_new_tokens = 8;  // 12 positions: past gemma3-tiny's window of 8
  std::vector<int32_t> tokens[2];
  for (int i = 0; i < 2; ++i) {
    auto model = runtime::Model::Load(path, i == 0 ? ref : *old, {});
    ASSERT_TRUE(model.ok()) << model.status();
    auto session = runtime::Session::Create(model->get(), ref, config);
    ASSERT_TRUE(session.ok()) << session.status();
    auto result = (*session)->Generate(req);
    ASSERT_TRUE(result.ok()) << result.status();
    tokens[i] = result->tokens;
    if (i == 1) {
      const auto& counts = (*session)->executor().ops_per_device();
      EXPECT_GT(counts.at("old_minor"), 0u);
      EXPECT_GT(counts.at("ref"), 0u);  // the biased Q/K/V matmuls; GEGLU, embedding, attention
    }
  }
  EXPECT_EQ(tokens[1], tokens[0]);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kestrel::testing
