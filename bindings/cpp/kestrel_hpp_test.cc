// Tests of kestrel.hpp, the header-only C++ wrapper, against the real library and the shared
// stories260K model: golden tokens and text, errors as kestrel::Error with the library's code and
// message, ownership (moves, model copies, any destroy order), streaming callables (bool / void
// return, early stop, exceptions), the low-level calls, plugin/device listing, callbacks.
#include "kestrel/kestrel.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace {

std::string ModelsDir() {
  const char* d = std::getenv("KESTREL_MODELS_DIR");
  return d != nullptr ? d : "../shared/models";
}
std::string ModelPath() { return ModelsDir() + "/stories260K.gguf"; }
std::string TestDevice() {
  const char* d = std::getenv("KESTREL_TEST_DEVICE");
  return d != nullptr && *d != '\0' ? d : "ref";
}

std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

struct GoldenCase {
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated_ids;
  std::string generated_text;
};

std::vector<GoldenCase> ReadGolden() {
  std::ifstream f(ModelsDir() + "/stories260K.golden.json");
  if (!f.good()) throw std::runtime_error("cannot open stories260K.golden.json in " + ModelsDir());
  nlohmann::json j = nlohmann::json::parse(f);
  std::vector<GoldenCase> cases;
  for (const auto& c : j["cases"]) {
    cases.push_back(GoldenCase{c["prompt"], c["prompt_ids"], c["generated_ids"],
                               FromHex(c["generated_text_hex"])});
  }
  return cases;
}

kestrel::ModelOptions TestModelOptions() {
  kestrel::ModelOptions o;
  o.device = TestDevice();
  return o;
}

kestrel::SessionOptions Greedy() {
  kestrel::SessionOptions o;
  o.sampler = kestrel::SamplerOptions::Greedy();
  return o;
}

// Runs `fn`, expects a kestrel::Error with `code` whose message contains `needle`.
template <typename Fn>
void ExpectError(Fn&& fn, kestrel::StatusCode code, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected " << kestrel::StatusCodeName(code);
  } catch (const kestrel::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_FALSE(e.message().empty());
    EXPECT_NE(e.message().find(needle), std::string::npos)
        << "message \"" << e.message() << "\" does not name '" << needle << "'";
    // what() = "<CODE_NAME>: <message>"
    EXPECT_EQ(std::string(e.what()),
              std::string(kestrel::StatusCodeName(code)) + ": " + e.message());
    EXPECT_STREQ(e.code_name(), kestrel::StatusCodeName(code));
  }
}

class KestrelHppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = ReadGolden();
    ASSERT_FALSE(golden_.empty());
    model_ = runtime_.LoadModel(ModelPath(), TestModelOptions());
  }

  kestrel::Runtime runtime_;
  kestrel::Model model_;
  std::vector<GoldenCase> golden_;
};

TEST(KestrelHppVersion, MatchesHeaders) {
  EXPECT_EQ(kestrel::VersionNumber() / 10000, static_cast<uint32_t>(KESTREL_VERSION_MAJOR));
  EXPECT_GE(kestrel::VersionNumber(), static_cast<uint32_t>(KESTREL_VERSION_NUMBER));
  EXPECT_FALSE(kestrel::Version().empty());
}

// The plain structs' defaults equal the C init functions' (they must not drift apart).
TEST(KestrelHppOptions, DefaultsEqualTheCInitFunctions) {
  kestrel_sampler_options_t cs;
  kestrel_sampler_options_init(&cs);
  kestrel::SamplerOptions s;
  EXPECT_EQ(s.temperature, cs.temperature);
  EXPECT_EQ(s.top_k, cs.top_k);
  EXPECT_EQ(s.top_p, cs.top_p);
  EXPECT_EQ(s.min_p, cs.min_p);
  EXPECT_EQ(s.repetition_penalty, cs.repetition_penalty);
  EXPECT_EQ(s.repetition_window, cs.repetition_window);
  EXPECT_EQ(s.seed, cs.seed);

  kestrel_session_options_t cso;
  kestrel_session_options_init(&cso);
  kestrel::SessionOptions so;
  EXPECT_EQ(so.context_length, cso.context_length);
  EXPECT_EQ(so.kv_block_size, cso.kv_block_size);
  EXPECT_EQ(so.n_threads, cso.n_threads);

  kestrel_generate_options_t cg;
  kestrel_generate_options_init(&cg);
  kestrel::GenerateOptions g;
  EXPECT_EQ(g.max_new_tokens, cg.max_new_tokens);
  EXPECT_EQ(g.add_bos, cg.add_bos);
  EXPECT_EQ(g.keep_context, cg.keep_context);
  EXPECT_TRUE(g.stop_strings.empty());

  kestrel_model_options_t cm;
  kestrel_model_options_init(&cm);
  kestrel::ModelOptions m;
  EXPECT_EQ(m.use_mmap, cm.use_mmap);
  EXPECT_TRUE(m.device.empty());

  kestrel_runtime_options_t cr;
  kestrel_runtime_options_init(&cr);
  kestrel::RuntimeOptions r;
  EXPECT_EQ(static_cast<int>(r.log_level), static_cast<int>(cr.log_level));
}

// Speculative decoding through the wrapper: the same golden ids with a draft model, its stats, and
// a draft with another vocab refused with the library's message.
TEST_F(KestrelHppTest, SpeculativeDraftKeepsTheGoldenIds) {
  kestrel::Model draft = runtime_.LoadModel(ModelsDir() + "/stories260K-first4L.gguf", TestModelOptions());
  kestrel::SessionOptions o = Greedy();
  o.speculative.method = kestrel::SpecMethod::kDraft;
  o.speculative.draft_model = &draft;
  o.speculative.max_draft_tokens = 4;
  kestrel::Session session(model_, o);
  const GoldenCase& c = golden_[0];
  kestrel::GenerateOptions go;
  go.max_new_tokens = static_cast<uint32_t>(c.generated_ids.size());
  EXPECT_EQ(session.Complete(c.prompt, go).tokens, c.generated_ids);
  const kestrel::SpeculativeStats st = session.Speculative();
  EXPECT_GT(st.drafted, 0u);
  EXPECT_GT(st.accepted, 0u);
  EXPECT_EQ(st.drafted_by_method[KESTREL_SPEC_DRAFT], st.drafted);

  kestrel::Model other = runtime_.LoadModel(ModelsDir() + "/llama-2-tiny-random.gguf", TestModelOptions());
  o.speculative.draft_model = &other;
  ExpectError([&] { kestrel::Session bad(model_, o); }, kestrel::StatusCode::kInvalidArgument,
              "must share the target's vocab");
}

// Constrained output through the wrapper: a grammar and a JSON schema, and a bad grammar's
// position in the exception.
TEST_F(KestrelHppTest, GrammarAndJsonSchemaConstrainTheOutput) {
  kestrel::Session session(model_, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = 20;
  go.grammar = "root ::= (\"up\" | \"down\") \" \" [1-3] \"!\"\n";
  kestrel::GenerateResult r = session.Complete("Once upon a time", go);
  EXPECT_EQ(r.stats.stop_reason, kestrel::StopReason::kEos) << r.text;
  EXPECT_TRUE(r.text == "up 1!" || r.text == "up 2!" || r.text == "up 3!" || r.text == "down 1!" ||
              r.text == "down 2!" || r.text == "down 3!") << r.text;
  go.grammar.clear();
  go.max_new_tokens = 100;
  go.json_schema = R"({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})";
  r = session.Complete("Lily", go);
  EXPECT_EQ(r.stats.stop_reason, kestrel::StopReason::kEos) << r.text;
  EXPECT_EQ(r.text.front(), '{');
  EXPECT_NE(r.text.find("\"n\""), std::string::npos) << r.text;
  go.json_schema.clear();
  go.grammar = "root ::= \"a\" (";
  ExpectError([&] { session.Complete("x", go); }, kestrel::StatusCode::kInvalidArgument,
              "grammar line 1, column 14");
}

TEST_F(KestrelHppTest, GoldenTokensAndText) {
  for (const GoldenCase& c : golden_) {
    SCOPED_TRACE("prompt: " + c.prompt);
    EXPECT_EQ(model_.Tokenize(c.prompt), c.prompt_ids);
    kestrel::Session session(model_, Greedy());
    kestrel::GenerateOptions go;
    go.max_new_tokens = static_cast<uint32_t>(c.generated_ids.size());
    kestrel::GenerateResult r = session.Complete(c.prompt, go);
    EXPECT_EQ(r.tokens, c.generated_ids);
    EXPECT_EQ(r.text, c.generated_text);
    EXPECT_EQ(r.stats.n_prompt_tokens, c.prompt_ids.size());
    EXPECT_EQ(r.stats.n_generated_tokens, c.generated_ids.size());
    EXPECT_EQ(r.stats.stop_reason, kestrel::StopReason::kMaxTokens);
    // The same ids from a token prompt.
    std::vector<int32_t> ids;
    session.GenerateTokens(c.prompt_ids, go, [&ids](int32_t t, std::string_view) {
      if (t != kestrel::kTokenNone) ids.push_back(t);
      return true;
    });
    EXPECT_EQ(ids, c.generated_ids);
    EXPECT_EQ(model_.Detokenize(c.generated_ids), c.generated_text);
  }
}

TEST_F(KestrelHppTest, TokenizerRoundTripAndPieces) {
  const std::string text = "Once upon a time, there was a cat.";
  std::vector<int32_t> ids = model_.Tokenize(text, /*add_bos=*/false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(model_.Detokenize(ids, /*remove_leading_space=*/true), text);
  std::string joined;
  for (int32_t id : ids) joined += model_.TokenToPiece(id);
  EXPECT_EQ(joined, " " + text);  // SPM adds one leading space
  // Long text: more tokens than the wrapper's first guess of buffer size is fine either way.
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += "abc xyz ";
  EXPECT_EQ(model_.Detokenize(model_.Tokenize(long_text, false), true), long_text);
  EXPECT_TRUE(model_.Tokenize("", false).empty());
}

TEST_F(KestrelHppTest, ChatTemplateSpecialTokensAndVocabOnly) {
  // stories260K has no template: NOT_FOUND naming the key; an explicit one renders.
  const std::vector<kestrel::ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi"}};
  ExpectError([&] { model_.ApplyChatTemplate(messages); }, kestrel::StatusCode::kNotFound,
              "tokenizer.chat_template");
  kestrel::ChatTemplateOptions o;
  o.template_text = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant]{% endif %}";
  EXPECT_EQ(model_.ApplyChatTemplate(messages, o), "<s>[system] Be brief.\n[user] Hi\n[assistant]");
  o.add_generation_prompt = false;
  EXPECT_EQ(model_.ApplyChatTemplate(messages, o), "<s>[system] Be brief.\n[user] Hi\n");
  o.template_text = "{% for %}";
  ExpectError([&] { model_.ApplyChatTemplate(messages, o); }, kestrel::StatusCode::kInvalidArgument,
              "options->template_text");

  const kestrel::TokenizerInfo t = model_.Tokenizer();
  EXPECT_EQ(t.kind, "spm");
  EXPECT_EQ(t.chat_template, "");
  EXPECT_NE(t.chat_template_error.find("tokenizer.chat_template"), std::string::npos);
  const std::vector<int32_t> eog = model_.EndOfGenerationTokens();
  EXPECT_NE(std::find(eog.begin(), eog.end(), t.eos_id), eog.end());
  EXPECT_EQ(model_.Tokenize("a</s>", false, true).back(), t.eos_id);
  EXPECT_NE(model_.Tokenize("a</s>", false, false).back(), t.eos_id);
  EXPECT_EQ(model_.TokenToPiece(t.eos_id, /*special=*/true), "</s>");
  EXPECT_EQ(model_.TokenToPiece(t.eos_id), "");

  kestrel::ModelOptions vo;
  vo.metadata_only = true;
  kestrel::Model vocab = runtime_.LoadModel(ModelPath(), vo);
  EXPECT_EQ(vocab.Tokenize("Once upon a time"), model_.Tokenize("Once upon a time"));
  ExpectError([&] { kestrel::Session s(vocab, Greedy()); }, kestrel::StatusCode::kFailedPrecondition,
              "metadata-only");
}

TEST_F(KestrelHppTest, InfoPluginsAndDevices) {
  kestrel::ModelInfo info = model_.Info();
  EXPECT_EQ(info.architecture, "llama");
  EXPECT_EQ(info.device, TestDevice());
  EXPECT_GT(info.vocab_size, 0u);
  EXPECT_GT(info.n_layers, 0u);
  EXPECT_FALSE(model_.TensorTypes().empty());
  EXPECT_TRUE(info.runnable);
  EXPECT_TRUE(info.unsupported.empty());
  EXPECT_EQ(info.tokenizer_model, "llama");
  // Metadata only: the same description without weights.
  kestrel::ModelOptions meta_options;
  meta_options.metadata_only = true;
  kestrel::ModelInfo meta = runtime_.LoadModel(ModelPath(), meta_options).Info();
  EXPECT_EQ(meta.n_layers, info.n_layers);
  EXPECT_TRUE(meta.runnable);

  std::vector<kestrel::PluginInfo> plugins = runtime_.Plugins();
  bool ref_loaded = false;
  for (const auto& p : plugins) {
    if (p.name == "ref" && p.loaded) ref_loaded = true;
    if (p.loaded) {
      EXPECT_TRUE(p.skip_reason.empty()) << p.name;
    }
  }
  EXPECT_TRUE(ref_loaded);
  std::vector<kestrel::DeviceInfo> devices = runtime_.Devices();
  bool has_ref = false;
  for (const auto& d : devices) {
    EXPECT_FALSE(d.name.empty());
    if (d.name == "ref") {
      has_ref = true;
      EXPECT_EQ(d.plugin, "ref");
      EXPECT_EQ(d.kind, kestrel::DeviceKind::kCpu);
      EXPECT_TRUE(d.dtype_mask & KESTREL_DTYPE_MASK_F32);
    }
  }
  EXPECT_TRUE(has_ref);
}

TEST_F(KestrelHppTest, ErrorsCarryCodesAndMessages) {
  ExpectError([&] { runtime_.LoadModel("/nonexistent/kestrel/missing_model.gguf"); },
              kestrel::StatusCode::kNotFound, "missing_model.gguf");
  ExpectError(
      [&] {
        kestrel::ModelOptions o;
        o.device = "no_such_device";
        runtime_.LoadModel(ModelPath(), o);
      },
      kestrel::StatusCode::kNotFound, "no_such_device");
  ExpectError(
      [&] {
        kestrel::SessionOptions o;
        o.sampler.top_p = 1.5f;
        kestrel::Session s(model_, o);
      },
      kestrel::StatusCode::kInvalidArgument, "top_p");

  kestrel::Session session(model_, Greedy());
  ExpectError([&] { session.Generate(""); }, kestrel::StatusCode::kInvalidArgument, "prompt");
  ExpectError([&] { session.Truncate(5); }, kestrel::StatusCode::kOutOfRange, "5");
  ExpectError([&] { session.Sample(); }, kestrel::StatusCode::kFailedPrecondition, "logits");
  ExpectError([&] { session.Logits(); }, kestrel::StatusCode::kFailedPrecondition, "");
  const int32_t bad = 1 << 30;
  ExpectError([&] { model_.Detokenize({bad}); }, kestrel::StatusCode::kOutOfRange,
              std::to_string(bad));
  ExpectError([&] { session.Decode({bad}); }, kestrel::StatusCode::kOutOfRange,
              std::to_string(bad));
  kestrel::SessionOptions tiny = Greedy();
  tiny.context_length = 4;
  kestrel::Session small(model_, tiny);
  ExpectError([&] { small.Generate("Once upon a time there was"); },
              kestrel::StatusCode::kInvalidArgument, "context length");

  // kestrel::Error is a std::runtime_error: generic handlers see the code name and message.
  try {
    session.Truncate(99);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("OUT_OF_RANGE: ", 0), 0u) << e.what();
  }
}

// Not a fixture test: it creates and destroys runtimes, and only one runtime is alive at a time
// (see TwoRuntimesDestroyOne below).
TEST(KestrelHppLifetimes, MoveSemanticsAndDestroyOrder) {
  const std::vector<GoldenCase> golden = ReadGolden();
  const std::vector<int32_t> want8(golden[0].generated_ids.begin(),
                                   golden[0].generated_ids.begin() + 8);
  kestrel::GenerateOptions go;
  go.max_new_tokens = 8;
  {
    // Runtime: move construction and assignment transfer the one handle.
    kestrel::Runtime a;
    kestrel_runtime_t* handle = a.get();
    ASSERT_NE(handle, nullptr);
    kestrel::Runtime b(std::move(a));
    EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): documented moved-from state
    EXPECT_EQ(b.get(), handle);
    a = std::move(b);
    EXPECT_EQ(a.get(), handle);
    EXPECT_EQ(b.get(), nullptr);  // NOLINT(bugprone-use-after-move)
    EXPECT_FALSE(a.Devices().empty());
    // A moved-from runtime is empty: calls fail cleanly with INVALID_ARGUMENT, never crash.
    EXPECT_TRUE(b.Devices().empty());  // NOLINT(bugprone-use-after-move)
    EXPECT_TRUE(b.Plugins().empty());
    ExpectError([&] { b.LoadModel(ModelPath()); }, kestrel::StatusCode::kInvalidArgument,
                "runtime");

    // Model copies share one reference-counted model; moves leave an empty model behind.
    kestrel::Model m1 = a.LoadModel(ModelPath(), TestModelOptions());
    kestrel::Model m2 = m1;
    EXPECT_EQ(m1.get(), m2.get());
    kestrel::Model m3(std::move(m1));
    EXPECT_FALSE(m1);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(m3.get(), m2.get());
    ExpectError([&] { m1.Info(); }, kestrel::StatusCode::kInvalidArgument, "model");
    m1 = m3;  // copy-assign into the moved-from model
    EXPECT_EQ(m1.get(), m3.get());
    m1 = kestrel::Model();
    EXPECT_FALSE(m1);
    m2 = std::move(m3);
    EXPECT_TRUE(m2);
    EXPECT_FALSE(m3);  // NOLINT(bugprone-use-after-move)

    // Sessions: move construction and assignment; the assigned-to session is destroyed.
    kestrel::Session s1(m2, Greedy());
    kestrel::Session s2(std::move(s1));
    EXPECT_EQ(s1.get(), nullptr);  // NOLINT(bugprone-use-after-move)
    ExpectError([&] { s1.Generate("Once"); }, kestrel::StatusCode::kInvalidArgument, "session");
    EXPECT_EQ(s1.TokenCount(), 0u);
    kestrel::Session s3(m2, Greedy());
    s3 = std::move(s2);
    EXPECT_EQ(s2.get(), nullptr);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(s3.Complete(golden[0].prompt, go).tokens, want8);
  }
  // Destroy order does not matter: the runtime goes first, then the model; the session keeps
  // its model alive and still generates the golden tokens.
  std::unique_ptr<kestrel::Session> session;
  {
    kestrel::Runtime r;
    kestrel::Model m = r.LoadModel(ModelPath(), TestModelOptions());
    session = std::make_unique<kestrel::Session>(m, Greedy());
  }
  EXPECT_EQ(session->Complete(golden[0].prompt, go).tokens, want8);
  EXPECT_EQ(session->model().Info().architecture, "llama");
}

// Two runtimes in one process, one destroyed while the other is used: plugin libraries are
// shared per process and shut down only when their last user goes.
TEST(KestrelHppLifetimes, TwoRuntimesDestroyOne) {
  kestrel::Runtime keep;
  { kestrel::Runtime other; }
  kestrel::Model m = keep.LoadModel(ModelPath(), TestModelOptions());
  kestrel::Session s(m, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = 2;
  EXPECT_EQ(s.Complete("Once upon a time", go).tokens.size(), 2u);
}

TEST_F(KestrelHppTest, CallableStopsEarly) {
  kestrel::Session session(model_, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = 32;
  std::vector<int32_t> seen;
  kestrel::GenerateStats stats =
      session.Generate(golden_[0].prompt, go, [&seen](int32_t token, std::string_view) {
        seen.push_back(token);
        return seen.size() < 3;  // stop after the third token
      });
  EXPECT_EQ(stats.stop_reason, kestrel::StopReason::kCallback);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen, std::vector<int32_t>(golden_[0].generated_ids.begin(),
                                       golden_[0].generated_ids.begin() + 3));
  EXPECT_EQ(stats.n_generated_tokens, 3u);

  // A void callable never stops the generation; a const function object works too.
  size_t n = 0;
  stats = session.Generate(golden_[0].prompt, go, [&n](int32_t, std::string_view) { ++n; });
  EXPECT_EQ(stats.stop_reason, kestrel::StopReason::kMaxTokens);
  EXPECT_EQ(n, 32u);
  struct Counter {
    size_t* n;
    bool operator()(int32_t, std::string_view) const { return ++*n < 5; }
  };
  const Counter counter{&n};
  n = 0;
  stats = session.Generate(golden_[0].prompt, go, counter);
  EXPECT_EQ(n, 5u);
  EXPECT_EQ(stats.stop_reason, kestrel::StopReason::kCallback);

  // A std::function works as well.
  std::string text;
  std::function<bool(int32_t, std::string_view)> fn = [&text](int32_t, std::string_view piece) {
    text.append(piece.data(), piece.size());
    return true;
  };
  go.max_new_tokens = static_cast<uint32_t>(golden_[0].generated_ids.size());
  session.Generate(golden_[0].prompt, go, fn);
  EXPECT_EQ(text, golden_[0].generated_text);
}

TEST_F(KestrelHppTest, CallbackExceptionPropagatesAndSessionStaysUsable) {
  struct Boom : std::exception {};
  kestrel::Session session(model_, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = 16;
  int calls = 0;
  EXPECT_THROW(session.Generate(golden_[0].prompt, go,
                                [&calls](int32_t, std::string_view) -> bool {
                                  if (++calls == 2) throw Boom();
                                  return true;
                                }),
               Boom);
  EXPECT_EQ(calls, 2);
  go.max_new_tokens = 4;
  EXPECT_EQ(session.Complete(golden_[0].prompt, go).tokens,
            std::vector<int32_t>(golden_[0].generated_ids.begin(),
                                 golden_[0].generated_ids.begin() + 4));
}

TEST_F(KestrelHppTest, CancelFromTheCallback) {
  kestrel::Session session(model_, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = 32;
  int calls = 0;
  ExpectError(
      [&] {
        session.Generate(golden_[0].prompt, go, [&](int32_t, std::string_view) {
          if (++calls == 2) session.Cancel();
          return true;
        });
      },
      kestrel::StatusCode::kCancelled, "cancel");
  EXPECT_LT(calls, 32);
}

TEST_F(KestrelHppTest, DecodeLogitsSampleTruncate) {
  const GoldenCase& c = golden_[0];
  kestrel::Session session(model_, Greedy());
  session.Decode(c.prompt_ids);
  EXPECT_EQ(session.TokenCount(), c.prompt_ids.size());
  std::vector<float> logits = session.Logits();
  ASSERT_EQ(logits.size(), model_.Info().vocab_size);
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  EXPECT_EQ(static_cast<int32_t>(best), c.generated_ids[0]);
  // Greedy sampling + decoding step by step reproduces the golden continuation.
  std::vector<int32_t> ids;
  for (size_t i = 0; i < 8; ++i) {
    int32_t t = session.Sample();
    ids.push_back(t);
    session.Decode({t});
  }
  EXPECT_EQ(ids, std::vector<int32_t>(c.generated_ids.begin(), c.generated_ids.begin() + 8));
  EXPECT_EQ(session.TokenCount(), c.prompt_ids.size() + 8);
  // Roll back to the prompt and decode the first generated token again: same logits.
  session.Truncate(c.prompt_ids.size() - 1);
  session.Decode({c.prompt_ids.back()});
  EXPECT_EQ(session.Logits(), logits);
  session.Truncate(0);
  EXPECT_EQ(session.TokenCount(), 0u);
}

TEST_F(KestrelHppTest, KeepContextContinues) {
  const GoldenCase& c = golden_[0];
  kestrel::Session session(model_, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = 4;
  kestrel::GenerateResult first = session.Complete(c.prompt, go);
  ASSERT_EQ(first.tokens.size(), 4u);
  // Continue from the last generated token, which generate does not decode itself.
  go.keep_context = true;
  std::vector<int32_t> next;
  session.GenerateTokens({first.tokens.back()}, go, [&next](int32_t t, std::string_view) {
    if (t != kestrel::kTokenNone) next.push_back(t);
  });
  EXPECT_EQ(next, std::vector<int32_t>(c.generated_ids.begin() + 4, c.generated_ids.begin() + 8));
}

TEST_F(KestrelHppTest, StopStrings) {
  const GoldenCase& c = golden_[0];
  kestrel::Session session(model_, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = static_cast<uint32_t>(c.generated_ids.size());
  const std::string stop = "Lily";
  go.stop_strings = {stop};
  kestrel::GenerateResult r = session.Complete(c.prompt, go);
  const size_t at = c.generated_text.find(stop);
  ASSERT_NE(at, std::string::npos);
  EXPECT_EQ(r.text, c.generated_text.substr(0, at));
  EXPECT_EQ(r.stats.stop_reason, kestrel::StopReason::kStopString);
}

TEST(KestrelHppCallbacks, LogAndProgress) {
  std::vector<std::string> lines;
  kestrel::RuntimeOptions ro;
  ro.log_level = kestrel::LogLevel::kDebug;
  ro.log = [&lines](kestrel::LogLevel, std::string_view message) {
    lines.emplace_back(message);
  };
  kestrel::Model model;
  {
    kestrel::Runtime runtime(ro);
    std::vector<float> progress;
    kestrel::ModelOptions mo = TestModelOptions();
    mo.progress = [&progress](float p) {
      progress.push_back(p);
      return true;
    };
    model = runtime.LoadModel(ModelPath(), mo);
    ASSERT_FALSE(progress.empty());
    EXPECT_EQ(progress.back(), 1.0f);

    mo.progress = [](float) { return false; };
    ExpectError([&] { runtime.LoadModel(ModelPath(), mo); }, kestrel::StatusCode::kCancelled,
                "");
    struct Stop : std::exception {};
    mo.progress = [](float) -> bool { throw Stop(); };
    EXPECT_THROW(runtime.LoadModel(ModelPath(), mo), Stop);
  }
  EXPECT_FALSE(lines.empty());
  // The runtime is gone; the model (and the log sink it keeps alive) still work.
  kestrel::Session session(model, Greedy());
  kestrel::GenerateOptions go;
  go.max_new_tokens = 2;
  EXPECT_EQ(session.Complete("Once upon a time", go).tokens.size(), 2u);
}

}  // namespace

// Session state and packages through the wrapper: save after a few tokens, restore into a new
// session (of a package of the same model), continue: the same tokens as one uninterrupted run.
TEST_F(KestrelHppTest, SessionStateAndPackage) {
  const std::vector<int32_t> prompt = golden_[0].prompt_ids;
  kestrel::GenerateOptions first;
  first.max_new_tokens = 8;
  kestrel::GenerateOptions all;
  all.max_new_tokens = 20;
  kestrel::Session full(model_, Greedy());
  std::vector<int32_t> want;
  full.GenerateTokens(prompt, all, [&](int32_t t, std::string_view) {
    if (t != kestrel::kTokenNone) want.push_back(t);
  });
  std::vector<int32_t> got;
  auto collect = [&](int32_t t, std::string_view) {
    if (t != kestrel::kTokenNone) got.push_back(t);
  };
  std::vector<uint8_t> state;
  {
    kestrel::Session s(model_, Greedy());
    s.GenerateTokens(prompt, first, collect);
    state = s.SaveState();
  }
  const std::string pkg = ::testing::TempDir() + "/kestrel_hpp_test.kpkg";
  kestrel::WritePackage(runtime_, ModelPath(), pkg);
  EXPECT_NE(kestrel::DescribePackage(pkg, true).find("\"architecture\":\"llama\""), std::string::npos);
  kestrel::Model packaged = runtime_.LoadModel(pkg, TestModelOptions());
  EXPECT_EQ(kestrel::GetWeightSources(packaged).imported, 0u);
  kestrel::Session resumed(packaged, Greedy());
  resumed.LoadState(state);
  kestrel::GenerateOptions rest;
  rest.max_new_tokens = 12;
  rest.keep_context = true;
  resumed.GenerateTokens({}, rest, collect);
  EXPECT_EQ(got, want);
  state[state.size() / 2] ^= 1;
  ExpectError([&] { resumed.LoadState(state); }, kestrel::StatusCode::kDataLoss, "checksum");
  std::remove(pkg.c_str());
}

// Memory offload through the wrapper: tiny-moe-f32 under a host budget that leaves its experts in
// the file gives the resident greedy ids, and the plan and statistics carry the C API's numbers.
TEST(KestrelHppOffload, PlanAndStatsOfABudgetedMoeModel) {
  const std::string path = ModelsDir() + "/tiny-moe-f32.gguf";
  kestrel::Runtime runtime;
  kestrel::ModelOptions meta;
  meta.device = "cpu";
  meta.metadata_only = true;
  meta.memory_budget = "host=unlimited";
  meta.plan_context_length = 64;
  const kestrel::MemoryPlan full = runtime.LoadModel(path, meta).GetMemoryPlan();
  ASSERT_FALSE(full.experts_offloaded);
  ASSERT_EQ(full.experts_total, 16u);
  const uint64_t slot = full.expert_bytes / full.experts_total;
  const uint64_t host = full.resident_bytes - full.expert_bytes + full.kv_bytes + 10 * slot;

  kestrel::ModelOptions o;
  o.device = "cpu";
  kestrel::Model resident = runtime.LoadModel(path, o);
  ExpectError([&] { resident.GetOffloadStats(); }, kestrel::StatusCode::kFailedPrecondition,
              "expert cache");
  EXPECT_GT(resident.GetMemoryStats().device_bytes, 0u);
  o.memory_budget = "host=" + std::to_string(host);
  o.expert_cache_policy = KESTREL_EXPERT_CACHE_LFU;
  o.plan_context_length = 64;
  kestrel::Model budgeted = runtime.LoadModel(path, o);
  const kestrel::MemoryPlan plan = budgeted.GetMemoryPlan();
  EXPECT_TRUE(plan.experts_offloaded);
  EXPECT_EQ(plan.expert_slots, 9u);
  EXPECT_EQ(plan.device_budget_bytes, host);

  const std::vector<int32_t> prompt = {1, 5, 9, 13};
  auto greedy = [&](const kestrel::Model& m) {
    kestrel::SessionOptions so = Greedy();
    so.context_length = 64;
    kestrel::Session s(m, so);
    s.Decode(prompt);
    std::vector<int32_t> ids;
    for (int i = 0; i < 16; ++i) {
      ids.push_back(s.Sample());
      s.Decode({ids.back()});
    }
    return ids;
  };
  EXPECT_EQ(greedy(budgeted), greedy(resident));
  const kestrel::OffloadStats st = budgeted.GetOffloadStats();
  kestrel_offload_stats_t c{};
  c.struct_size = sizeof(c);
  ASSERT_EQ(kestrel_model_get_offload_stats(budgeted.get(), &c), nullptr);
  EXPECT_EQ(st.expert_hits, c.expert_hits);
  EXPECT_EQ(st.expert_misses, c.expert_misses);
  EXPECT_GT(st.expert_misses, 0u);
  EXPECT_EQ(st.disk_bytes_read, c.disk_bytes_read);
  EXPECT_EQ(st.expert_cache_peak_bytes, c.expert_cache_peak_bytes);
  EXPECT_LE(st.expert_cache_peak_bytes, st.expert_cache_budget_bytes);
  EXPECT_EQ(st.policy, KESTREL_EXPERT_CACHE_LFU);
  EXPECT_EQ(st.io_mode, c.io_mode);
  EXPECT_EQ(st.expert_slots, c.expert_slots);
  EXPECT_EQ(st.expert_prefetch_buffers, 2u);  // on by default
  EXPECT_EQ(st.expert_prefetches, c.expert_prefetches);
  EXPECT_EQ(st.expert_host_runs, 0u);  // the model's device is the host
  ASSERT_EQ(st.layers.size(), 4u);
  uint64_t hits = 0, misses = 0;
  for (const kestrel::ExpertLayerStats& l : st.layers) {
    hits += l.hits;
    misses += l.misses;
  }
  EXPECT_EQ(hits, st.expert_hits);
  EXPECT_EQ(misses, st.expert_misses);
  const kestrel::MemoryStats mem = budgeted.GetMemoryStats();
  EXPECT_EQ(mem.device, "cpu");
  EXPECT_EQ(mem.expert_bytes_read, st.disk_bytes_read);
  budgeted.ResetOffloadStats();
  EXPECT_EQ(budgeted.GetOffloadStats().expert_misses, 0u);
}
