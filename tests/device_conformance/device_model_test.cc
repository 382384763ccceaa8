// The shared test models end to end on one device plugin's device with the reference plugin
// loaded as the fallback, through the runtime (so the executor's placement is visible):
//   stories260K: the generated tokens equal llama.cpp's (shared golden file) for prefill + decode
//     with block sizes 16 and 32, and every op of every step ran on the device (none on ref);
//   tiny-moe-f32: llama.cpp's tokens, and the ops that ran on ref are exactly the MOE ops when
//     the device does not claim MOE ($KESTREL_TEST_DEVICE_MOE unset or 0), none when it does (1).
// A broken op_query (every op falling back to ref) fails here even though the goldens pass.
// The plugin is $KESTREL_TEST_DEVICE ("cpu", "opencl", "cuda"), its name in messages
// $KESTREL_TEST_DEVICE_NAME ("CPU", "OpenCL", "CUDA"); built and registered once per plugin
// (kestrel_add_device_model_test). Skipped, saying "no <name> device: <reason>", when the plugin
// has no device.
#include <fstream>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "nlohmann/json.hpp"
#include "runtime/model/model.h"
#include "runtime/session/session.h"

namespace kestrel::device_tests {
namespace {

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

class DeviceModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    plugin_ = Env("KESTREL_TEST_DEVICE", "");
    ASSERT_FALSE(plugin_.empty()) << "KESTREL_TEST_DEVICE (the plugin under test) is not set";
    const std::string name = Env("KESTREL_TEST_DEVICE_NAME", plugin_.c_str());
    const std::string dir = Env("KESTREL_PLUGIN_DIR", "");
    registry_ = hal::PluginRegistry::Create(
        dir + "/libkestrel_plugin_ref.so:" + dir + "/libkestrel_plugin_" + plugin_ + ".so", nullptr);
    auto dev = registry_->FindDevice(plugin_);
    if (!dev.ok()) {
      std::string why(dev.status().message());
      for (const auto& p : registry_->plugins()) {
        if (p.name == plugin_) why = p.skip_reason;
      }
      GTEST_SKIP() << "no " << name << " device: " << why;
    }
    dev_ = *dev;
    ref_ = registry_->ReferenceDevice();
    ASSERT_NE(ref_, nullptr);
    ASSERT_NE(dev_, ref_) << "the device under test is the reference device";
  }

  static nlohmann::json Golden(const std::string& file) {
    std::ifstream f(Env("KESTREL_MODELS_DIR", "../shared/models") + "/" + file);
    EXPECT_TRUE(f.good()) << "cannot open " << file;
    return nlohmann::json::parse(f);
  }

  // Greedy generation of `n` tokens of golden case `c` on a fresh session; checks the tokens and
  // returns the session (for its executor's counts).
  std::unique_ptr<runtime::Session> RunCase(const runtime::Model* model,
                                            const nlohmann::json& c, uint32_t block_size,
                                            uint32_t n) {
    runtime::SessionConfig config;
    config.context_length = 128;
    config.block_size = block_size;
    config.sampler.temperature = 0.0f;
    auto session = runtime::Session::Create(model, ref_, config);
    EXPECT_TRUE(session.ok()) << session.status();
    if (!session.ok()) return nullptr;
    runtime::GenerateRequest req;
    req.prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    req.max_new_tokens = n;
    auto result = (*session)->Generate(req);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return nullptr;
    std::vector<int32_t> want = c["generated_ids"].get<std::vector<int32_t>>();
    want.resize(std::min<size_t>(want.size(), n));
    EXPECT_EQ(result->tokens, want);
    return std::move(*session);
  }

  uint64_t Count(const runtime::Executor& e, const std::string& device) const {
    const auto& counts = e.ops_per_device();
    auto it = counts.find(device);
    return it == counts.end() ? 0 : it->second;
  }

  std::string plugin_;
  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* dev_ = nullptr;
  hal::Device* ref_ = nullptr;
};

TEST_F(DeviceModelTest, Stories260KRunsEntirelyOnTheDevice) {
  const std::string models = Env("KESTREL_MODELS_DIR", "../shared/models");
  auto model = runtime::Model::Load(models + "/stories260K.gguf", dev_, {});
  ASSERT_TRUE(model.ok()) << model.status();
  const nlohmann::json golden = Golden("stories260K.golden.json");
  for (uint32_t block_size : {16u, 32u}) {
    SCOPED_TRACE("block_size " + std::to_string(block_size));
    auto session = RunCase(model->get(), golden["cases"][block_size == 16 ? 0 : 1], block_size, 40);
    ASSERT_NE(session, nullptr);
    const runtime::Executor& e = session->executor();
    EXPECT_GT(Count(e, dev_->name()), 0u) << "no op ran on " << dev_->name();
    EXPECT_EQ(Count(e, "ref"), 0u) << "some ops fell back to the reference plugin";
  }
}

TEST_F(DeviceModelTest, TinyMoeRunsOnTheDeviceExceptUnclaimedMoe) {
  const bool claims_moe = Env("KESTREL_TEST_DEVICE_MOE", "0") == "1";
  const std::string models = Env("KESTREL_MODELS_DIR", "../shared/models");
  auto model = runtime::Model::Load(models + "/tiny-moe-f32.gguf", dev_, {});
  ASSERT_TRUE(model.ok()) << model.status();
  const nlohmann::json golden = Golden("tiny-moe-f32.golden.json");
  const uint32_t n = 16;
  auto session = RunCase(model->get(), golden["cases"][0], 16, n);
  ASSERT_NE(session, nullptr);
  const runtime::Executor& e = session->executor();
  uint64_t moe_ops = 0;
  for (const runtime::PlanOp& op : e.plan().ops) moe_ops += op.kind == KESTREL_OP_MOE;
  ASSERT_GT(moe_ops, 0u);
  // One prefill step, then one step per generated token but the last (sampled, never decoded).
  const uint64_t steps = n;
  EXPECT_EQ(Count(e, dev_->name()) + Count(e, "ref"), e.plan().ops.size() * steps);
  EXPECT_EQ(Count(e, "ref"), claims_moe ? 0u : moe_ops * steps)
      << (claims_moe ? "the device claims MOE (KESTREL_TEST_DEVICE_MOE=1) but ops ran on ref"
                     : "ops other than MOE fell back to the reference plugin");
}

}  // namespace
}  // namespace kestrel::device_tests
