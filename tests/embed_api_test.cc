// kestrel_session_embed on stories260K: unit length, mean vs last pooling, one-token texts where
// both agree, the same vector from the ref and cpu devices (two implementations of the forward
// pass), the same vector as pooling kestrel_session_get_hidden (one hidden-state mechanism), the
// session left as a fresh one for generation, and bad inputs refused by name.
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

  static SessionPtr Session(kestrel_model_t* model, uint32_t ctx = 0) { return MakeGreedySession(model, ctx); }

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
  SessionPtr s = Session(m.get());
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
  SessionPtr rs = Session(ref.get());
  SessionPtr cs = Session(cpu.get());
  for (uint32_t pooling : {KESTREL_POOLING_MEAN, KESTREL_POOLING_LAST}) {
    const std::vector<float> a = Embed(rs.get(), "Lily wanted to play outside", pooling);
    const std::vector<float> b = Embed(cs.get(), "Lily wanted to play outside", pooling);
    EXPECT_GT(Dot(a, b), 0.9999) << "pooling " << pooling;
  }
}

TEST_F(EmbedApiTest, MeanOfGetHiddenRowsNormalised) {
  ModelPtr m = Load("ref");
  SessionPtr s = Session(m.get());
  const std::string text = "Lily wanted to play outside";
  std::vector<int32_t> ids(64);
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_tokenize(m.get(), text.data(), text.size(), true, ids.data(), ids.size(), &n));
  ids.resize(n);
  KESTREL_ASSERT_OK(kestrel_session_decode(s.get(), ids.data(), ids.size()));
  size_t need = 0;
  KESTREL_ASSERT_OK(kestrel_session_get_hidden(s.get(), 0, nullptr, 0, &need));
  std::vector<float> rows(need);
  KESTREL_ASSERT_OK(kestrel_session_get_hidden(s.get(), 0, rows.data(), rows.size(), &need));
  const size_t D = need / ids.size();
  std::vector<double> mean(D, 0.0);
  for (size_t r = 0; r < ids.size(); ++r) {
    for (size_t e = 0; e < D; ++e) mean[e] += rows[r * D + e];
  }
  double norm = 0;
  for (double v : mean) norm += v * v;
  norm = std::sqrt(norm);
  const std::vector<float> embedded = Embed(s.get(), text, KESTREL_POOLING_MEAN);
  ASSERT_EQ(embedded.size(), D);
  for (size_t e = 0; e < D; ++e) EXPECT_NEAR(embedded[e], mean[e] / norm, 1e-5) << e;
  const std::vector<float> last = Embed(s.get(), text, KESTREL_POOLING_LAST);
  double last_norm = 0;
  for (size_t e = 0; e < D; ++e) last_norm += double(rows[(ids.size() - 1) * D + e]) * rows[(ids.size() - 1) * D + e];
  last_norm = std::sqrt(last_norm);
  for (size_t e = 0; e < D; ++e) EXPECT_NEAR(last[e], rows[(ids.size() - 1) * D + e] / last_norm, 1e-5) << e;
}

TEST_F(EmbedApiTest, GenerationAfterEmbedIsAsInAFreshSession) {
  ModelPtr m = Load("ref");
  SessionPtr fresh = Session(m.get());
  SessionPtr used = Session(m.get());
  Embed(used.get(), "Something else first", KESTREL_POOLING_MEAN);
  std::vector<std::vector<int32_t>> tokens;
  for (kestrel_session_t* s : {fresh.get(), used.get()}) {
    Collected c;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = 12;
    g.keep_context = true;  // what the session holds after Embed: nothing
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
  std::vector<float> v(4096);
  size_t n = 0;
  SessionPtr s = Session(m.get(), 8);
  kestrel_embed_options_t o;
  kestrel_embed_options_init(&o);
  o.pooling = 7;
  StatusPtr st(kestrel_session_embed(s.get(), "x", 1, &o, v.data(), v.size(), &n));
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
