// Concurrency through the public C API (ctest label `concurrency`; scripts/test.sh runs this
// label under ThreadSanitizer, the `tsan` preset): an engine served from many submitting threads
// while others read its stats, cancels from other threads (engine requests and a running session
// generate), two runtimes in one process generating at once and destroyed in either order, and
// plugin loading from several threads at once. Every result is also checked against a run alone,
// so a race that corrupts output fails here even without a sanitizer.
//
// The device is KESTREL_TEST_DEVICE (default "cpu": its thread pool runs the ops, so TSan sees
// the plugin's own threads too), the model stories260K.
#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

std::string Device() {
  const char* d = std::getenv("KESTREL_TEST_DEVICE");
  return d != nullptr && *d != '\0' ? d : "cpu";
}

nlohmann::json Golden() {
  std::ifstream f(ModelPath("stories260K.golden.json"));
  return nlohmann::json::parse(f);
}

std::vector<int32_t> GoldenIds(const nlohmann::json& c, size_t n) {
  std::vector<int32_t> ids = c["generated_ids"];
  ids.resize(std::min(ids.size(), n));
  return ids;
}

std::vector<int32_t> Generate(kestrel_model_t* model, const std::string& prompt, uint32_t n) {
  SessionPtr s = MakeGreedySession(model, 128);
  Collected got;
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = n;
  g.on_token = &Collected::OnToken;
  g.user_data = &got;
  KESTREL_EXPECT_OK(kestrel_session_generate(s.get(), prompt.data(), prompt.size(), &g, nullptr));
  return got.tokens;
}

class ConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), Device(), &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    golden_ = Golden();
  }

  EnginePtr MakeEngine() {
    kestrel_engine_options_t o;
    kestrel_engine_options_init(&o);
    o.context_length = 128;
    o.max_batch_tokens = 64;
    o.max_sequences = 8;
    kestrel_engine_t* e = nullptr;
    StatusPtr st(kestrel_engine_create(model_.get(), &o, &e));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    return EnginePtr(e);
  }

  kestrel_request_id_t Submit(kestrel_engine_t* e, const std::string& prompt, uint32_t n) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = 0;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = n;
    ro.sampler = &so;
    kestrel_request_id_t id = 0;
    KESTREL_EXPECT_OK(kestrel_engine_submit(e, prompt.data(), prompt.size(), &ro, &id));
    return id;
  }

  static std::vector<int32_t> Tokens(kestrel_engine_t* e, kestrel_request_id_t id) {
    size_t n = 0;
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e, id, 0, nullptr, 0, &n));
    std::vector<int32_t> ids(n);
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e, id, 0, ids.data(), n, &n));
    return ids;
  }

  RuntimePtr rt_;
  ModelPtr model_;
  nlohmann::json golden_;
};

TEST_F(ConcurrencyTest, EngineServesSubmittingThreadsWhileOthersReadStats) {
  EnginePtr e = MakeEngine();
  KESTREL_ASSERT_OK(kestrel_engine_start(e.get()));
  constexpr int kThreads = 4, kPerThread = 3;
  constexpr uint32_t kTokens = 16;
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  std::thread stats([&] {
    while (!done.load()) {
      kestrel_engine_stats_t st{};
      st.struct_size = sizeof(st);
      StatusPtr s(kestrel_engine_get_stats(e.get(), &st));
      if (s != nullptr || st.kv_blocks_used > st.kv_blocks_total) ++failures;
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const auto& c = golden_["cases"][(t * kPerThread + i) % golden_["cases"].size()];
        kestrel_request_id_t id = Submit(e.get(), c["prompt"], kTokens);
        StatusPtr w(kestrel_engine_wait(e.get(), id, 120000));
        if (w != nullptr || Tokens(e.get(), id) != GoldenIds(c, kTokens)) ++failures;
        StatusPtr r(kestrel_engine_release_request(e.get(), id));
        if (r != nullptr) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  stats.join();
  EXPECT_EQ(failures.load(), 0);
  kestrel_engine_stop(e.get());
}

TEST_F(ConcurrencyTest, CancelsFromOtherThreadsEndEveryRequest) {
  EnginePtr e = MakeEngine();
  KESTREL_ASSERT_OK(kestrel_engine_start(e.get()));
  const uint64_t seed = std::random_device{}();
  std::printf("ConcurrencyTest.Cancels: seed %llu\n", static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<kestrel_request_id_t> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(Submit(e.get(), golden_["cases"][i % 6]["prompt"], 60));
  std::vector<std::thread> cancellers;
  for (int t = 0; t < 2; ++t) {
    cancellers.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      for (size_t i = t; i < ids.size(); i += 2) {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
        if (rng() % 3 != 0) {
          StatusPtr c(kestrel_engine_cancel(e.get(), ids[i]));
          EXPECT_EQ(c, nullptr) << kestrel_status_message(c.get());
        }
      }
    });
  }
  for (auto& t : cancellers) t.join();
  for (kestrel_request_id_t id : ids) {
    StatusPtr w(kestrel_engine_wait(e.get(), id, 120000));
    const kestrel_status_code_t code = kestrel_status_code(w.get());
    EXPECT_TRUE(code == KESTREL_STATUS_OK || code == KESTREL_STATUS_CANCELLED)
        << kestrel_status_message(w.get());
  }
  // Request counts are current (engine.h) even while the step that ended the last request is
  // still running on the engine thread...
  kestrel_engine_stats_t st{};
  st.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_engine_get_stats(e.get(), &st));
  EXPECT_EQ(st.n_running + st.n_waiting, 0u);
  // ... the block counts are those at the end of the last step: stop (join) the thread first.
  kestrel_engine_stop(e.get());
  KESTREL_ASSERT_OK(kestrel_engine_get_stats(e.get(), &st));
  EXPECT_EQ(st.n_running + st.n_waiting, 0u);
  EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached);

  // A session's generate cancelled from another thread stops with CANCELLED and stays usable.
  SessionPtr s = MakeGreedySession(model_.get(), 128);
  // The first token's callback holds the generate until the other thread has cancelled.
  struct Ctx {
    std::atomic<bool> started{false}, cancelled{false};
  } ctx;
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 120;
  g.user_data = &ctx;
  g.on_token = [](void* u, int32_t, const char*, size_t) {
    auto* c = static_cast<Ctx*>(u);
    c->started = true;
    while (!c->cancelled.load()) std::this_thread::yield();
    return true;
  };
  std::thread canceller([&] {
    while (!ctx.started.load()) std::this_thread::yield();
    kestrel_session_cancel(s.get());
    ctx.cancelled = true;
  });
  StatusPtr r(kestrel_session_generate(s.get(), "Once", 4, &g, nullptr));
  canceller.join();
  EXPECT_EQ(kestrel_status_code(r.get()), KESTREL_STATUS_CANCELLED)
      << kestrel_status_message(r.get());
  const auto& c = golden_["cases"][0];
  EXPECT_EQ(Generate(model_.get(), c["prompt"], 12), GoldenIds(c, 12));
}

TEST(ConcurrencyRuntimeTest, TwoRuntimesGenerateAtOnceAndDestroyInEitherOrder) {
  const nlohmann::json golden = Golden();
  for (int round = 0; round < 2; ++round) {
    std::atomic<int> failures{0};
    auto worker = [&](int which) {
      RuntimePtr rt = MakeRuntime();
      ModelPtr model;
      StatusPtr s = LoadModel(rt.get(), ModelPath("stories260K.gguf"), Device(), &model);
      if (s != nullptr) {
        ++failures;
        return;
      }
      const auto& c = golden["cases"][which];
      if (Generate(model.get(), c["prompt"], 16) != GoldenIds(c, 16)) ++failures;
      // Round 0: each destroys its runtime before its model; round 1: model first.
      if (round == 0) rt.reset();
      model.reset();
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    EXPECT_EQ(failures.load(), 0) << "round " << round;
  }
}

TEST(ConcurrencyRuntimeTest, PluginsLoadFromSeveralThreadsAtOnce) {
  std::atomic<int> failures{0};
  std::atomic<size_t> devices{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 3; ++i) {
        RuntimePtr rt = MakeRuntime();
        if (rt == nullptr) {
          ++failures;
          continue;
        }
        const size_t n = kestrel_runtime_device_count(rt.get());
        if (n == 0) ++failures;
        devices = n;
        for (size_t d = 0; d < n; ++d) {
          kestrel_device_info_t info{};
          info.struct_size = sizeof(info);
          StatusPtr s(kestrel_runtime_device_info(rt.get(), d, &info));
          if (s != nullptr || info.name == nullptr) ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(devices.load(), 2u);  // ref and cpu at least
}

}  // namespace
}  // namespace kestrel::testing
