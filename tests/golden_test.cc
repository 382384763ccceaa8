// Golden tests: the token ids, text and logits Kestrel produces for the shared tiny models equal
// those of an independent reference implementation (llama.cpp, see ../shared/models/README.md).
// The device is KESTREL_TEST_DEVICE (default "ref"), so every plugin can run the same suite.
#include <cmath>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return nlohmann::json::parse(f);
}

class GoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), TestDevice(), &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  }
  RuntimePtr rt_;
  ModelPtr model_;
};

std::vector<int32_t> Tokenize(kestrel_model_t* m, const std::string& text, bool bos) {
  size_t n = 0;
  KESTREL_EXPECT_OK(kestrel_tokenize(m, text.data(), text.size(), bos, nullptr, 0, &n));
  std::vector<int32_t> ids(n);
  size_t n2 = 0;
  StatusPtr s(kestrel_tokenize(m, text.data(), text.size(), bos, ids.data(), ids.size(), &n2));
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(n, n2);
  return ids;
}

std::string Detokenize(kestrel_model_t* m, const std::vector<int32_t>& ids, bool strip) {
  size_t n = 0;
  StatusPtr s(kestrel_detokenize(m, ids.data(), ids.size(), strip, nullptr, 0, &n));
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  std::string out(n, '\0');
  s.reset(kestrel_detokenize(m, ids.data(), ids.size(), strip, out.data(), out.size(), &n));
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  return out;
}

TEST_F(GoldenTest, Stories260KAllCasesTokenExact) {
  nlohmann::json golden = ReadJson(ModelPath("stories260K.golden.json"));
  ASSERT_EQ(golden["cases"].size(), 6u);
  for (const auto& c : golden["cases"]) {
    const std::string prompt = c["prompt"];
    SCOPED_TRACE("prompt: " + prompt);
    const std::vector<int32_t> want_prompt = c["prompt_ids"];
    const std::vector<int32_t> want_ids = c["generated_ids"];
    const std::string want_text = FromHex(c["generated_text_hex"]);
    EXPECT_EQ(Tokenize(model_.get(), prompt, true), want_prompt);

    SessionPtr session = MakeGreedySession(model_.get(), 128);
    ASSERT_NE(session, nullptr);
    Collected got;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = static_cast<uint32_t>(want_ids.size());
    g.on_token = &Collected::OnToken;
    g.user_data = &got;
    kestrel_generate_stats_t stats{};
    stats.struct_size = sizeof(stats);
    KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), prompt.data(), prompt.size(), &g, &stats));
    EXPECT_EQ(got.tokens, want_ids);
    EXPECT_EQ(got.text, want_text);
    EXPECT_EQ(Detokenize(model_.get(), want_ids, false), want_text);
    EXPECT_EQ(stats.n_prompt_tokens, want_prompt.size());
    EXPECT_EQ(stats.n_generated_tokens, want_ids.size());
    EXPECT_EQ(stats.stop_reason, KESTREL_STOP_MAX_TOKENS);
    for (size_t i = 0; i < want_ids.size() && i < got.tokens.size(); ++i) {
      size_t n = 0;
      char piece[64];
      KESTREL_ASSERT_OK(kestrel_token_to_piece(model_.get(), want_ids[i], piece, sizeof(piece), &n));
      EXPECT_EQ(std::string(piece, n), FromHex(c["generated_pieces_hex"][i])) << "piece " << i;
    }
  }
}

TEST_F(GoldenTest, Stories260KLogitsMatchReference) {
  nlohmann::json ref = ReadJson(ModelPath("stories260K.logits0.json"));
  const std::vector<int32_t> prompt = ref["prompt_ids"];
  const std::vector<float> want = ref["logits_kv_f32"];
  SessionPtr session = MakeGreedySession(model_.get(), 128);
  KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_session_get_logits(session.get(), nullptr, 0, &n));
  ASSERT_EQ(n, want.size());
  std::vector<float> got(n);
  KESTREL_ASSERT_OK(kestrel_session_get_logits(session.get(), got.data(), got.size(), &n));
  double max_abs = 0;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << "logit " << i;
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(got[i]) - want[i]));
  }
  EXPECT_LT(max_abs, 1e-4) << "max abs logit error vs llama.cpp (F32 KV)";
  RecordProperty("max_abs_logit_error", std::to_string(max_abs));
}

// A greedy session over 128 tokens of context with the given KV element type and thread count.
SessionPtr GreedySession(kestrel_model_t* model, uint32_t kv_type, uint32_t n_threads) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0.0f;
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.sampler = &so;
  o.context_length = 128;
  o.kv_type = kv_type;
  o.n_threads = n_threads;
  kestrel_session_t* raw = nullptr;
  KESTREL_EXPECT_OK(kestrel_session_create(model, &o, &raw));
  return SessionPtr(raw);
}

// Relative norm error ||a - b|| / ||b||.
double RelNorm(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST_F(GoldenTest, Stories260KF16KvLogitsMatchLlamaCppF16Kv) {
  // llama.cpp's logits with its (default) F16 KV cache are the reference. Tier from the format:
  // binary16 keeps 11 significant bits (unit roundoff u = 2^-11); K and V are each rounded once
  // and attention accumulates in f32 on both sides (llama.cpp also rounds q and the probabilities
  // to f16), so the logits may differ by a small multiple of u relative; we allow u.
  // Measured (ref, cpu): 1.2e-4 relative, max abs 4.0e-3 of logits up to 17.8.
  constexpr double kU = 1.0 / 2048;
  nlohmann::json ref = ReadJson(ModelPath("stories260K.logits0.json"));
  const std::vector<int32_t> prompt = ref["prompt_ids"];
  const std::vector<float> want16 = ref["logits_kv_f16"], want32 = ref["logits_kv_f32"];
  SessionPtr session = GreedySession(model_.get(), KESTREL_KV_F16, 0);
  ASSERT_NE(session, nullptr);
  KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
  std::vector<float> got(want16.size());
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_session_get_logits(session.get(), got.data(), got.size(), &n));
  ASSERT_EQ(n, want16.size());
  for (size_t i = 0; i < n; ++i) ASSERT_FALSE(std::isnan(got[i])) << "logit " << i;
  const double err16 = RelNorm(got, want16), err32 = RelNorm(got, want32);
  std::printf("F16 KV logits vs llama.cpp: relative error %.3g (F16 KV), %.3g (F32 KV)\n", err16,
              err32);
  EXPECT_LE(err16, kU) << "relative norm error vs llama.cpp's F16-KV logits";
  // And the cache really is F16: Kestrel's F32 path is within 3e-7 of llama.cpp's F32-KV logits
  // (Stories260KLogitsMatchReference), the F16 path 1.5e-4 away (measured).
  EXPECT_GE(err32, kU / 16) << "F16-KV logits as close to the F32-KV reference as an F32 cache";
  RecordProperty("f16_kv_relative_error", std::to_string(err16));
}

TEST_F(GoldenTest, IncrementalDecodeAndTruncateReproduceTheSameLogits) {
  // Prefill in one step vs token by token vs truncate-and-redo: the KV cache paging must not
  // change results.
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  SessionPtr a = MakeGreedySession(model_.get(), 128);
  KESTREL_ASSERT_OK(kestrel_session_decode(a.get(), prompt.data(), prompt.size()));
  std::vector<float> la(512), lb(512);
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_session_get_logits(a.get(), la.data(), la.size(), &n));
  SessionPtr b = MakeGreedySession(model_.get(), 128);
  for (int32_t t : prompt) KESTREL_ASSERT_OK(kestrel_session_decode(b.get(), &t, 1));
  KESTREL_ASSERT_OK(kestrel_session_get_logits(b.get(), lb.data(), lb.size(), &n));
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-4) << i;
  // Add junk, roll it back, re-decode the last token: same logits as before.
  const int32_t junk[3] = {100, 200, 300};
  KESTREL_ASSERT_OK(kestrel_session_decode(b.get(), junk, 3));
  EXPECT_EQ(kestrel_session_token_count(b.get()), 8u);
  KESTREL_ASSERT_OK(kestrel_session_truncate(b.get(), 4));
  StatusPtr no_logits(kestrel_session_get_logits(b.get(), lb.data(), lb.size(), &n));
  EXPECT_EQ(kestrel_status_code(no_logits.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  KESTREL_ASSERT_OK(kestrel_session_decode(b.get(), &prompt[4], 1));
  KESTREL_ASSERT_OK(kestrel_session_get_logits(b.get(), lb.data(), lb.size(), &n));
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-4) << i;
}

TEST_F(GoldenTest, ThreadCountDoesNotChangeTokens) {
  // n_threads reaches the plugin through device_set_options (plugin ABI 1.1); a plugin without
  // threads ignores it. Output must not depend on it.
  nlohmann::json golden = ReadJson(ModelPath("stories260K.golden.json"));
  const auto& c = golden["cases"][3];
  const std::string prompt = c["prompt"];
  const std::vector<int32_t> want = c["generated_ids"];
  for (uint32_t threads : {1u, 2u, 3u}) {
    SCOPED_TRACE("n_threads " + std::to_string(threads));
    SessionPtr session = GreedySession(model_.get(), KESTREL_KV_F32, threads);
    ASSERT_NE(session, nullptr);
    Collected got;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = static_cast<uint32_t>(want.size());
    g.on_token = &Collected::OnToken;
    g.user_data = &got;
    KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), prompt.data(), prompt.size(), &g, nullptr));
    EXPECT_EQ(got.tokens, want);
  }
}

// The F16 model's references: its tokenizer against llama.cpp's ids for the 180 plain strings of
// tokenizer-llama-spm.json (the same 32000-token vocab); its generation against its own exact
// F32 copy, bit for bit on ref (tests/weight_formats_test.cc: llama.cpp has no golden for this
// random model, and an F32 model is llama.cpp-exact). Here: it loads, round-trips text and is
// deterministic on the device under test.
TEST(GoldenF16Test, LlamaTinyRandomLoadsTokenizesAndGenerates) {
  RuntimePtr rt = MakeRuntime();
  ModelPtr model;
  StatusPtr s = LoadModel(rt.get(), ModelPath("llama-2-tiny-random.gguf"), TestDevice(), &model);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  kestrel_model_info_t info{};
  info.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_info(model.get(), &info));
  EXPECT_EQ(info.vocab_size, 32000u);
  EXPECT_EQ(info.n_embd, 8u);
  for (const std::string text : {"Hello world", "naïve café 東京 🙂", "  multiple   spaces\nnewline"}) {
    std::vector<int32_t> ids = Tokenize(model.get(), text, true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], info.bos_id);
    EXPECT_EQ(Detokenize(model.get(), ids, true), text);
  }
  EXPECT_EQ(Tokenize(model.get(), "Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  nlohmann::json spm = ReadJson(ModelPath("tokenizer-llama-spm.json"));
  int compared = 0;
  for (const auto& c : spm["cases"]) {
    if (c["parse_special"].get<bool>()) continue;  // the C API tokenizes text without specials
    const std::string text = c["prompt"];
    EXPECT_EQ(Tokenize(model.get(), text, true), c["prompt_ids"].get<std::vector<int32_t>>())
        << "llama.cpp's ids for '" << text << "'";
    ++compared;
  }
  EXPECT_EQ(compared, 180);
  SessionPtr session = MakeGreedySession(model.get(), 64);
  Collected got;
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 16;
  g.on_token = &Collected::OnToken;
  g.user_data = &got;
  kestrel_generate_stats_t stats{};
  stats.struct_size = sizeof(stats);
  KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), "Hello", 5, &g, &stats));
  EXPECT_GT(stats.n_generated_tokens, 0u);
  EXPECT_EQ(got.tokens.size(), stats.n_generated_tokens);
  for (int32_t t : got.tokens) EXPECT_TRUE(t >= 0 && t < 32000);
  // Greedy is deterministic: a second run gives the same tokens.
  Collected again;
  g.user_data = &again;
  KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), "Hello", 5, &g, &stats));
  EXPECT_EQ(again.tokens, got.tokens);
}

}  // namespace
}  // namespace kestrel::testing
