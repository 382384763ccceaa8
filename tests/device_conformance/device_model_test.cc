// stories260K end to end on one device plugin's device with the reference plugin loaded as the
// fallback: the generated tokens equal llama.cpp's (shared golden file) for prefill + decode with
// block sizes 16 and 32, and every op of every step ran on that device (no op fell back to ref).
// The plugin is $KESTREL_TEST_DEVICE ("opencl", "cuda"), its name in messages
// $KESTREL_TEST_DEVICE_NAME ("OpenCL", "CUDA"); built and registered once per plugin
// (opencl_model_test, cuda_model_test: kestrel_add_device_plugin_tests). Skipped, saying
// "no <name> device: <reason>", when the plugin has no device.
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

TEST(DeviceModelTest, Stories260KRunsEntirelyOnTheDevice) {
  const std::string plugin = Env("KESTREL_TEST_DEVICE", "");
  ASSERT_FALSE(plugin.empty()) << "KESTREL_TEST_DEVICE (the plugin under test) is not set";
  const std::string name = Env("KESTREL_TEST_DEVICE_NAME", plugin.c_str());
  const std::string dir = Env("KESTREL_PLUGIN_DIR", "");
  auto registry = hal::PluginRegistry::Create(
      dir + "/libkestrel_plugin_ref.so:" + dir + "/libkestrel_plugin_" + plugin + ".so", nullptr);
  auto dev = registry->FindDevice(plugin);
  if (!dev.ok()) {
    std::string why(dev.status().message());
    for (const auto& p : registry->plugins()) {
      if (p.name == plugin) why = p.skip_reason;
    }
    GTEST_SKIP() << "no " << name << " device: " << why;
  }
  hal::Device* ref = registry->ReferenceDevice();
  ASSERT_NE(ref, nullptr);

  const std::string models = Env("KESTREL_MODELS_DIR", "../shared/models");
  auto model = runtime::Model::Load(models + "/stories260K.gguf", *dev, {});
  ASSERT_TRUE(model.ok()) << model.status();
  std::ifstream f(models + "/stories260K.golden.json");
  const nlohmann::json golden = nlohmann::json::parse(f);

  for (uint32_t block_size : {16u, 32u}) {
    SCOPED_TRACE("block_size " + std::to_string(block_size));
    runtime::SessionConfig config;
    config.context_length = 128;
    config.block_size = block_size;
    config.sampler.temperature = 0.0f;
    auto session = runtime::Session::Create(model->get(), ref, config);
    ASSERT_TRUE(session.ok()) << session.status();
    const auto& c = golden["cases"][block_size == 16 ? 0 : 1];
    runtime::GenerateRequest req;
    req.prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    req.max_new_tokens = 40;
    auto result = (*session)->Generate(req);
    ASSERT_TRUE(result.ok()) << result.status();
    std::vector<int32_t> want = c["generated_ids"].get<std::vector<int32_t>>();
    want.resize(std::min<size_t>(want.size(), 40));
    EXPECT_EQ(result->tokens, want);

    const auto& counts = (*session)->executor().ops_per_device();
    ASSERT_EQ(counts.count((*dev)->name()), 1u);
    EXPECT_GT(counts.at((*dev)->name()), 0u);
    EXPECT_EQ(counts.count("ref") ? counts.at("ref") : 0u, 0u)
        << "some ops fell back to the reference plugin";
  }
}

}  // namespace
}  // namespace kestrel::device_tests
