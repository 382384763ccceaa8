// Fault injection through a plugin: the `faulty` test plugin (tests/plugins/faulty_plugin.cc, the
// reference kernels behind a table that fails the Nth buffer allocation, copy, op or stream wait)
// runs stories260K. Every injected failure must come back as a status that names the op and the
// device; a session that saw one must give, on its next generate, the same ids as a fresh session
// (llama.cpp's golden ids); an engine must fail only the requests of the failing step and serve
// the rest. CI also runs this under ASan + LeakSanitizer: the failure paths must not leak.
#include <fstream>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "nlohmann/json.hpp"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"
#include "runtime/session/session.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

class FaultInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = hal::PluginRegistry::Create(
        PluginDir() + "/libkestrel_plugin_ref.so:" + KESTREL_FAULTY_PLUGIN, nullptr);
    auto dev = registry_->FindDevice("faulty");
    ASSERT_TRUE(dev.ok()) << dev.status();
    dev_ = *dev;
    ref_ = registry_->ReferenceDevice();
    ASSERT_NE(ref_, nullptr);
    auto model = runtime::Model::Load(ModelPath("stories260K.gguf"), dev_, {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    std::ifstream f(ModelPath("stories260K.golden.json"));
    golden_ = nlohmann::json::parse(f);
  }
  void TearDown() override {
    if (dev_ != nullptr) Arm("none", 1);
  }

  void Arm(const std::string& fail, uint64_t at, uint64_t count = 1) {
    absl::Status s = dev_->SetOptions(
        {{"fail", fail}, {"at", std::to_string(at)}, {"count", std::to_string(count)}});
    ASSERT_TRUE(s.ok()) << s;
  }

  std::vector<int32_t> Prompt(int c) const { return golden_["cases"][c]["prompt_ids"]; }
  std::vector<int32_t> Want(int c, size_t n) const {
    std::vector<int32_t> ids = golden_["cases"][c]["generated_ids"];
    ids.resize(std::min(n, ids.size()));
    return ids;
  }

  std::unique_ptr<runtime::Session> NewSession() {
    runtime::SessionConfig config;
    config.context_length = 128;
    config.sampler.temperature = 0.0f;
    auto s = runtime::Session::Create(model_.get(), ref_, config);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  absl::StatusOr<runtime::GenerateResult> Generate(runtime::Session& s, int c, uint32_t n) {
    runtime::GenerateRequest req;
    req.prompt = Prompt(c);
    req.max_new_tokens = n;
    return s.Generate(req);
  }

  // The status of an injected failure: the right code, and it names the op, the device and the
  // failing slot.
  static void ExpectNamed(const absl::Status& s, absl::StatusCode code, const std::string& slot) {
    EXPECT_EQ(s.code(), code) << s;
    const std::string m(s.message());
    EXPECT_NE(m.find("injected failure"), std::string::npos) << m;
    EXPECT_NE(m.find("op '"), std::string::npos) << "no op named: " << m;
    EXPECT_NE(m.find("device 'faulty'"), std::string::npos) << "no device named: " << m;
    EXPECT_NE(m.find(slot), std::string::npos) << "no slot '" << slot << "' named: " << m;
  }

  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* dev_ = nullptr;
  hal::Device* ref_ = nullptr;
  std::unique_ptr<runtime::Model> model_;
  nlohmann::json golden_;
};

TEST_F(FaultInjectionTest, WithoutAFaultTheDeviceIsTheReference) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  auto r = Generate(*s, 0, 24);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tokens, Want(0, 24));
  EXPECT_EQ(s->executor().ops_per_device().count("ref"), 0u);  // every op on `faulty`
}

TEST_F(FaultInjectionTest, EachFaultIsANamedStatusAndTheSessionRecovers) {
  struct Case {
    const char* fail;
    uint64_t at;
    absl::StatusCode code;
    const char* slot;
  };
  // Call numbers inside one 24-token generate: the first call, and later ones in the prefill and
  // in decode steps (about 60 ops, 8 copies and 8 waits per step).
  const Case cases[] = {
      {"alloc", 1, absl::StatusCode::kResourceExhausted, "buffer_alloc"},
      {"alloc", 12, absl::StatusCode::kResourceExhausted, "buffer_alloc"},
      {"copy", 1, absl::StatusCode::kUnavailable, "buffer_write"},
      {"copy", 8, absl::StatusCode::kUnavailable, "buffer_"},
      {"copy", 61, absl::StatusCode::kUnavailable, "buffer_"},
      {"op", 1, absl::StatusCode::kUnavailable, "op_execute"},
      {"op", 37, absl::StatusCode::kUnavailable, "op_execute"},
      {"op", 700, absl::StatusCode::kUnavailable, "op_execute"},
      {"wait", 1, absl::StatusCode::kUnavailable, "stream_synchronize"},
      {"wait", 50, absl::StatusCode::kUnavailable, "stream_synchronize"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string("fail=") + c.fail + " at=" + std::to_string(c.at));
    auto s = NewSession();
    ASSERT_NE(s, nullptr);
    Arm(c.fail, c.at);
    auto failed = Generate(*s, 0, 24);
    ASSERT_FALSE(failed.ok()) << "no failure injected: call " << c.at << " is never reached";
    ExpectNamed(failed.status(), c.code, c.slot);
    // The fault was one call: the same session now generates exactly what a fresh one does.
    auto again = Generate(*s, 0, 24);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->tokens, Want(0, 24));
    // And keeps doing so on another prompt.
    auto other = Generate(*s, 1, 16);
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_EQ(other->tokens, Want(1, 16));
  }
}

TEST_F(FaultInjectionTest, DecodeFailureLeavesTheContextUnchanged) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  const std::vector<int32_t> prompt = Prompt(0);
  ASSERT_TRUE(s->Decode(prompt).ok());
  const std::vector<float> logits = s->logits();
  Arm("op", 3);
  const int32_t next = 100;
  absl::Status st = s->Decode(absl::MakeConstSpan(&next, 1));
  ExpectNamed(st, absl::StatusCode::kUnavailable, "op_execute");
  EXPECT_EQ(s->n_tokens(), prompt.size());
  // Truncating to one token less and decoding the last prompt token again gives the same logits.
  ASSERT_TRUE(s->Truncate(static_cast<uint32_t>(prompt.size() - 1)).ok());
  ASSERT_TRUE(s->Decode(absl::MakeConstSpan(&prompt.back(), 1)).ok());
  EXPECT_EQ(s->logits(), logits);
}

TEST_F(FaultInjectionTest, EngineFailsOnlyTheRequestsOfTheFailingStep) {
  runtime::EngineConfig config;
  config.block_size = 16;
  config.max_sequences = 2;  // A and B run; C waits
  config.max_batch_tokens = 64;
  config.context_length = 128;
  config.prefix_cache = false;
  auto engine = runtime::Engine::Create(model_.get(), ref_, config);
  ASSERT_TRUE(engine.ok()) << engine.status();
  runtime::Engine& e = **engine;
  auto submit = [&](int c) {
    runtime::EngineRequest r;
    r.prompt = Prompt(c);
    r.max_new_tokens = 24;
    r.sampler.temperature = 0.0f;
    auto id = e.Submit(std::move(r));
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : 0;
  };
  const uint64_t a = submit(0), b = submit(1), c = submit(2);
  uint32_t active = 0;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e.Step(&active).ok());
  Arm("op", 5);  // in the next step, which runs A and B
  int failed_steps = 0;
  for (int i = 0; i < 500 && active > 0; ++i) {
    if (!e.Step(&active).ok()) ++failed_steps;
  }
  EXPECT_EQ(active, 0u);
  EXPECT_EQ(failed_steps, 1);
  for (uint64_t id : {a, b}) {
    auto r = e.Result(id);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->state, runtime::RequestState::kFailed);
    ExpectNamed(r->status, absl::StatusCode::kUnavailable, "op_execute");
  }
  auto rc = e.Result(c);
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->state, runtime::RequestState::kFinished) << rc->status;
  EXPECT_EQ(rc->samples[0].tokens, Want(2, 24));
  // The engine keeps serving: a new request equals llama.cpp's ids, and no block is held.
  const uint64_t d = submit(3);
  ASSERT_TRUE(e.Wait(d, -1).ok());
  auto rd = e.Result(d);
  ASSERT_TRUE(rd.ok());
  EXPECT_EQ(rd->samples[0].tokens, Want(3, 24));
  const runtime::EngineStats st = e.Stats();
  EXPECT_EQ(st.n_running + st.n_waiting, 0u);
  EXPECT_EQ(st.kv_blocks_used, 0u);
}

TEST_F(FaultInjectionTest, EngineSurvivesEveryKindOfFault) {
  for (const char* fail : {"alloc", "copy", "op", "wait"}) {
    SCOPED_TRACE(std::string("fail=") + fail);
    runtime::EngineConfig config;
    config.block_size = 16;
    config.context_length = 128;
    auto engine = runtime::Engine::Create(model_.get(), ref_, config);
    ASSERT_TRUE(engine.ok()) << engine.status();
    runtime::Engine& e = **engine;
    Arm(fail, 2);
    std::vector<uint64_t> ids;
    for (int c = 0; c < 4; ++c) {
      runtime::EngineRequest r;
      r.prompt = Prompt(c);
      r.max_new_tokens = 16;
      r.sampler.temperature = 0.0f;
      auto id = e.Submit(std::move(r));
      ASSERT_TRUE(id.ok()) << id.status();
      ids.push_back(*id);
    }
    (void)e.Wait(0, -1);
    int failed = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto r = e.Result(ids[i]);
      ASSERT_TRUE(r.ok());
      if (r->state == runtime::RequestState::kFailed) {
        ++failed;
        EXPECT_NE(std::string(r->status.message()).find("device 'faulty'"), std::string::npos)
            << r->status;
      } else {
        EXPECT_EQ(r->state, runtime::RequestState::kFinished) << r->status;
        EXPECT_EQ(r->samples[0].tokens, Want(static_cast<int>(i), 16));
      }
    }
    EXPECT_GT(failed, 0) << "no request saw the fault";
    EXPECT_EQ(e.Stats().n_running + e.Stats().n_waiting, 0u);
  }
}

}  // namespace
}  // namespace kestrel::testing
