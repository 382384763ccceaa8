// The C API's contract at its edges, for the table in docs/RELIABILITY.md (the other rows are
// backed by tests/abi/old_struct_size_test.c: NULL for every pointer argument of runtime, model
// and session calls, struct_size below the released size, older smaller structs):
//   - engine.h: NULL handles and out-params, too-small struct_size of every struct it reads or
//     writes, unknown and released request ids;
//   - a newer client's larger struct_size (a tail this library does not know, filled with junk):
//     accepted, the tail neither read nor written;
//   - what is defined after a destroy: the runtime, the model and the engine may go in any order
//     (each keeps what it needs alive), released request ids are NOT_FOUND, destroy/release/stop
//     accept NULL and repeated stops.
// Using a handle after its own destroy/release is undefined (the pointer is freed), as in every C
// API; these tests never do that.
#include <cstring>

#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

// Expects `code` with a message that names `needle`.
#define EXPECT_STATUS(expr, code, needle)                                                   \
  do {                                                                                      \
    StatusPtr _s(expr);                                                                     \
    EXPECT_EQ(kestrel_status_code(_s.get()), code) << #expr << ": "                         \
                                                   << kestrel_status_message(_s.get());     \
    EXPECT_NE(std::string(kestrel_status_message(_s.get())).find(needle), std::string::npos) \
        << #expr << ": message does not name '" << needle << "': "                          \
        << kestrel_status_message(_s.get());                                                \
  } while (0)

constexpr kestrel_status_code_t kInvalid = KESTREL_STATUS_INVALID_ARGUMENT;

class CApiContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), "ref", &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  }
  EnginePtr Engine() {
    kestrel_engine_t* e = nullptr;
    KESTREL_EXPECT_OK(kestrel_engine_create(model_.get(), nullptr, &e));
    return EnginePtr(e);
  }
  RuntimePtr rt_;
  ModelPtr model_;
};

TEST_F(CApiContractTest, EngineNullHandlesAndOutParams) {
  EnginePtr e = Engine();
  ASSERT_NE(e, nullptr);
  kestrel_engine_t* out = reinterpret_cast<kestrel_engine_t*>(&out);
  EXPECT_STATUS(kestrel_engine_create(nullptr, nullptr, &out), kInvalid, "model");
  EXPECT_STATUS(kestrel_engine_create(model_.get(), nullptr, nullptr), kInvalid, "out_engine");
  EXPECT_EQ(out, reinterpret_cast<kestrel_engine_t*>(&out));  // untouched on failure
  kestrel_engine_destroy(nullptr);
  kestrel_engine_options_init(nullptr);
  kestrel_engine_request_options_init(nullptr);

  kestrel_request_id_t id = 0;
  const int32_t tokens[2] = {1, 403};
  EXPECT_STATUS(kestrel_engine_submit(nullptr, "Once", 4, nullptr, &id), kInvalid, "engine");
  EXPECT_STATUS(kestrel_engine_submit(e.get(), nullptr, 4, nullptr, &id), kInvalid, "prompt");
  EXPECT_STATUS(kestrel_engine_submit(e.get(), "Once", 4, nullptr, nullptr), kInvalid,
                "out_request_id");
  EXPECT_STATUS(kestrel_engine_submit_tokens(nullptr, tokens, 2, nullptr, &id), kInvalid, "engine");
  EXPECT_STATUS(kestrel_engine_submit_tokens(e.get(), nullptr, 2, nullptr, &id), kInvalid,
                "prompt_tokens");
  EXPECT_STATUS(kestrel_engine_submit_tokens(e.get(), tokens, 2, nullptr, nullptr), kInvalid,
                "out_request_id");
  EXPECT_EQ(id, 0u);
  EXPECT_STATUS(kestrel_engine_step(nullptr, nullptr), kInvalid, "engine");
  EXPECT_STATUS(kestrel_engine_start(nullptr), kInvalid, "engine");
  kestrel_engine_stop(nullptr);
  EXPECT_STATUS(kestrel_engine_wait(nullptr, 0, 0), kInvalid, "engine");
  EXPECT_STATUS(kestrel_engine_cancel(nullptr, 1), kInvalid, "engine");
  EXPECT_STATUS(kestrel_engine_release_request(nullptr, 1), kInvalid, "engine");

  KESTREL_ASSERT_OK(kestrel_engine_submit_tokens(e.get(), tokens, 2, nullptr, &id));
  kestrel_engine_result_t r{};
  r.struct_size = sizeof(r);
  EXPECT_STATUS(kestrel_engine_request_result(nullptr, id, 0, &r), kInvalid, "engine");
  EXPECT_STATUS(kestrel_engine_request_result(e.get(), id, 0, nullptr), kInvalid, "out_result");
  size_t required = 0;
  int32_t ids[4];
  char text[8];
  EXPECT_STATUS(kestrel_engine_request_tokens(nullptr, id, 0, ids, 4, &required), kInvalid,
                "engine");
  EXPECT_STATUS(kestrel_engine_request_tokens(e.get(), id, 0, ids, 4, nullptr), kInvalid,
                "out_required");
  EXPECT_STATUS(kestrel_engine_request_text(nullptr, id, 0, text, 8, &required), kInvalid,
                "engine");
  EXPECT_STATUS(kestrel_engine_request_text(e.get(), id, 0, text, 8, nullptr), kInvalid,
                "out_required");
  kestrel_engine_stats_t st{};
  st.struct_size = sizeof(st);
  EXPECT_STATUS(kestrel_engine_get_stats(nullptr, &st), kInvalid, "engine");
  EXPECT_STATUS(kestrel_engine_get_stats(e.get(), nullptr), kInvalid, "out_stats");
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
}

TEST_F(CApiContractTest, EngineStructSizesBelowTheReleasedOnes) {
  EnginePtr e = Engine();
  ASSERT_NE(e, nullptr);
  for (uint32_t bad : {0u, 3u}) {
    SCOPED_TRACE("struct_size " + std::to_string(bad));
    kestrel_engine_options_t o;
    kestrel_engine_options_init(&o);
    o.struct_size = bad;
    kestrel_engine_t* out = nullptr;
    EXPECT_STATUS(kestrel_engine_create(model_.get(), &o, &out), kInvalid, "struct_size");
    EXPECT_EQ(out, nullptr);
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.struct_size = bad;
    kestrel_request_id_t id = 0;
    EXPECT_STATUS(kestrel_engine_submit(e.get(), "Once", 4, &ro, &id), kInvalid, "struct_size");
    EXPECT_EQ(id, 0u);
    kestrel_engine_stats_t st{};
    st.struct_size = bad;
    EXPECT_STATUS(kestrel_engine_get_stats(e.get(), &st), kInvalid, "struct_size");
  }
  kestrel_request_id_t id = 0;
  KESTREL_ASSERT_OK(kestrel_engine_submit(e.get(), "Once", 4, nullptr, &id));
  kestrel_engine_result_t r{};
  r.struct_size = 3;
  EXPECT_STATUS(kestrel_engine_request_result(e.get(), id, 0, &r), kInvalid, "struct_size");
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
}

TEST_F(CApiContractTest, UnknownAndReleasedRequestIds) {
  EnginePtr e = Engine();
  ASSERT_NE(e, nullptr);
  kestrel_engine_result_t r{};
  r.struct_size = sizeof(r);
  EXPECT_STATUS(kestrel_engine_request_result(e.get(), 12345, 0, &r), KESTREL_STATUS_NOT_FOUND,
                "12345");
  EXPECT_STATUS(kestrel_engine_wait(e.get(), 12345, 0), KESTREL_STATUS_NOT_FOUND, "12345");
  EXPECT_STATUS(kestrel_engine_cancel(e.get(), 12345), KESTREL_STATUS_NOT_FOUND, "12345");
  kestrel_request_id_t id = 0;
  KESTREL_ASSERT_OK(kestrel_engine_submit(e.get(), "Once", 4, nullptr, &id));
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
  KESTREL_ASSERT_OK(kestrel_engine_cancel(e.get(), id));  // done: a no-op
  EXPECT_STATUS(kestrel_engine_request_result(e.get(), id, 1, &r), KESTREL_STATUS_OUT_OF_RANGE,
                "sample");
  KESTREL_ASSERT_OK(kestrel_engine_release_request(e.get(), id));
  const std::string sid = std::to_string(id);
  EXPECT_STATUS(kestrel_engine_request_result(e.get(), id, 0, &r), KESTREL_STATUS_NOT_FOUND, sid);
  EXPECT_STATUS(kestrel_engine_wait(e.get(), id, 0), KESTREL_STATUS_NOT_FOUND, sid);
  EXPECT_STATUS(kestrel_engine_cancel(e.get(), id), KESTREL_STATUS_NOT_FOUND, sid);
  EXPECT_STATUS(kestrel_engine_release_request(e.get(), id), KESTREL_STATUS_NOT_FOUND, sid);
}

// A struct from a newer header: today's fields, then a tail this library does not know.
template <typename T>
struct Newer {
  T known;
  unsigned char tail[64];
};

TEST_F(CApiContractTest, NewerLargerStructsAreAcceptedAndTheirTailIgnored) {
  // Options (read): the known fields are used, the junk tail is not read (ASan/UBSan would see
  // nothing either way; the point is that it is accepted, not refused or misread).
  Newer<kestrel_runtime_options_t> rto;
  std::memset(&rto, 0x5A, sizeof(rto));
  kestrel_runtime_options_init(&rto.known);
  const std::string plugins = PluginDir();
  rto.known.plugin_path = plugins.c_str();
  rto.known.struct_size = sizeof(rto);
  kestrel_runtime_t* rt = nullptr;
  KESTREL_ASSERT_OK(kestrel_runtime_create(&rto.known, &rt));
  RuntimePtr runtime(rt);

  Newer<kestrel_model_options_t> mo;
  std::memset(&mo, 0x5A, sizeof(mo));
  kestrel_model_options_init(&mo.known);
  mo.known.device = "ref";
  mo.known.struct_size = sizeof(mo);
  const std::string path = ModelPath("stories260K.gguf");
  kestrel_model_t* m = nullptr;
  KESTREL_ASSERT_OK(kestrel_model_load(rt, path.data(), path.size(), &mo.known, &m));
  ModelPtr model(m);

  Newer<kestrel_sampler_options_t> so;
  std::memset(&so, 0x5A, sizeof(so));
  kestrel_sampler_options_init(&so.known);
  so.known.temperature = 0;
  so.known.struct_size = sizeof(so);
  Newer<kestrel_session_options_t> seo;
  std::memset(&seo, 0x5A, sizeof(seo));
  kestrel_session_options_init(&seo.known);
  seo.known.sampler = &so.known;
  seo.known.struct_size = sizeof(seo);
  kestrel_session_t* s = nullptr;
  KESTREL_ASSERT_OK(kestrel_session_create(m, &seo.known, &s));
  SessionPtr session(s);

  Newer<kestrel_generate_options_t> go;
  std::memset(&go, 0x5A, sizeof(go));
  kestrel_generate_options_init(&go.known);
  go.known.max_new_tokens = 4;
  go.known.struct_size = sizeof(go);
  // Outputs (written): the known fields are filled, struct_size kept, the tail left alone.
  Newer<kestrel_generate_stats_t> stats;
  std::memset(&stats, 0xA5, sizeof(stats));
  stats.known.struct_size = sizeof(stats);
  KESTREL_ASSERT_OK(kestrel_session_generate(s, "Once", 4, &go.known, &stats.known));
  EXPECT_EQ(stats.known.n_generated_tokens, 4u);
  EXPECT_EQ(stats.known.struct_size, sizeof(stats));
  for (unsigned char b : stats.tail) ASSERT_EQ(b, 0xA5);

  Newer<kestrel_model_info_t> info;
  std::memset(&info, 0xA5, sizeof(info));
  info.known.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_info(m, &info.known));
  EXPECT_EQ(info.known.vocab_size, 512u);
  for (unsigned char b : info.tail) ASSERT_EQ(b, 0xA5);

  Newer<kestrel_engine_options_t> eo;
  std::memset(&eo, 0x5A, sizeof(eo));
  kestrel_engine_options_init(&eo.known);
  eo.known.struct_size = sizeof(eo);
  kestrel_engine_t* e = nullptr;
  KESTREL_ASSERT_OK(kestrel_engine_create(m, &eo.known, &e));
  EnginePtr engine(e);
  Newer<kestrel_engine_request_options_t> ro;
  std::memset(&ro, 0x5A, sizeof(ro));
  kestrel_engine_request_options_init(&ro.known);
  ro.known.max_new_tokens = 3;
  ro.known.struct_size = sizeof(ro);
  kestrel_request_id_t id = 0;
  KESTREL_ASSERT_OK(kestrel_engine_submit(e, "Once", 4, &ro.known, &id));
  KESTREL_ASSERT_OK(kestrel_engine_wait(e, id, -1));
  Newer<kestrel_engine_result_t> r;
  std::memset(&r, 0xA5, sizeof(r));
  r.known.struct_size = sizeof(r);
  KESTREL_ASSERT_OK(kestrel_engine_request_result(e, id, 0, &r.known));
  EXPECT_EQ(r.known.n_generated_tokens, 3u);
  for (unsigned char b : r.tail) ASSERT_EQ(b, 0xA5);
  Newer<kestrel_engine_stats_t> st;
  std::memset(&st, 0xA5, sizeof(st));
  st.known.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_engine_get_stats(e, &st.known));
  EXPECT_EQ(st.known.generated_tokens, 3u);
  for (unsigned char b : st.tail) ASSERT_EQ(b, 0xA5);
  Newer<kestrel_device_info_t> dev;
  std::memset(&dev, 0xA5, sizeof(dev));
  dev.known.struct_size = sizeof(dev);
  KESTREL_ASSERT_OK(kestrel_runtime_device_info(rt, 0, &dev.known));
  for (unsigned char b : dev.tail) ASSERT_EQ(b, 0xA5);
}

TEST(CApiLifetimeTest, RuntimeModelSessionAndEngineMayGoInAnyOrder) {
  const std::string path = ModelPath("stories260K.gguf");
  for (int order = 0; order < 3; ++order) {
    SCOPED_TRACE("order " + std::to_string(order));
    RuntimePtr rt = MakeRuntime();
    ModelPtr model;
    StatusPtr s = LoadModel(rt.get(), path, "ref", &model);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    SessionPtr session = MakeGreedySession(model.get(), 64);
    kestrel_engine_t* e = nullptr;
    KESTREL_ASSERT_OK(kestrel_engine_create(model.get(), nullptr, &e));
    EnginePtr engine(e);
    // Runtime first (order 0), the model first (1), or both before the users (2): the session and
    // the engine hold what they need and keep working.
    if (order == 0 || order == 2) rt.reset();
    if (order >= 1) model.reset();
    Collected got;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = 6;
    g.on_token = &Collected::OnToken;
    g.user_data = &got;
    KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), "Once", 4, &g, nullptr));
    EXPECT_EQ(got.tokens.size(), 6u);
    kestrel_request_id_t id = 0;
    KESTREL_ASSERT_OK(kestrel_engine_submit(e, "Once", 4, nullptr, &id));
    KESTREL_ASSERT_OK(kestrel_engine_wait(e, id, -1));
    KESTREL_ASSERT_OK(kestrel_engine_start(e));
    KESTREL_ASSERT_OK(kestrel_engine_start(e));  // running: a no-op
    kestrel_engine_stop(e);
    kestrel_engine_stop(e);  // stopped: a no-op
    engine.reset();
    session.reset();
  }
  // A retained model outlives its first release.
  RuntimePtr rt = MakeRuntime();
  ModelPtr model;
  StatusPtr s = LoadModel(rt.get(), path, "ref", &model);
  ASSERT_EQ(s, nullptr);
  kestrel_model_retain(model.get());
  kestrel_model_t* raw = model.release();
  kestrel_model_release(raw);
  kestrel_model_info_t info{};
  info.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_info(raw, &info));
  kestrel_model_release(raw);
}

}  // namespace
}  // namespace kestrel::testing
