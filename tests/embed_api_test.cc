// kestrel_session_embed on stories260K: unit length, mean vs last pooling, one-token texts where
// both agree, the same vector from the ref and cpu devices (two implementations of the forward
// pass), generation unchanged in an embeddings session, and bad inputs refused by name.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

class EmbedApiTest : public ::testing::Test {
 protected:
  void SetUp() override { runtime_ = MakeRuntime(); }

  ModelPtr Load(const std::string& device) {
    ModelPtr m;
    StatusPtr s = LoadModel(runtime_.get(), ModelPath("stories260K.gguf"), device, &m);
    EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
    return m;
  }

  static SessionPtr Session(kestrel_model_t* model, bool embeddings, uint32_t ctx = 0) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = 0.0f;
    kestrel_session_options_t o;
    kestrel_session_options_init(&o);
    o.sampler = &so;
    o.embeddings = embeddings;
    o.context_length = ctx;
    kestrel_session_t* s = nullptr;
    StatusPtr st(kestrel_session_create(model, &o, &s));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    return SessionPtr(s);
  }

  static std::vector<float> Embed(kestrel_session_t* s, const std::string& text, uint32_t pooling,
                                  bool add_bos = true) {
    kestrel_embed_options_t o;
    kestrel_embed_options_init(&o);
    o.pooling = pooling;
    o.add_bos = add_bos;
    size_t n = 0;
    KESTREL_EXPECT_OK(kestrel_session_embed(s, text.data(), text.size(), &o, nullptr, 0, &n));
    std::vector<float> v(n);
    KESTREL_EXPECT_OK(kestrel_session_embed(s, text.data(), text.size(), &o, v.data(), v.size(), &n));
    return v;
  }

  static double Dot(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d += static_cast<double>(a[i]) * b[i];
    return d;
  }

  RuntimePtr runtime_;
};

TEST_F(EmbedApiTest, UnitVectorsMeanAndLastPooling) {
  ModelPtr m = Load("ref");
  kestrel_model_info_t info{};
  info.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_info(m.get(), &info));
  SessionPtr s = Session(m.get(), true);
  const std::vector<float> mean = Embed(s.get(), "Once upon a time", KESTREL_POOLING_MEAN);
  const std::vector<float> last = Embed(s.get(), "Once upon a time", KESTREL_POOLING_LAST);
  ASSERT_EQ(mean.size(), info.n_embd);
  ASSERT_EQ(last.size(), info.n_embd);
  EXPECT_NEAR(Dot(mean, mean), 1.0, 1e-5);
  EXPECT_NEAR(Dot(last, last), 1.0, 1e-5);
  EXPECT_LT(Dot(mean, last), 0.9999);  // different poolings of a 5-token text
  EXPECT_EQ(kestrel_session_token_count(s.get()), 0u);  // the session is left empty
  EXPECT_EQ(Embed(s.get(), "Once upon a time", KESTREL_POOLING_MEAN), mean);  // repeatable
  const std::vector<float> other = Embed(s.get(), "The dog ran to the park", KESTREL_POOLING_MEAN);
  EXPECT_LT(Dot(mean, other), 0.9999);
  EXPECT_GT(Dot(mean, other), -1.0);

  // A one-token text: mean and last pooling are the same vector.
  std::vector<int32_t> ids(8);
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_tokenize(m.get(), "Once", 4, false, ids.data(), ids.size(), &n));
  ASSERT_EQ(n, 1u);
  const std::vector<float> a = Embed(s.get(), "Once", KESTREL_POOLING_MEAN, false);
  const std::vector<float> b = Embed(s.get(), "Once", KESTREL_POOLING_LAST, false);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << i;
}

TEST_F(EmbedApiTest, RefAndCpuAgree) {
  ModelPtr ref = Load("ref");
  ModelPtr cpu = Load("cpu");
  SessionPtr rs = Session(ref.get(), true);
  SessionPtr cs = Session(cpu.get(), true);
  for (uint32_t pooling : {KESTREL_POOLING_MEAN, KESTREL_POOLING_LAST}) {
    const std::vector<float> a = Embed(rs.get(), "Lily wanted to play outside", pooling);
    const std::vector<float> b = Embed(cs.get(), "Lily wanted to play outside", pooling);
    EXPECT_GT(Dot(a, b), 0.9999) << "pooling " << pooling;
  }
}

TEST_F(EmbedApiTest, GenerationIsUnchangedInAnEmbeddingsSession) {
  ModelPtr m = Load("ref");
  SessionPtr plain = Session(m.get(), false);
  SessionPtr emb = Session(m.get(), true);
  Embed(emb.get(), "Something else first", KESTREL_POOLING_MEAN);
  std::vector<std::vector<int32_t>> tokens;
  for (kestrel_session_t* s : {plain.get(), emb.get()}) {
    Collected c;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = 12;
    g.on_token = Collected::OnToken;
    g.user_data = &c;
    KESTREL_ASSERT_OK(kestrel_session_generate(s, "Once upon a time", 16, &g, nullptr));
    tokens.push_back(c.tokens);
  }
  EXPECT_EQ(tokens[0], tokens[1]);
  EXPECT_EQ(tokens[0].size(), 12u);
}

TEST_F(EmbedApiTest, BadInputsAreRefusedByName) {
  ModelPtr m = Load("ref");
  SessionPtr plain = Session(m.get(), false);
  std::vector<float> v(4096);
  size_t n = 0;
  StatusPtr st(kestrel_session_embed(plain.get(), "x", 1, nullptr, v.data(), v.size(), &n));
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(kestrel_status_code(st.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  EXPECT_NE(std::string(kestrel_status_message(st.get())).find("embeddings"), std::string::npos);

  SessionPtr s = Session(m.get(), true, 8);
  kestrel_embed_options_t o;
  kestrel_embed_options_init(&o);
  o.pooling = 7;
  st.reset(kestrel_session_embed(s.get(), "x", 1, &o, v.data(), v.size(), &n));
  ASSERT_NE(st, nullptr);
  EXPECT_NE(std::string(kestrel_status_message(st.get())).find("options->pooling = 7"), std::string::npos);
  st.reset(kestrel_session_embed(s.get(), "x", 1, nullptr, v.data(), 3, &n));
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(kestrel_status_code(st.get()), KESTREL_STATUS_OUT_OF_RANGE);
  st.reset(kestrel_session_embed(s.get(), "", 0, nullptr, v.data(), v.size(), &n));
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(kestrel_status_code(st.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  const std::string long_text = "Once upon a time there was a little girl named Lily who liked to play";
  st.reset(kestrel_session_embed(s.get(), long_text.data(), long_text.size(), nullptr, v.data(), v.size(), &n));
  ASSERT_NE(st, nullptr);
  EXPECT_NE(std::string(kestrel_status_message(st.get())).find("context length is 8"), std::string::npos)
      << kestrel_status_message(st.get());
  st.reset(kestrel_session_embed(s.get(), "x", 1, nullptr, nullptr, 5, &n));
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(kestrel_status_code(st.get()), KESTREL_STATUS_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace kestrel::testing
