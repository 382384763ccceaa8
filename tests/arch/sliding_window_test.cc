// Sliding-window KV memory (issue 12): a Session over gemma3-tiny (window 8 on layers 0 and 1,
// layer 2 global) keeps its local layers' KV in a pool of its own that stops growing at the
// window, while the global layer's table grows with the context. A prompt 5x longer than the
// window (prefilled in window-sized steps) and 40 decode steps give the logits of the float64
// reference (which keeps every position and masks by the window) on ref, and greedy ids equal.
// Truncation inside the kept window works; below it the session refuses with a message.
#include <cmath>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/model/model.h"
#include "runtime/session/session.h"
#include "tests/arch/arch_test_util.h"
#include "tests/arch/reference_forward.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

class SlidingWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = SynthModel("gemma3-tiny");
    registry_ = hal::PluginRegistry::Create(PluginDir() + "/libkestrel_plugin_ref.so", nullptr);
    ref_ = registry_->ReferenceDevice();
    ASSERT_NE(ref_, nullptr);
    auto m = runtime::Model::Load(path_, ref_, {});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    ASSERT_EQ(model_->config().layers[0].sliding_window, 8u);
    ASSERT_EQ(model_->config().layers[2].sliding_window, 0u);
  }

  std::unique_ptr<runtime::Session> MakeSession(uint32_t context, uint32_t block_size) {
    runtime::SessionConfig c;
    c.context_length = context;
    c.block_size = block_size;
    c.sampler.temperature = 0.0f;
    auto s = runtime::Session::Create(model_.get(), nullptr, c);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::string path_;
  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* ref_ = nullptr;
  std::unique_ptr<runtime::Model> model_;
};

TEST_F(SlidingWindowTest, CappedLocalKvGivesTheUncappedReferenceLogits) {
  constexpr uint32_t kBlock = 4, kContext = 128;
  std::unique_ptr<runtime::Session> session = MakeSession(kContext, kBlock);
  ASSERT_NE(session, nullptr);
  // window 8, steps of at most 8: positions [n - 7, n + 8) in at most 5 blocks of 4.
  const uint32_t cap = 5;
  ASSERT_EQ(session->kv_blocks_held().size(), 2u) << "the local layers have no KV group";
  auto file = runtime::GgufFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  auto reference = ReferenceForward::Create(**file, kContext);
  ASSERT_TRUE(reference.ok()) << reference.status();

  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 37 + 5) % 500);
  std::vector<double> want;
  for (int32_t t : prompt) want = reference->Step(t);
  ASSERT_TRUE(session->Decode(prompt).ok());
  uint32_t max_local = 0;
  for (int step = 0; step < 40; ++step) {
    const double err = RelL2(session->logits(), want);
    EXPECT_LE(err, 1e-5) << "step " << step;
    const int32_t next = ArgMax(want);
    ASSERT_EQ(ArgMax(session->logits()), next) << "step " << step << " (logit error " << err << ")";
    const std::vector<uint32_t> held = session->kv_blocks_held();
    EXPECT_EQ(held[0], (session->n_tokens() + kBlock - 1) / kBlock) << "global layer, step " << step;
    EXPECT_LE(held[1], cap) << "local layers, step " << step;
    max_local = std::max(max_local, held[1]);
    want = reference->Step(next);
    ASSERT_TRUE(session->Decode({&next, 1}).ok());
  }
  // 80 positions: the global table holds 20 blocks, the local pool never more than the window's.
  EXPECT_EQ(session->kv_blocks_held()[0], 20u);
  EXPECT_LE(max_local, cap);
  EXPECT_GE(max_local, 3u);
}

TEST_F(SlidingWindowTest, TruncateWithinTheKeptWindowOnly) {
  std::unique_ptr<runtime::Session> session = MakeSession(128, 4);
  ASSERT_NE(session, nullptr);
  std::vector<int32_t> prompt(30);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(3 + i * 11);
  ASSERT_TRUE(session->Decode(prompt).ok());  // steps of 8: the last began at 24
  const std::vector<float> at30 = session->logits();
  // Back two tokens (inside what the last step kept) and forward again: the same logits.
  ASSERT_TRUE(session->Truncate(28).ok());
  ASSERT_TRUE(session->Decode({prompt.data() + 28, 2}).ok());
  EXPECT_EQ(session->logits(), at30);
  // Far back: the local layers dropped that KV.
  const absl::Status s = session->Truncate(5);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("sliding-window"), std::string::npos) << s;
  EXPECT_EQ(session->n_tokens(), 30u);
  // To 0 always works, and the context starts over.
  ASSERT_TRUE(session->Truncate(0).ok());
  ASSERT_TRUE(session->Decode(prompt).ok());
  EXPECT_EQ(session->logits(), at30);
}

TEST_F(SlidingWindowTest, ShortContextsKeepEveryLayerInOnePool) {
  // A context of 8 tokens needs no more blocks than the window would: no separate group.
  std::unique_ptr<runtime::Session> session = MakeSession(8, 4);
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(session->kv_blocks_held().size(), 1u);
}

}  // namespace
}  // namespace kestrel::testing
