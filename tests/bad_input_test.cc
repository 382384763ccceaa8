// Bad input through the public C API: broken files, bad metadata, bad prompts, bad options and
// bad ids each give a status with a clear message, and nothing crashes (CI also runs this under
// ASan + UBSan).
#include <cstring>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <thread>

#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"
#include "tests/test_util.h"
#include "tests/temp_dir.h"

namespace kestrel::testing {
namespace {

std::string TempPath(const std::string& name) { return TestTempDir().File("bad_input_" + name); }

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Copies stories260K with edits: keys dropped or replaced, tensors dropped or retyped.
struct Edit {
  std::string drop_key;
  std::string drop_tensor;
  std::function<void(runtime::GgufWriter&)> extra_kv;
  std::string retype_tensor;  // declared as Q8_1 (Kestrel cannot compute with it), same dims, zeros
};

std::string WriteEdited(const std::string& name, const Edit& e) {
  auto src = runtime::GgufFile::Open(ModelPath("stories260K.gguf"));
  EXPECT_TRUE(src.ok()) << src.status();
  runtime::GgufWriter w;
  for (const auto& kv : (*src)->metadata()) {
    if (kv.key == e.drop_key || kv.key == "general.alignment") continue;
    EXPECT_TRUE(w.AddKv(kv.key, kv.value).ok());
  }
  if (e.extra_kv) e.extra_kv(w);
  std::vector<const runtime::GgufTensorInfo*> kept;
  for (const auto& t : (*src)->tensors()) {
    if (t.name == e.drop_tensor) continue;
    runtime::GgmlType type = t.name == e.retype_tensor ? runtime::GgmlType::Q8_1 : t.type;
    EXPECT_TRUE(w.AddTensor(t.name, type, t.dims).ok());
    kept.push_back(&t);
  }
  const std::string path = TempPath(name);
  EXPECT_TRUE(w.OpenFile(path).ok());
  for (size_t i = 0; i < kept.size(); ++i) {
    const auto& info = w.tensors()[i];
    if (kept[i]->name == e.retype_tensor) {
      std::vector<uint8_t> zeros(info.size_bytes, 0);
      EXPECT_TRUE(w.WriteTensor(info.name, zeros.data(), zeros.size()).ok());
    } else {
      EXPECT_TRUE(w.WriteTensor(info.name, (*src)->TensorData(*kept[i]), kept[i]->size_bytes).ok());
    }
  }
  EXPECT_TRUE(w.Close().ok());
  return path;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override { rt_ = MakeRuntime(); }
  // Loads `path` and expects `code` with every `needles` substring in the message.
  void ExpectLoadFails(const std::string& path, kestrel_status_code_t code,
                       std::vector<std::string> needles) {
    for (bool mmap : {true, false}) {
      ModelPtr m;
      StatusPtr s = LoadModel(rt_.get(), path, TestDevice(), &m, mmap);
      ASSERT_NE(s, nullptr) << path << " loaded but should not";
      EXPECT_EQ(m, nullptr);
      EXPECT_EQ(kestrel_status_code(s.get()), code)
          << kestrel_status_code_name(kestrel_status_code(s.get())) << ": " << kestrel_status_message(s.get());
      for (const std::string& n : needles) {
        EXPECT_NE(std::string(kestrel_status_message(s.get())).find(n), std::string::npos)
            << "message '" << kestrel_status_message(s.get()) << "' lacks '" << n << "'";
      }
    }
  }
  RuntimePtr rt_;
};

TEST_F(BadInputTest, MissingAndEmptyFiles) {
  ExpectLoadFails("/nonexistent/model.gguf", KESTREL_STATUS_NOT_FOUND, {"/nonexistent/model.gguf"});
  const std::string empty = TempPath("empty.gguf");
  WriteAll(empty, "");
  ExpectLoadFails(empty, KESTREL_STATUS_DATA_LOSS, {empty});
  std::remove(empty.c_str());
}

TEST_F(BadInputTest, WrongMagicAndVersion) {
  std::string bytes = ReadAll(ModelPath("stories260K.gguf"));
  const std::string path = TempPath("magic.gguf");
  std::string bad = bytes;
  bad[0] = 'X';
  WriteAll(path, bad);
  ExpectLoadFails(path, KESTREL_STATUS_INVALID_ARGUMENT, {"magic"});
  bad = bytes;
  bad[4] = 9;  // version 9
  WriteAll(path, bad);
  ExpectLoadFails(path, KESTREL_STATUS_UNIMPLEMENTED, {"version 9"});
  std::remove(path.c_str());
}

TEST_F(BadInputTest, TruncationAtSeveralPoints) {
  const std::string bytes = ReadAll(ModelPath("stories260K.gguf"));
  const std::string path = TempPath("trunc.gguf");
  for (size_t cut : {size_t{3}, size_t{10}, size_t{24}, size_t{100}, size_t{1000}, size_t{5000},
                     bytes.size() / 2, bytes.size() - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    WriteAll(path, bytes.substr(0, cut));
    ModelPtr m;
    StatusPtr s = LoadModel(rt_.get(), path, TestDevice(), &m);
    ASSERT_NE(s, nullptr);
    const kestrel_status_code_t code = kestrel_status_code(s.get());
    EXPECT_TRUE(code == KESTREL_STATUS_DATA_LOSS || code == KESTREL_STATUS_INVALID_ARGUMENT)
        << kestrel_status_message(s.get());
  }
  std::remove(path.c_str());
}

TEST_F(BadInputTest, MissingRequiredMetadataNamesTheKey) {
  const std::string path = WriteEdited("nokey.gguf", {"llama.block_count", "", nullptr, ""});
  ExpectLoadFails(path, KESTREL_STATUS_NOT_FOUND, {"llama.block_count"});
  std::remove(path.c_str());
}

TEST_F(BadInputTest, BadMetadataValueNamesKeyAndValue) {
  const std::string path = WriteEdited("badheads.gguf", {"llama.attention.head_count_kv", "",
      [](runtime::GgufWriter& w) { ASSERT_TRUE(w.AddU32("llama.attention.head_count_kv", 3).ok()); }, ""});
  ExpectLoadFails(path, KESTREL_STATUS_INVALID_ARGUMENT, {"head_count_kv", "3"});
  std::remove(path.c_str());
}

TEST_F(BadInputTest, MissingTensorIsNamed) {
  const std::string path = WriteEdited("notensor.gguf", {"", "blk.2.ffn_up.weight", nullptr, ""});
  ExpectLoadFails(path, KESTREL_STATUS_INVALID_ARGUMENT, {"blk.2.ffn_up.weight"});
  std::remove(path.c_str());
}

TEST_F(BadInputTest, UnsupportedTensorTypeIsUnimplementedNamingIt) {
  const std::string path = WriteEdited("q81.gguf", {"", "", nullptr, "blk.0.attn_q.weight"});
  ExpectLoadFails(path, KESTREL_STATUS_UNIMPLEMENTED, {"blk.0.attn_q.weight", "Q8_1"});
  std::remove(path.c_str());
}

TEST_F(BadInputTest, UnknownArchitectureIsUnimplementedNamingItAndTheSupportedOnes) {
  const std::string path = WriteEdited("arch.gguf", {"general.architecture", "",
      [](runtime::GgufWriter& w) { ASSERT_TRUE(w.AddString("general.architecture", "mamba9").ok()); }, ""});
  ExpectLoadFails(path, KESTREL_STATUS_UNIMPLEMENTED, {"'mamba9'", "supported: llama"});
  std::remove(path.c_str());
}

// metadata_only: every readable GGUF loads; what this build cannot run is reported, not fatal.
class MetadataOnlyTest : public BadInputTest {
 protected:
  ModelPtr Load(const std::string& path) {
    kestrel_model_options_t o;
    kestrel_model_options_init(&o);
    o.device = "ref";
    o.metadata_only = true;
    kestrel_model_t* m = nullptr;
    StatusPtr s(kestrel_model_load(rt_.get(), path.data(), path.size(), &o, &m));
    EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
    return ModelPtr(m);
  }
  kestrel_model_info_t Info(const kestrel_model_t* m) {
    kestrel_model_info_t info{};
    info.struct_size = sizeof(info);
    StatusPtr s(kestrel_model_get_info(m, &info));
    EXPECT_EQ(s, nullptr);
    return info;
  }
  void ExpectNotRunnable(const std::string& path, std::vector<std::string> needles) {
    ModelPtr m = Load(path);
    ASSERT_NE(m, nullptr);
    const kestrel_model_info_t info = Info(m.get());
    EXPECT_FALSE(info.runnable);
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(info.unsupported).find(n), std::string::npos)
          << "'" << info.unsupported << "' lacks '" << n << "'";
    }
  }
};

TEST_F(MetadataOnlyTest, RunnableFileReportsRunnableButRefusesSessions) {
  ModelPtr m = Load(ModelPath("stories260K.gguf"));
  ASSERT_NE(m, nullptr);
  const kestrel_model_info_t info = Info(m.get());
  EXPECT_TRUE(info.runnable);
  EXPECT_STREQ(info.unsupported, "");
  EXPECT_STREQ(info.architecture, "llama");
  EXPECT_STREQ(info.tokenizer_model, "llama");
  EXPECT_EQ(info.n_layers, 5u);
  // The tokenizer works without weights.
  int32_t ids[16];
  size_t n = 0;
  StatusPtr t(kestrel_tokenize(m.get(), "Hello", 5, true, ids, 16, &n));
  EXPECT_EQ(t, nullptr);
  EXPECT_GT(n, 1u);
  kestrel_session_options_t so;
  kestrel_session_options_init(&so);
  kestrel_session_t* session = nullptr;
  StatusPtr s(kestrel_session_create(m.get(), &so, &session));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(session, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("metadata"), std::string::npos);
}

TEST_F(MetadataOnlyTest, UnknownArchitectureTypeAndMissingTensorAreReported) {
  const std::string arch = WriteEdited("md_arch.gguf", {"general.architecture", "",
      [](runtime::GgufWriter& w) { ASSERT_TRUE(w.AddString("general.architecture", "mamba9").ok()); }, ""});
  ExpectNotRunnable(arch, {"'mamba9'", "supported: llama"});
  std::remove(arch.c_str());
  const std::string q81 = WriteEdited("md_q81.gguf", {"", "", nullptr, "blk.0.attn_q.weight"});
  ExpectNotRunnable(q81, {"Q8_1", "blk.0.attn_q.weight"});
  std::remove(q81.c_str());
  const std::string missing = WriteEdited("md_missing.gguf", {"", "blk.2.ffn_up.weight", nullptr, ""});
  ExpectNotRunnable(missing, {"blk.2.ffn_up.weight"});
  std::remove(missing.c_str());
  const std::string nokey = WriteEdited("md_nokey.gguf", {"llama.block_count", "", nullptr, ""});
  ExpectNotRunnable(nokey, {"llama.block_count"});
  std::remove(nokey.c_str());
}

TEST_F(BadInputTest, UnknownDeviceListsTheAvailableOnes) {
  ModelPtr m;
  StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), "tpu:7", &m);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_NOT_FOUND);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("tpu:7"), std::string::npos);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("ref"), std::string::npos);
}

TEST_F(BadInputTest, NoPluginsIsAClearError) {
  RuntimePtr empty = MakeRuntime("/nonexistent-plugin-dir");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(kestrel_runtime_device_count(empty.get()), 0u);
  kestrel_model_t* m = nullptr;
  const std::string path = ModelPath("stories260K.gguf");
  StatusPtr s(kestrel_model_load(empty.get(), path.data(), path.size(), nullptr, &m));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_NOT_FOUND);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("no device"), std::string::npos);
  EXPECT_EQ(m, nullptr);
}

TEST_F(MetadataOnlyTest, NeedsNoDeviceUnlessOneIsNamed) {
  RuntimePtr empty = MakeRuntime("/nonexistent-plugin-dir");
  ASSERT_NE(empty, nullptr);
  const std::string path = ModelPath("stories260K.gguf");
  kestrel_model_options_t o;
  kestrel_model_options_init(&o);
  o.metadata_only = true;
  kestrel_model_t* m = nullptr;
  StatusPtr s(kestrel_model_load(empty.get(), path.data(), path.size(), &o, &m));
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  ModelPtr model(m);
  const kestrel_model_info_t info = Info(model.get());
  EXPECT_STREQ(info.device, "");
  EXPECT_TRUE(info.runnable);
  kestrel_session_options_t so;
  kestrel_session_options_init(&so);
  so.n_threads = 2;  // a device setting: must not be reached without a device
  kestrel_session_t* session = nullptr;
  StatusPtr sc(kestrel_session_create(model.get(), &so, &session));
  EXPECT_EQ(kestrel_status_code(sc.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  EXPECT_EQ(session, nullptr);
  kestrel_engine_t* engine = nullptr;
  StatusPtr ec(kestrel_engine_create(model.get(), nullptr, &engine));
  EXPECT_EQ(kestrel_status_code(ec.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  EXPECT_EQ(engine, nullptr);
  o.device = "ref";  // asked for by name: still an error
  m = nullptr;
  StatusPtr named(kestrel_model_load(empty.get(), path.data(), path.size(), &o, &m));
  EXPECT_EQ(kestrel_status_code(named.get()), KESTREL_STATUS_NOT_FOUND);
  EXPECT_EQ(m, nullptr);
}

class SessionInputTest : public BadInputTest {
 protected:
  void SetUp() override {
    BadInputTest::SetUp();
    StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), TestDevice(), &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  }
  ModelPtr model_;
};

TEST_F(SessionInputTest, EmptyPromptAndPromptLongerThanContext) {
  SessionPtr session = MakeGreedySession(model_.get(), 8);
  StatusPtr s(kestrel_session_generate(session.get(), "", 0, nullptr, nullptr));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("empty"), std::string::npos);
  const std::string long_prompt = "Once upon a time there was a little girl named Lily who loved to play";
  s.reset(kestrel_session_generate(session.get(), long_prompt.data(), long_prompt.size(), nullptr, nullptr));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("context length is 8"), std::string::npos)
      << kestrel_status_message(s.get());
  // The session still works afterwards.
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 3;
  StatusPtr ok(kestrel_session_generate(session.get(), "Once", 4, &g, nullptr));
  EXPECT_EQ(ok, nullptr) << kestrel_status_message(ok.get());
}

TEST_F(SessionInputTest, ContextFullStopsCleanly) {
  SessionPtr session = MakeGreedySession(model_.get(), 8);
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 100;
  kestrel_generate_stats_t st{};
  st.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), "Once upon", 9, &g, &st));
  EXPECT_EQ(st.stop_reason, KESTREL_STOP_CONTEXT_FULL);
  EXPECT_EQ(st.n_prompt_tokens + st.n_generated_tokens, 9u);  // 8 in the KV + the last sampled one
}

TEST_F(SessionInputTest, InvalidSamplerValuesNameTheField) {
  struct Case {
    std::function<void(kestrel_sampler_options_t&)> edit;
    const char* needle;
  };
  const Case cases[] = {
      {[](auto& o) { o.temperature = -1.0f; }, "temperature"},
      {[](auto& o) { o.temperature = std::nanf(""); }, "temperature"},
      {[](auto& o) { o.top_p = 1.5f; }, "top_p"},
      {[](auto& o) { o.top_p = 0.0f; }, "top_p"},
      {[](auto& o) { o.min_p = -0.1f; }, "min_p"},
      {[](auto& o) { o.top_k = -3; }, "top_k"},
      {[](auto& o) { o.repetition_penalty = 0.0f; }, "repetition_penalty"},
      {[](auto& o) { o.repetition_window = -1; }, "repetition_window"},
  };
  for (const Case& c : cases) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    c.edit(so);
    kestrel_session_options_t o;
    kestrel_session_options_init(&o);
    o.sampler = &so;
    kestrel_session_t* session = nullptr;
    StatusPtr s(kestrel_session_create(model_.get(), &o, &session));
    EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT) << c.needle;
    EXPECT_NE(std::string(kestrel_status_message(s.get())).find(c.needle), std::string::npos)
        << kestrel_status_message(s.get());
    EXPECT_EQ(session, nullptr);
  }
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.kv_block_size = 3;
  kestrel_session_t* session = nullptr;
  StatusPtr s(kestrel_session_create(model_.get(), &o, &session));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("kv_block_size = 3"), std::string::npos);
  // kv_type: named with its value.
  kestrel_session_options_init(&o);
  o.kv_type = 7;
  s.reset(kestrel_session_create(model_.get(), &o, &session));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("options->kv_type = 7"), std::string::npos)
      << kestrel_status_message(s.get());
  EXPECT_EQ(session, nullptr);
  // A 0.1 client's struct (32 bytes, its tail padding left as garbage) gets the F32 default.
  kestrel_session_options_init(&o);
  alignas(8) unsigned char old_client[40];
  std::memcpy(old_client, &o, 28);
  std::memset(old_client + 28, 0xAB, sizeof old_client - 28);
  const uint32_t old_size = 32;
  std::memcpy(old_client, &old_size, sizeof old_size);
  s.reset(kestrel_session_create(model_.get(),
                                 reinterpret_cast<const kestrel_session_options_t*>(old_client),
                                 &session));
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  kestrel_session_destroy(session);
}

TEST_F(SessionInputTest, OutOfRangeTokenIds) {
  SessionPtr session = MakeGreedySession(model_.get(), 32);
  const int32_t bad[3] = {1, 512, 5};
  StatusPtr s(kestrel_session_generate_tokens(session.get(), bad, 3, nullptr, nullptr));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_OUT_OF_RANGE);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("512"), std::string::npos);
  s.reset(kestrel_session_decode(session.get(), bad, 3));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(kestrel_session_token_count(session.get()), 0u);
  const int32_t neg = -1;
  size_t n = 0;
  s.reset(kestrel_detokenize(model_.get(), &neg, 1, false, nullptr, 0, &n));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_OUT_OF_RANGE);
  s.reset(kestrel_session_truncate(session.get(), 5));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_OUT_OF_RANGE);
}

TEST_F(SessionInputTest, SmallBufferIsOutOfRangeAndWritesNothing) {
  int32_t ids[2] = {-7, -7};
  size_t n = 0;
  StatusPtr s(kestrel_tokenize(model_.get(), "Once upon a time", 16, true, ids, 2, &n));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(n, 5u);
  EXPECT_EQ(ids[0], -7);
}

TEST_F(SessionInputTest, StopStringsCallbackStopAndCancel) {
  SessionPtr session = MakeGreedySession(model_.get(), 128);
  // Golden case 0 continues ", there was a little girl named Lily." — stop at "Lily".
  const char* stops[] = {"Lily"};
  Collected got;
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 48;
  g.stop_strings = stops;
  g.n_stop_strings = 1;
  g.on_token = &Collected::OnToken;
  g.user_data = &got;
  kestrel_generate_stats_t st{};
  st.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), "Once upon a time", 16, &g, &st));
  EXPECT_EQ(st.stop_reason, KESTREL_STOP_STOP_STRING);
  EXPECT_EQ(got.text, ", there was a little girl named ");

  // Callback returning false stops after that token.
  struct Counter {
    int n = 0;
    static bool Stop(void* u, int32_t, const char*, size_t) { return ++static_cast<Counter*>(u)->n < 3; }
  } counter;
  g.n_stop_strings = 0;
  g.on_token = &Counter::Stop;
  g.user_data = &counter;
  KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), "Once upon a time", 16, &g, &st));
  EXPECT_EQ(st.stop_reason, KESTREL_STOP_CALLBACK);
  EXPECT_EQ(st.n_generated_tokens, 3u);

  // Cancel from another thread while the callback is running.
  struct Canceller {
    kestrel_session_t* session;
    std::atomic<int> n{0};
    static bool OnToken(void* u, int32_t, const char*, size_t) {
      auto* c = static_cast<Canceller*>(u);
      if (++c->n == 5) {
        std::thread t([s = c->session] { kestrel_session_cancel(s); });
        t.join();
      }
      return true;
    }
  } canceller{session.get()};
  g.on_token = &Canceller::OnToken;
  g.user_data = &canceller;
  StatusPtr s(kestrel_session_generate(session.get(), "Once upon a time", 16, &g, &st));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_CANCELLED);
  EXPECT_EQ(st.stop_reason, KESTREL_STOP_CANCELLED);
  EXPECT_EQ(st.n_generated_tokens, 5u);
}

}  // namespace
}  // namespace kestrel::testing
