// The engine's prompt cache survives a restart (ctest label kpkg): an engine serves a prompt,
// saves its prefix cache, is destroyed; a new engine loads the file and serves the same prompt
// from the cache (n_cached_prompt_tokens > 0) with the same tokens as the cold run. A file of
// another model, another block size, or a damaged one is refused and loads nothing.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

EnginePtr MakeEngine(kestrel_model_t* model, uint32_t block_size = 16) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  o.kv_block_size = block_size;
  o.context_length = 128;
  o.max_sequences = 4;
  kestrel_engine_t* e = nullptr;
  StatusPtr st(kestrel_engine_create(model, &o, &e));
  EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  return EnginePtr(e);
}

// Runs one greedy request to the end: its tokens and how many prompt tokens came from the cache.
std::pair<std::vector<int32_t>, uint32_t> Serve(kestrel_engine_t* e, const std::vector<int32_t>& prompt) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0;
  kestrel_engine_request_options_t o;
  kestrel_engine_request_options_init(&o);
  o.max_new_tokens = 16;
  o.sampler = &so;
  kestrel_request_id_t id = 0;
  StatusPtr st(kestrel_engine_submit_tokens(e, prompt.data(), prompt.size(), &o, &id));
  EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  st.reset(kestrel_engine_wait(e, id, -1));
  EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  size_t n = 0;
  st.reset(kestrel_engine_request_tokens(e, id, 0, nullptr, 0, &n));
  std::vector<int32_t> tokens(n);
  st.reset(kestrel_engine_request_tokens(e, id, 0, tokens.data(), n, &n));
  kestrel_engine_result_t r{};
  r.struct_size = sizeof r;
  st.reset(kestrel_engine_request_result(e, id, 0, &r));
  EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  return {tokens, r.n_cached_prompt_tokens};
}

std::string Temp(const std::string& name) {
  return ::testing::TempDir() + "/kpkg_prefix_" + std::to_string(::getpid()) + "_" + name;
}

TEST(EnginePrefixCacheFileTest, WarmCacheAfterRestart) {
  RuntimePtr rt = MakeRuntime();
  ModelPtr model;
  StatusPtr s = LoadModel(rt.get(), ModelPath("stories260K.gguf"), "cpu", &model);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  std::vector<int32_t> prompt = {1};
  for (int i = 0; i < 50; ++i) prompt.push_back(300 + (i * 37) % 200);
  const std::string path = Temp("cache.kprefix");
  std::vector<int32_t> cold;
  {
    EnginePtr e = MakeEngine(model.get());
    auto [tokens, cached] = Serve(e.get(), prompt);
    EXPECT_EQ(cached, 0u);
    cold = tokens;
    KESTREL_ASSERT_OK(kestrel_engine_save_prefix_cache(e.get(), path.c_str()));
  }
  EnginePtr warm = MakeEngine(model.get());
  uint32_t loaded = 0;
  KESTREL_ASSERT_OK(kestrel_engine_load_prefix_cache(warm.get(), path.c_str(), &loaded));
  EXPECT_GE(loaded, 3u);  // the 50-token prompt's 3 full blocks of 16 (and generated ones)
  auto [tokens, cached] = Serve(warm.get(), prompt);
  EXPECT_EQ(cached, 48u);
  EXPECT_EQ(tokens, cold);

  // Another block size, another model, a damaged file: refused, nothing loaded.
  EnginePtr other_bs = MakeEngine(model.get(), 8);
  StatusPtr st(kestrel_engine_load_prefix_cache(other_bs.get(), path.c_str(), nullptr));
  ASSERT_NE(st, nullptr);
  EXPECT_NE(std::string(kestrel_status_message(st.get())).find("block size"), std::string::npos)
      << kestrel_status_message(st.get());
  ModelPtr moe;
  s = LoadModel(rt.get(), ModelPath("tiny-moe-f32.gguf"), "cpu", &moe);
  ASSERT_EQ(s, nullptr);
  EnginePtr other_model = MakeEngine(moe.get());
  st.reset(kestrel_engine_load_prefix_cache(other_model.get(), path.c_str(), nullptr));
  ASSERT_NE(st, nullptr);
  EXPECT_NE(std::string(kestrel_status_message(st.get())).find("fingerprint"), std::string::npos)
      << kestrel_status_message(st.get());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (size_t at : {size_t{10}, size_t{100}, bytes.size() - 3}) {
    std::string b = bytes;
    b[at] ^= 0x20;
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(b.data(), static_cast<std::streamsize>(b.size()));
    EnginePtr e = MakeEngine(model.get());
    st.reset(kestrel_engine_load_prefix_cache(e.get(), path.c_str(), nullptr));
    ASSERT_NE(st, nullptr) << "flip at " << at;
    EXPECT_EQ(kestrel_status_code(st.get()), KESTREL_STATUS_DATA_LOSS) << kestrel_status_message(st.get());
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kestrel::testing
