// Sampling controls of the C API on stories260K (ref device): log-probabilities of the chosen and
// top-n tokens (sessions and the engine), logit bias and ignore_eos, and their bad inputs refused
// by name. The log-probabilities are checked against a log-softmax computed here from
// kestrel_session_get_logits.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

constexpr char kPrompt[] = "Once upon a time";
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Probs {
  std::vector<int32_t> tokens;  // from on_token, in order
  std::vector<kestrel_token_logprob_t> chosen;
  std::vector<std::vector<kestrel_token_logprob_t>> top;
  bool logprobs_before_token = true;  // each on_logprobs came right before its on_token

  static bool OnToken(void* user, int32_t token, const char*, size_t) {
    auto* p = static_cast<Probs*>(user);
    if (token == KESTREL_TOKEN_NONE) return true;
    p->tokens.push_back(token);
    if (p->chosen.size() != p->tokens.size() || p->chosen.back().token != token) {
      p->logprobs_before_token = false;
    }
    return true;
  }
  static void OnLogprobs(void* user, const kestrel_token_logprob_t* chosen,
                         const kestrel_token_logprob_t* top, size_t n_top) {
    auto* p = static_cast<Probs*>(user);
    p->chosen.push_back(*chosen);
    p->top.emplace_back(top, top + n_top);
  }
};

class SamplingApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = MakeRuntime();
    StatusPtr s = LoadModel(runtime_.get(), ModelPath("stories260K.gguf"), "ref", &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    kestrel_model_info_t info{};
    info.struct_size = sizeof(info);
    KESTREL_ASSERT_OK(kestrel_model_get_info(model_.get(), &info));
    vocab_ = info.vocab_size;
    eos_ = info.eos_id;
  }

  // A greedy session with the given bias / ignore_eos; NULL status expected unless `status`.
  SessionPtr Session(const std::vector<kestrel_logit_bias_t>& bias, bool ignore_eos,
                     StatusPtr* status = nullptr) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = 0.0f;
    so.logit_bias = bias.empty() ? nullptr : bias.data();
    so.n_logit_bias = bias.size();
    so.ignore_eos = ignore_eos;
    kestrel_session_options_t o;
    kestrel_session_options_init(&o);
    o.sampler = &so;
    kestrel_session_t* s = nullptr;
    StatusPtr st(kestrel_session_create(model_.get(), &o, &s));
    if (status != nullptr) {
      *status = std::move(st);
    } else {
      EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    }
    return SessionPtr(s);
  }

  Probs Generate(kestrel_session_t* s, uint32_t n_probs, uint32_t max_new_tokens,
                 kestrel_generate_stats_t* stats) {
    Probs p;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = max_new_tokens;
    g.on_token = Probs::OnToken;
    g.on_logprobs = Probs::OnLogprobs;
    g.n_probs = n_probs;
    g.user_data = &p;
    stats->struct_size = sizeof(*stats);
    StatusPtr st(kestrel_session_generate(s, kPrompt, sizeof(kPrompt) - 1, &g, stats));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    return p;
  }

  RuntimePtr runtime_;
  ModelPtr model_;
  uint32_t vocab_ = 0;
  int32_t eos_ = -1;
};

TEST_F(SamplingApiTest, LogprobsMatchTheLogSoftmaxOfTheLogits) {
  SessionPtr s = Session({}, false);
  kestrel_generate_stats_t stats{};
  const Probs p = Generate(s.get(), 5, 12, &stats);
  ASSERT_EQ(p.tokens.size(), stats.n_generated_tokens);
  ASSERT_EQ(p.chosen.size(), p.tokens.size());
  EXPECT_TRUE(p.logprobs_before_token);
  for (size_t i = 0; i < p.chosen.size(); ++i) {
    ASSERT_EQ(p.top[i].size(), 5u);
    EXPECT_EQ(p.top[i][0].token, p.chosen[i].token) << "greedy picks the most likely, step " << i;
    EXPECT_FLOAT_EQ(p.top[i][0].logprob, p.chosen[i].logprob);
    EXPECT_LE(p.chosen[i].logprob, 0.0f);
    for (size_t k = 1; k < 5; ++k) EXPECT_GE(p.top[i][k - 1].logprob, p.top[i][k].logprob);
  }

  // The first step by hand: decode the prompt, log-softmax of its logits.
  SessionPtr raw = Session({}, false);
  std::vector<int32_t> ids(64);
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_tokenize(model_.get(), kPrompt, sizeof(kPrompt) - 1, true, ids.data(),
                                     ids.size(), &n));
  KESTREL_ASSERT_OK(kestrel_session_decode(raw.get(), ids.data(), n));
  std::vector<float> logits(vocab_);
  KESTREL_ASSERT_OK(kestrel_session_get_logits(raw.get(), logits.data(), logits.size(), &n));
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(l - max);
  const double log_z = max + std::log(sum);
  for (const kestrel_token_logprob_t& t : p.top[0]) {
    EXPECT_NEAR(t.logprob, logits[t.token] - log_z, 1e-4) << "token " << t.token;
  }
}

TEST_F(SamplingApiTest, NoLogprobsUnlessAsked) {
  SessionPtr s = Session({}, false);
  Probs p;
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  EXPECT_EQ(g.n_probs, 0u);
  EXPECT_EQ(g.on_logprobs, nullptr);
  g.max_new_tokens = 4;
  g.on_token = Probs::OnToken;
  g.user_data = &p;
  KESTREL_ASSERT_OK(kestrel_session_generate(s.get(), kPrompt, sizeof(kPrompt) - 1, &g, nullptr));
  EXPECT_EQ(p.tokens.size(), 4u);
  EXPECT_TRUE(p.chosen.empty());
}

TEST_F(SamplingApiTest, LogitBiasBansAndForces) {
  kestrel_generate_stats_t stats{};
  SessionPtr plain = Session({}, false);
  const Probs base = Generate(plain.get(), 0, 6, &stats);
  ASSERT_FALSE(base.tokens.empty());

  // Banning the greedy first token changes it; its reported logprob is then -inf.
  SessionPtr banned = Session({{base.tokens[0], kNegInf}}, false);
  const Probs b = Generate(banned.get(), 3, 6, &stats);
  ASSERT_FALSE(b.tokens.empty());
  EXPECT_NE(b.tokens[0], base.tokens[0]);
  for (const auto& top : b.top) {
    for (const kestrel_token_logprob_t& t : top) EXPECT_NE(t.token, base.tokens[0]);
  }

  // A large positive bias makes one token win every step.
  const int32_t forced = base.tokens[0] == 300 ? 301 : 300;
  SessionPtr pushed = Session({{forced, 50.0f}}, false);
  const Probs f = Generate(pushed.get(), 0, 6, &stats);
  EXPECT_EQ(f.tokens, std::vector<int32_t>(6, forced));
}

TEST_F(SamplingApiTest, IgnoreEosRunsToMaxTokens) {
  ASSERT_GE(eos_, 0);
  kestrel_generate_stats_t stats{};
  // EOS pushed to the top: generation ends at once.
  SessionPtr eos = Session({{eos_, 100.0f}}, false);
  Generate(eos.get(), 0, 20, &stats);
  EXPECT_EQ(stats.stop_reason, KESTREL_STOP_EOS);
  EXPECT_EQ(stats.n_generated_tokens, 0u);
  // The same bias with ignore_eos: EOS is banned, the run goes to max_new_tokens.
  SessionPtr ignore = Session({{eos_, 100.0f}}, true);
  const Probs p = Generate(ignore.get(), 2, 20, &stats);
  EXPECT_EQ(stats.stop_reason, KESTREL_STOP_MAX_TOKENS);
  EXPECT_EQ(stats.n_generated_tokens, 20u);
  for (int32_t t : p.tokens) EXPECT_NE(t, eos_);
}

TEST_F(SamplingApiTest, BadLogitBiasIsRefusedByName) {
  struct Case {
    std::vector<kestrel_logit_bias_t> bias;
    const char* needle;
  };
  const int32_t out = static_cast<int32_t>(vocab_);
  for (const Case& c : {Case{{{1, 0.5f}, {out, 1.0f}}, "logit_bias[1].token"},
                        Case{{{-1, 1.0f}}, "logit_bias[0].token = -1"},
                        Case{{{3, std::nanf("")}}, "logit_bias[0].bias"},
                        Case{{{3, std::numeric_limits<float>::infinity()}}, "finite or -inf"}}) {
    StatusPtr st;
    SessionPtr s = Session(c.bias, false, &st);
    ASSERT_NE(st, nullptr) << c.needle;
    EXPECT_EQ(kestrel_status_code(st.get()), KESTREL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kestrel_status_message(st.get())).find(c.needle), std::string::npos)
        << kestrel_status_message(st.get());
    EXPECT_EQ(s, nullptr);
  }
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.n_logit_bias = 2;  // with a NULL array
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.sampler = &so;
  kestrel_session_t* s = nullptr;
  StatusPtr st(kestrel_session_create(model_.get(), &o, &s));
  ASSERT_NE(st, nullptr);
  EXPECT_NE(std::string(kestrel_status_message(st.get())).find("logit_bias is NULL"), std::string::npos);
}

struct EngineProbs {
  std::vector<int32_t> tokens;
  std::vector<kestrel_token_logprob_t> chosen;
  std::vector<std::vector<kestrel_token_logprob_t>> top;
  static bool OnToken(void* user, kestrel_request_id_t, uint32_t, int32_t token, const char*, size_t) {
    if (token != KESTREL_TOKEN_NONE) static_cast<EngineProbs*>(user)->tokens.push_back(token);
    return true;
  }
  static void OnLogprobs(void* user, kestrel_request_id_t, uint32_t, const kestrel_token_logprob_t* chosen,
                         const kestrel_token_logprob_t* top, size_t n_top) {
    auto* p = static_cast<EngineProbs*>(user);
    p->chosen.push_back(*chosen);
    p->top.emplace_back(top, top + n_top);
  }
};

// Runs one request of `ro` (sampler, budget, speculation as given) with n_probs log-probabilities
// to its end and releases it.
EngineProbs RunEngineRequest(kestrel_engine_t* engine, const std::string& prompt,
                             kestrel_engine_request_options_t ro, uint32_t n_probs) {
  EngineProbs p;
  ro.on_token = EngineProbs::OnToken;
  ro.on_logprobs = EngineProbs::OnLogprobs;
  ro.n_probs = n_probs;
  ro.user_data = &p;
  kestrel_request_id_t id = 0;
  KESTREL_EXPECT_OK(kestrel_engine_submit(engine, prompt.data(), prompt.size(), &ro, &id));
  KESTREL_EXPECT_OK(kestrel_engine_wait(engine, id, -1));
  KESTREL_EXPECT_OK(kestrel_engine_release_request(engine, id));
  return p;
}

TEST_F(SamplingApiTest, EngineReportsTheSessionsLogprobsAndHonoursTheBias) {
  SessionPtr s = Session({}, false);
  kestrel_generate_stats_t stats{};
  const Probs session = Generate(s.get(), 4, 10, &stats);

  kestrel_engine_t* raw = nullptr;
  KESTREL_ASSERT_OK(kestrel_engine_create(model_.get(), nullptr, &raw));
  std::unique_ptr<kestrel_engine_t, void (*)(kestrel_engine_t*)> engine(raw, kestrel_engine_destroy);
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0.0f;
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.max_new_tokens = 10;
  ro.sampler = &so;
  const EngineProbs p = RunEngineRequest(engine.get(), kPrompt, ro, 4);
  EXPECT_EQ(p.tokens, session.tokens);
  ASSERT_EQ(p.chosen.size(), session.chosen.size());
  for (size_t i = 0; i < p.chosen.size(); ++i) {
    EXPECT_EQ(p.chosen[i].token, session.chosen[i].token);
    EXPECT_NEAR(p.chosen[i].logprob, session.chosen[i].logprob, 1e-3) << "step " << i;
    ASSERT_EQ(p.top[i].size(), 4u);
    for (size_t k = 0; k < 4; ++k) EXPECT_EQ(p.top[i][k].token, session.top[i][k].token);
  }

  // ignore_eos and a bias reach the engine's sampler too; a bad id is refused at submit.
  const kestrel_logit_bias_t eos_first{eos_, 100.0f};
  so.logit_bias = &eos_first;
  so.n_logit_bias = 1;
  so.ignore_eos = 1;
  EngineProbs q;
  ro.on_token = EngineProbs::OnToken;
  ro.user_data = &q;
  kestrel_request_id_t id = 0;
  KESTREL_ASSERT_OK(kestrel_engine_submit(engine.get(), kPrompt, sizeof(kPrompt) - 1, &ro, &id));
  KESTREL_ASSERT_OK(kestrel_engine_wait(engine.get(), id, -1));
  EXPECT_EQ(q.tokens.size(), 10u);
  KESTREL_EXPECT_OK(kestrel_engine_release_request(engine.get(), id));
  const kestrel_logit_bias_t bad{static_cast<int32_t>(vocab_) + 5, 1.0f};
  so.logit_bias = &bad;
  StatusPtr st(kestrel_engine_submit(engine.get(), kPrompt, sizeof(kPrompt) - 1, &ro, &id));
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(kestrel_status_code(st.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(st.get())).find("options->sampler->logit_bias[0].token"),
            std::string::npos)
      << kestrel_status_message(st.get());
}

// Speculative decoding reports what plain decoding reports: each accepted token's log-probabilities
// come from the verification step's row it was chosen at (greedy: the same tokens, so the same
// values), in sessions and engine requests alike.
TEST_F(SamplingApiTest, SpeculativeDecodingReportsThePlainLogprobs) {
  constexpr char kRepetitive[] = "Once upon a time, there was a little girl. Once upon a time, there was a";
  constexpr uint32_t kTokens = 40;
  auto generate = [&](kestrel_session_t* session) {
    Probs p;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = kTokens;
    g.on_token = Probs::OnToken;
    g.on_logprobs = Probs::OnLogprobs;
    g.n_probs = 3;
    g.user_data = &p;
    KESTREL_EXPECT_OK(kestrel_session_generate(session, kRepetitive, sizeof(kRepetitive) - 1, &g, nullptr));
    return p;
  };
  SessionPtr plain_session = Session({}, false);
  const Probs plain = generate(plain_session.get());

  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0.0f;
  kestrel_speculative_options_t spec;
  kestrel_speculative_options_init(&spec);
  spec.method = KESTREL_SPEC_NGRAM;
  spec.max_draft_tokens = 4;
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.sampler = &so;
  o.speculative = &spec;
  kestrel_session_t* raw = nullptr;
  KESTREL_ASSERT_OK(kestrel_session_create(model_.get(), &o, &raw));
  SessionPtr spec_session(raw);
  const Probs sp = generate(spec_session.get());
  kestrel_speculative_stats_t st{};
  st.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_session_speculative_stats(spec_session.get(), &st));
  EXPECT_GT(st.accepted, 0u) << "no draft token was accepted: the speculative path was not exercised";

  auto expect_same = [&](const std::vector<int32_t>& tokens, const std::vector<kestrel_token_logprob_t>& chosen,
                         const std::vector<std::vector<kestrel_token_logprob_t>>& top, const char* what) {
    EXPECT_EQ(tokens, plain.tokens) << what;
    ASSERT_EQ(chosen.size(), plain.chosen.size()) << what;
    for (size_t i = 0; i < chosen.size(); ++i) {
      EXPECT_EQ(chosen[i].token, plain.chosen[i].token) << what << " step " << i;
      EXPECT_NEAR(chosen[i].logprob, plain.chosen[i].logprob, 1e-3) << what << " step " << i;
      ASSERT_EQ(top[i].size(), 3u) << what;
      for (size_t k = 0; k < 3; ++k) {
        EXPECT_EQ(top[i][k].token, plain.top[i][k].token) << what << " step " << i;
        EXPECT_NEAR(top[i][k].logprob, plain.top[i][k].logprob, 1e-3) << what << " step " << i;
      }
    }
  };
  EXPECT_TRUE(sp.logprobs_before_token);
  expect_same(sp.tokens, sp.chosen, sp.top, "session");

  kestrel_engine_t* eng = nullptr;
  KESTREL_ASSERT_OK(kestrel_engine_create(model_.get(), nullptr, &eng));
  std::unique_ptr<kestrel_engine_t, void (*)(kestrel_engine_t*)> engine(eng, kestrel_engine_destroy);
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.max_new_tokens = kTokens;
  ro.sampler = &so;
  ro.speculative = &spec;
  const EngineProbs ep = RunEngineRequest(engine.get(), kRepetitive, ro, 3);
  expect_same(ep.tokens, ep.chosen, ep.top, "engine");
}

}  // namespace
}  // namespace kestrel::testing
