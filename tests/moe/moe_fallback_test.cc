// MoE through the op-by-op fallback: on a device that does not implement KESTREL_OP_MOE (the
// partial test plugin: matmul, RMSNorm, add, SwiGLU only) the MOE op of every layer runs on the
// reference plugin, the expert weights are prepared there on first use, and tiny-moe-f32 still
// reproduces llama.cpp's ids; the routing statistics come back from the reference device.
#include <fstream>
#include <numeric>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "nlohmann/json.hpp"
#include "runtime/model/model.h"
#include "runtime/session/session.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

TEST(MoeFallbackTest, UnsupportedMoeRunsOnTheReferencePlugin) {
  const std::string path = PluginDir() + "/libkestrel_plugin_ref.so:" + KESTREL_PARTIAL_PLUGIN;
  auto registry = hal::PluginRegistry::Create(path, nullptr);
  auto partial = registry->FindDevice("partial");
  ASSERT_TRUE(partial.ok()) << partial.status();
  hal::Device* ref = registry->ReferenceDevice();
  ASSERT_NE(ref, nullptr);

  auto model = runtime::Model::Load(ModelPath("tiny-moe-f32.gguf"), *partial, {});
  ASSERT_TRUE(model.ok()) << model.status();
  runtime::SessionConfig config;
  config.context_length = 128;
  config.sampler.temperature = 0.0f;
  auto session = runtime::Session::Create(model->get(), ref, config);
  ASSERT_TRUE(session.ok()) << session.status();

  std::ifstream f(ModelPath("tiny-moe-f32.golden.json"));
  nlohmann::json golden = nlohmann::json::parse(f);
  const auto& c = golden["cases"][1];
  runtime::GenerateRequest req;
  req.prompt = c["prompt_ids"].get<std::vector<int32_t>>();
  req.max_new_tokens = 32;
  auto result = (*session)->Generate(req);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, c["generated_ids"].get<std::vector<int32_t>>());

  const runtime::Executor& e = (*session)->executor();
  const auto& counts = e.ops_per_device();
  ASSERT_EQ(counts.count("partial"), 1u);
  ASSERT_EQ(counts.count("ref"), 1u);
  int moe_ops = 0;
  for (const runtime::PlanOp& op : e.plan().ops) moe_ops += op.kind == KESTREL_OP_MOE;
  EXPECT_EQ(moe_ops, 4);
  const uint64_t tokens = (*session)->n_tokens();
  const std::vector<uint64_t>& experts = e.expert_counts();
  ASSERT_EQ(experts.size(), 4u * 4u);
  for (int l = 0; l < 4; ++l) {
    EXPECT_EQ(std::accumulate(experts.begin() + 4 * l, experts.begin() + 4 * l + 4, uint64_t{0}),
              tokens * 2)
        << "layer " << l;
  }
}

}  // namespace
}  // namespace kestrel::testing
