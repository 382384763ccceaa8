// Session state (ctest label kpkg): save after N tokens, destroy the session and the model, load
// into a new one: the continuation is token-identical to an uninterrupted run (greedy and
// sampled with the same seed, F32 and F16 KV, GGUF and .kpkg). Damaged, truncated, foreign and
// wrong-version states are refused with a message naming what is wrong, and leave the session as
// it was. Speculative sessions save and restore the same state. (tests/kpkg/kpkg_cli_test.sh
// does the same across processes through the CLI.)
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/package/checksum.h"
#include "runtime/package/session_state_format.h"
#include "tests/kpkg/kpkg_test_util.h"

namespace kestrel::testing {
namespace {

struct GenRun {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> state;
};

runtime::SessionConfig Config(float temperature, uint32_t kv_dtype) {
  runtime::SessionConfig c;
  c.context_length = 128;
  c.sampler.temperature = temperature;
  c.sampler.seed = 1234;
  c.sampler.repetition_penalty = 1.1f;  // the window travels too
  c.kv_dtype = kv_dtype;
  return c;
}

// Generates `n` tokens after `prompt`; with save, the state afterwards.
GenRun Generate(const runtime::Model& model, hal::Device* ref, const runtime::SessionConfig& config,
             std::vector<int32_t> prompt, uint32_t n, bool save) {
  GenRun run;
  auto session = runtime::Session::Create(&model, ref, config);
  EXPECT_TRUE(session.ok()) << session.status();
  if (!session.ok()) return run;
  runtime::GenerateRequest req;
  req.prompt = std::move(prompt);
  req.max_new_tokens = n;
  auto r = (*session)->Generate(req);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return run;
  run.tokens = r->tokens;
  if (save) {
    auto size = (*session)->SaveState([&](uint64_t bytes) {
      run.state.resize(bytes);
      return run.state.data();
    });
    EXPECT_TRUE(size.ok()) << size.status();
  }
  return run;
}

// Loads `state` into a fresh session of `model` and continues for `n` tokens.
absl::StatusOr<std::vector<int32_t>> Resume(const runtime::Model& model, hal::Device* ref,
                                            const runtime::SessionConfig& config,
                                            const std::vector<uint8_t>& state, uint32_t n) {
  auto session = runtime::Session::Create(&model, ref, config);
  if (!session.ok()) return session.status();
  if (absl::Status s = (*session)->LoadState(state.data(), state.size()); !s.ok()) return s;
  runtime::GenerateRequest req;
  req.keep_context = true;
  req.max_new_tokens = n;
  auto r = (*session)->Generate(req);
  if (!r.ok()) return r.status();
  return r->tokens;
}

struct StateCase {
  const char* name;
  float temperature;
  uint32_t kv_dtype;
  bool package;  // resume from the .kpkg of the model the state was saved with
};

class SessionStateTest : public ::testing::TestWithParam<StateCase> {};

TEST_P(SessionStateTest, ContinuationIsTokenIdentical) {
  auto registry = MakeRegistry();
  hal::Device* ref = registry->ReferenceDevice();
  hal::Device* cpu = *registry->FindDevice("cpu");
  const std::string gguf = SharedModel("stories260K.gguf");
  const runtime::SessionConfig config = Config(GetParam().temperature, GetParam().kv_dtype);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  std::vector<int32_t> full, first, rest;
  std::vector<uint8_t> state;
  {
    auto model = runtime::Model::Load(gguf, cpu, {});
    ASSERT_TRUE(model.ok()) << model.status();
    full = Generate(**model, ref, config, prompt, 40, false).tokens;
    GenRun r = Generate(**model, ref, config, prompt, 15, true);
    first = r.tokens;
    state = std::move(r.state);
  }  // the model and session are gone
  ASSERT_EQ(first.size(), 15u);
  std::string path = gguf;
  const std::string pkg = TempPath("state_model.kpkg");
  if (GetParam().package) {
    ASSERT_TRUE(Pack(gguf, pkg, {cpu}).ok());
    path = pkg;
  }
  auto model = runtime::Model::Load(path, cpu, {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto resumed = Resume(**model, ref, config, state, 25);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  std::vector<int32_t> joined = first;
  joined.insert(joined.end(), resumed->begin(), resumed->end());
  EXPECT_EQ(joined, full);
  std::remove(pkg.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SessionStateTest,
    ::testing::Values(StateCase{"greedy_f32", 0.0f, KESTREL_DTYPE_F32, false},
                      StateCase{"sampled_f32", 0.9f, KESTREL_DTYPE_F32, false},
                      StateCase{"sampled_f16", 0.9f, KESTREL_DTYPE_F16, false},
                      StateCase{"greedy_from_package", 0.0f, KESTREL_DTYPE_F32, true}),
    [](const ::testing::TestParamInfo<StateCase>& i) { return i.param.name; });

// gemma3-tiny (window 8 on layers 0 and 1, layer 2 global) as an F32 GGUF at `path`.
absl::Status WriteGemma3Tiny(const std::string& path) {
  synth::SynthOptions o;
  o.shape = *synth::PresetShape("gemma3-tiny");
  o.type = runtime::GgmlType::F32;
  o.seed = 7;
  o.output_path = path;
  return synth::WriteSyntheticModel(o);
}

// 21 tokens: longer than the window.
std::vector<int32_t> Gemma3TinyPrompt() {
  std::vector<int32_t> prompt = {2};
  for (int i = 0; i < 20; ++i) prompt.push_back(260 + (i * 53) % 250);  // vocab 512
  return prompt;
}

// Sliding-window state (gemma3-tiny: window 8 on layers 0 and 1, layer 2 global): the session keeps
// only the window of layers 0 and 1, the state stores only what they hold, and the continuation
// is still token-identical, greedy and sampled.
TEST(SlidingWindowStateTest, WindowedLayersStoreTheirWindowAndContinueIdentically) {
  auto registry = MakeRegistry();
  hal::Device* ref = registry->ReferenceDevice();
  hal::Device* cpu = *registry->FindDevice("cpu");
  const std::string gguf = TempPath("gemma3_tiny_state.gguf");
  ASSERT_TRUE(WriteGemma3Tiny(gguf).ok());
  const std::vector<int32_t> prompt = Gemma3TinyPrompt();
  for (float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE(temperature);
    const runtime::SessionConfig config = Config(temperature, KESTREL_DTYPE_F32);
    auto model = runtime::Model::Load(gguf, cpu, {});
    ASSERT_TRUE(model.ok()) << model.status();
    const std::vector<int32_t> full = Generate(**model, ref, config, prompt, 40, false).tokens;
    GenRun r = Generate(**model, ref, config, prompt, 15, true);
    ASSERT_EQ(r.tokens.size(), 15u);
    auto meta = runtime::DecodeSessionState(r.state.data(), r.state.size());
    ASSERT_TRUE(meta.ok()) << meta.status();
    ASSERT_EQ(meta->layers.size(), 3u);
    const uint64_t n = meta->tokens.size();
    EXPECT_GT(meta->layers[0].first_position, 0u);  // 35 tokens, a window of 8: blocks dropped
    EXPECT_LE(meta->layers[0].first_position, n - 7);
    EXPECT_EQ(meta->layers[2].first_position, 0u);   // the global layer keeps everything
    model->reset();
    auto reloaded = runtime::Model::Load(gguf, cpu, {});
    ASSERT_TRUE(reloaded.ok()) << reloaded.status();
    auto resumed = Resume(**reloaded, ref, config, r.state, 25);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    std::vector<int32_t> joined = r.tokens;
    joined.insert(joined.end(), resumed->begin(), resumed->end());
    EXPECT_EQ(joined, full);
  }
  std::remove(gguf.c_str());
}

// Speculative sessions: the state holds what the output depends on (KV, history, pending token,
// sampler); the speculator starts over from the restored history. Greedy, a state saved by a
// speculative session continues token-identically in a speculative or a plain session, and one
// saved by a plain session in a speculative one; within one session, a keep_context generate with
// no prompt continues the same way (the pending token computed first).
runtime::SessionConfig WithSpec(runtime::SessionConfig c, runtime::SpecMethod method) {
  c.spec.method = method;
  c.spec.max_draft = 4;
  return c;
}

TEST(SpeculativeStateTest, GreedyContinuationIsTokenIdenticalWithAndWithoutSpeculation) {
  auto registry = MakeRegistry();
  hal::Device* ref = registry->ReferenceDevice();
  hal::Device* cpu = *registry->FindDevice("cpu");
  auto model = runtime::Model::Load(SharedModel("stories260K.gguf"), cpu, {});
  ASSERT_TRUE(model.ok()) << model.status();
  const runtime::SessionConfig plain = Config(0.0f, KESTREL_DTYPE_F32);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  const std::vector<int32_t> full = Generate(**model, ref, plain, prompt, 40, false).tokens;
  ASSERT_EQ(full.size(), 40u);
  const GenRun from_plain = Generate(**model, ref, plain, prompt, 15, true);
  for (runtime::SpecMethod method :
       {runtime::SpecMethod::kNgram, runtime::SpecMethod::kLookahead, runtime::SpecMethod::kSelf}) {
    SCOPED_TRACE(runtime::SpecMethodName(method));
    const runtime::SessionConfig spec = WithSpec(plain, method);
    GenRun r = Generate(**model, ref, spec, prompt, 15, true);
    ASSERT_EQ(r.tokens.size(), 15u);
    struct Leg {
      const std::vector<uint8_t>* state;
      const runtime::SessionConfig* into;
    };
    for (const Leg& leg : {Leg{&r.state, &spec}, Leg{&r.state, &plain}, Leg{&from_plain.state, &spec}}) {
      auto resumed = Resume(**model, ref, *leg.into, *leg.state, 25);
      ASSERT_TRUE(resumed.ok()) << resumed.status();
      std::vector<int32_t> joined(full.begin(), full.begin() + 15);
      joined.insert(joined.end(), resumed->begin(), resumed->end());
      EXPECT_EQ(joined, full);
    }
    // The same session goes on: the token it stopped on is computed, then sampling continues.
    auto session = runtime::Session::Create(model->get(), ref, spec);
    ASSERT_TRUE(session.ok()) << session.status();
    runtime::GenerateRequest req;
    req.prompt = prompt;
    req.max_new_tokens = 15;
    ASSERT_TRUE((*session)->Generate(req).ok());
    EXPECT_EQ((*session)->pending().size(), 1u);
    req.prompt.clear();
    req.keep_context = true;
    req.max_new_tokens = 25;
    auto more = (*session)->Generate(req);
    ASSERT_TRUE(more.ok()) << more.status();
    // Speculation really ran: the steps went through the speculative path, and drafted (the
    // fixed n-gram method only drafts from a repeated run of 2 tokens or more, which this short
    // story does not have).
    EXPECT_GT(more->spec.steps + more->spec.plain_steps, 0u);
    if (method != runtime::SpecMethod::kNgram) EXPECT_GT(more->spec.drafted, 0u);
    std::vector<int32_t> joined(full.begin(), full.begin() + 15);
    joined.insert(joined.end(), more->tokens.begin(), more->tokens.end());
    EXPECT_EQ(joined, full);
  }
}

// Sliding-window layers with speculation (gemma3-tiny, window 8): the state of a speculative
// session restores the windows its verified steps left, and continues token-identically.
TEST(SpeculativeStateTest, SlidingWindowLayersWithSpeculation) {
  auto registry = MakeRegistry();
  hal::Device* ref = registry->ReferenceDevice();
  hal::Device* cpu = *registry->FindDevice("cpu");
  const std::string gguf = TempPath("gemma3_tiny_spec_state.gguf");
  ASSERT_TRUE(WriteGemma3Tiny(gguf).ok());
  const std::vector<int32_t> prompt = Gemma3TinyPrompt();
  auto model = runtime::Model::Load(gguf, cpu, {});
  ASSERT_TRUE(model.ok()) << model.status();
  const runtime::SessionConfig plain = Config(0.0f, KESTREL_DTYPE_F32);
  const runtime::SessionConfig spec = WithSpec(plain, runtime::SpecMethod::kNgram);
  const std::vector<int32_t> full = Generate(**model, ref, plain, prompt, 40, false).tokens;
  GenRun r = Generate(**model, ref, spec, prompt, 15, true);
  ASSERT_EQ(r.tokens.size(), 15u);
  auto resumed = Resume(**model, ref, spec, r.state, 25);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  std::vector<int32_t> joined = r.tokens;
  joined.insert(joined.end(), resumed->begin(), resumed->end());
  EXPECT_EQ(joined, full);
  std::remove(gguf.c_str());
}

class SessionStateRefusalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = MakeRegistry();
    ref_ = registry_->ReferenceDevice();
    auto m = runtime::Model::Load(SharedModel("stories260K.gguf"), ref_, {});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    state_ = Generate(*model_, ref_, Config(0.0f, KESTREL_DTYPE_F32), {1, 403, 407}, 6, true).state;
    ASSERT_FALSE(state_.empty());
    auto s = runtime::Session::Create(model_.get(), ref_, Config(0.0f, KESTREL_DTYPE_F32));
    ASSERT_TRUE(s.ok());
    session_ = std::move(*s);
    const int32_t context[3] = {1, 403, 500};
    ASSERT_TRUE(session_->Decode(context).ok());
  }
  // Loading `bytes` fails with a message containing `what`, and the session keeps its context.
  void ExpectRefused(const std::vector<uint8_t>& bytes, const std::string& what) {
    absl::Status s = session_->LoadState(bytes.data(), bytes.size());
    EXPECT_FALSE(s.ok());
    if (!what.empty()) {
      EXPECT_NE(s.message().find(what), std::string::npos) << s;
    }
    EXPECT_EQ(session_->n_tokens(), 3u) << s;
    EXPECT_EQ(session_->history(), (std::vector<int32_t>{1, 403, 500}));
  }

  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* ref_ = nullptr;
  std::unique_ptr<runtime::Model> model_;
  std::unique_ptr<runtime::Session> session_;
  std::vector<uint8_t> state_;
};

TEST_F(SessionStateRefusalTest, TruncatedStates) {
  for (size_t n : {size_t{0}, size_t{2}, size_t{63}, size_t{64}, size_t{100}, state_.size() / 2,
                   state_.size() - 1}) {
    std::vector<uint8_t> b(state_.begin(), state_.begin() + static_cast<long>(n));
    ExpectRefused(b, n >= 64 ? "truncated" : "");
  }
}

TEST_F(SessionStateRefusalTest, EveryBitFlipIsRefused) {
  std::mt19937 rng(5);
  for (size_t at = 0; at < state_.size(); at += 1 + rng() % 97) {
    std::vector<uint8_t> b = state_;
    b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    ExpectRefused(b, "");
  }
  std::vector<uint8_t> b = state_;
  b[b.size() - 5] ^= 0x40;  // inside the KV data
  ExpectRefused(b, "data checksum mismatch");
}

TEST_F(SessionStateRefusalTest, WrongVersion) {
  std::vector<uint8_t> b = state_;
  b[4] = 7;
  const uint64_t sum = runtime::Xxh64Of(b.data(), 56);
  std::memcpy(&b[56], &sum, 8);
  ExpectRefused(b, "format version 7.0, this build reads version 1.x");
}

TEST_F(SessionStateRefusalTest, WrongModel) {
  auto other = runtime::Model::Load(SharedModel("tiny-moe-f32.gguf"), ref_, {});
  ASSERT_TRUE(other.ok());
  auto s = runtime::Session::Create(other->get(), ref_, Config(0.0f, KESTREL_DTYPE_F32));
  ASSERT_TRUE(s.ok());
  absl::Status st = (*s)->LoadState(state_.data(), state_.size());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("fingerprint"), std::string::npos) << st;
}

TEST_F(SessionStateRefusalTest, WrongKvTypeAndTooSmallContext) {
  auto f16 = runtime::Session::Create(model_.get(), ref_, Config(0.0f, KESTREL_DTYPE_F16));
  ASSERT_TRUE(f16.ok());
  absl::Status st = (*f16)->LoadState(state_.data(), state_.size());
  EXPECT_NE(st.message().find("saved as F32 but this session's is F16"), std::string::npos) << st;
  runtime::SessionConfig small = Config(0.0f, KESTREL_DTYPE_F32);
  small.context_length = 4;
  auto tiny = runtime::Session::Create(model_.get(), ref_, small);
  ASSERT_TRUE(tiny.ok());
  st = (*tiny)->LoadState(state_.data(), state_.size());
  EXPECT_NE(st.message().find("exceed this session's context length 4"), std::string::npos) << st;
}

TEST_F(SessionStateRefusalTest, NotAState) {
  std::vector<uint8_t> gguf = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
  ExpectRefused(gguf, "not a KSTA container");
}

}  // namespace
}  // namespace kestrel::testing
