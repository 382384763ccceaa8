// Sliding-window layers in the memory plan and the engine's KV sizing (issue 12 leftovers), over
// gemma3-tiny (3 layers: 0 and 1 local with a window of 8, layer 2 global) on the reference
// plugin. The planner counts a window layer's KV as its window plus one step of up to a window in
// whole blocks (what sessions and the engine keep), not the whole context; a host budget of
// exactly the weights and that KV then plans nothing streamed, and an engine of the planned
// context and sequences fits it without re-planning. An engine whose kv_cache_bytes cannot hold the window pools of
// max_sequences sequences fails naming both numbers and what fits, and the max_sequences it
// names works. Label `offload`.
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"
#include "runtime/offload/memory_planner.h"
#include "tests/arch/arch_test_util.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

constexpr uint32_t kContext = 256, kSequences = 3;

class WindowKvPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = SynthModel("gemma3-tiny");
    registry_ = hal::PluginRegistry::Create(PluginDir() + "/libkestrel_plugin_ref.so", nullptr);
    ref_ = registry_->ReferenceDevice();
    ASSERT_NE(ref_, nullptr);
  }

  absl::StatusOr<std::unique_ptr<runtime::Model>> Load(const std::string& budget) {
    runtime::ModelLoadOptions o;
    o.memory_budgets = {budget};
    o.plan_context = kContext;
    o.plan_sequences = kSequences;
    return runtime::Model::Load(path_, ref_, o);
  }

  // K and V of one layer for one token (F32).
  static uint64_t LayerTokenBytes(const runtime::ModelConfig& c) {
    return uint64_t{2} * c.n_kv_heads * c.head_dim * 4;
  }

  std::string path_;
  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* ref_ = nullptr;
};

TEST_F(WindowKvPlanTest, WindowLayersCountTheirWindowNotTheContext) {
  auto m = Load("host=unlimited");
  ASSERT_TRUE(m.ok()) << m.status();
  const runtime::ModelConfig& c = (*m)->config();
  ASSERT_EQ(c.n_layers, 3u);
  ASSERT_EQ(c.layers[0].sliding_window, 8u);
  ASSERT_EQ(c.layers[1].sliding_window, 8u);
  ASSERT_EQ(c.layers[2].sliding_window, 0u);
  const runtime::offload::MemoryPlan& p = *(*m)->memory_plan();
  // Window 8, steps of up to 8: positions [n - 7, n + 8) span at most 2 blocks of 16 = 32 tokens
  // per window layer and sequence; the global layer keeps all 256.
  const uint64_t want = LayerTokenBytes(c) * (kContext + 32 + 32) * kSequences;
  EXPECT_EQ(p.kv_bytes, want);
  EXPECT_LT(p.kv_bytes, LayerTokenBytes(c) * 3 * kContext * kSequences);  // the old figure
  EXPECT_EQ(p.kv_tokens, kContext * kSequences);

  // A budget of exactly the weights and that KV: nothing streamed, and an engine of the planned
  // context and sequences (the sessions' 16-token blocks) fits it without re-planning.
  const uint64_t exact = p.resident_bytes + p.kv_bytes;
  m->reset();
  auto b = Load("host=" + std::to_string(exact));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->memory_plan()->streamed_layers.empty());
  EXPECT_EQ((*b)->memory_plan()->device_total_bytes(), exact);
  runtime::EngineConfig ec;
  ec.context_length = kContext;
  ec.block_size = 16;
  ec.max_sequences = kSequences;
  auto e = runtime::Engine::Create(b->get(), nullptr, ec);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*b)->memory_plan()->kv_bytes, want);
  EXPECT_TRUE((*b)->memory_plan()->streamed_layers.empty());
}

TEST_F(WindowKvPlanTest, EngineTooSmallForItsSequencesNamesBothNumbers) {
  auto m = runtime::Model::Load(path_, ref_, {});
  ASSERT_TRUE(m.ok()) << m.status();
  const uint64_t lb = LayerTokenBytes((*m)->config());
  // Blocks of 4: a window layer keeps 5 blocks (20 tokens) per sequence; the global layer's block
  // is 4 tokens of one layer.
  const uint64_t per_seq = 2 * 5 * 4 * lb, block = 4 * lb;
  runtime::EngineConfig ec;
  ec.context_length = kContext;
  ec.block_size = 4;
  ec.max_sequences = 64;
  ec.kv_cache_bytes = 10 * per_seq + block;  // room for 10 sequences' windows and one block
  auto e = runtime::Engine::Create(m->get(), nullptr, ec);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(e.status().message());
  EXPECT_NE(msg.find("kv_cache_bytes = " + std::to_string(ec.kv_cache_bytes)), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("max_sequences = 64"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(per_seq) + " bytes per sequence"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at least " + std::to_string(64 * per_seq + block)), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("max_sequences to at most 10"), std::string::npos) << msg;
  // What it names works.
  ec.max_sequences = 10;
  auto ok = runtime::Engine::Create(m->get(), nullptr, ec);
  ASSERT_TRUE(ok.ok()) << ok.status();
}

}  // namespace
}  // namespace kestrel::testing
