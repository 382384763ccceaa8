// EAGLE-style draft heads (runtime/speculative/eagle_proposer.h): greedy output token-identical to
// plain decoding (the stories260K goldens) in sessions and the engine on ref and cpu, and heads
// files of the wrong shape or kind refused with a message naming the fault. The heads here are
// written by the test (seeded random layer weights around a pass-through of the hidden state);
// tools/train_eagle_test.sh trains real ones.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/gguf/gguf_writer.h"
#include "tests/speculative/spec_test_util.h"
#include "tests/temp_dir.h"

namespace kestrel::testing {
namespace {

using runtime::SpecMethod;

struct HeadShape {
  uint32_t n_embd = 64, n_vocab = 512, n_head = 4, n_ff = 128, window = 8;
  std::vector<uint64_t> fc_dims;  // empty: the right [2D, D]
};

// Writes the head to TestTempDir()/name and returns the path (removed at exit at the latest).
std::string WriteEagleHead(const HeadShape& s, const std::string& name) {
  const std::string path = TestTempDir().File(name);
  const uint64_t D = s.n_embd, F = s.n_ff;
  runtime::GgufWriter w;
  EXPECT_TRUE(w.AddString("general.architecture", "eagle").ok());
  EXPECT_TRUE(w.AddU32("eagle.n_embd", s.n_embd).ok());
  EXPECT_TRUE(w.AddU32("eagle.n_vocab", s.n_vocab).ok());
  EXPECT_TRUE(w.AddU32("eagle.n_head", s.n_head).ok());
  EXPECT_TRUE(w.AddU32("eagle.n_ff", s.n_ff).ok());
  EXPECT_TRUE(w.AddU32("eagle.window", s.window).ok());
  const std::vector<std::pair<std::string, std::vector<uint64_t>>> tensors = {
      {"eagle.fc.weight", s.fc_dims.empty() ? std::vector<uint64_t>{2 * D, D} : s.fc_dims},
      {"eagle.fc.bias", {D}},
      {"eagle.attn_q.weight", {D, D}},
      {"eagle.attn_k.weight", {D, D}},
      {"eagle.attn_v.weight", {D, D}},
      {"eagle.attn_output.weight", {D, D}},
      {"eagle.ffn_up.weight", {D, F}},
      {"eagle.ffn_down.weight", {F, D}}};
  for (const auto& [n, dims] : tensors) EXPECT_TRUE(w.AddTensor(n, runtime::GgmlType::F32, dims).ok());
  EXPECT_TRUE(w.OpenFile(path).ok());
  const uint32_t seed = 4321;
  std::printf("eagle head %s: seed %u\n", name.c_str(), seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (size_t t = 0; t < tensors.size(); ++t) {
    uint64_t n = 1;
    for (uint64_t d : tensors[t].second) n *= d;
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    if (t == 0 && s.fc_dims.empty()) {
      for (uint64_t o = 0; o < D; ++o) v[o * 2 * D + D + o] += 1.0f;  // pass f through
    }
    EXPECT_TRUE(w.WriteTensorData(v.data(), v.size() * sizeof(float)).ok());
  }
  EXPECT_TRUE(w.Close().ok());
  return path;
}

class EagleTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EagleTest, GreedyOutputIsThePlainOneInSessionsAndTheEngine) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam());
  const runtime::Model* m = SpecEnv::Get().Model("stories260K.gguf", GetParam());
  ASSERT_NE(m, nullptr);
  runtime::SpecConfig spec;
  spec.method = SpecMethod::kEagle;
  spec.heads_path = WriteEagleHead({}, "eagle-" + GetParam() + ".gguf");
  runtime::SessionConfig c;
  c.context_length = 128;
  c.sampler.temperature = 0.0f;
  c.spec = spec;
  auto s = runtime::Session::Create(m, SpecEnv::Get().Ref(), c);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::vector<GoldenCase> cases = ReadGolden("stories260K.golden.json");
  uint64_t drafted = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    runtime::GenerateRequest req;
    req.prompt = cases[i].prompt;
    req.max_new_tokens = static_cast<uint32_t>(cases[i].generated.size());
    auto r = (*s)->Generate(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, cases[i].generated) << "case " << i;
    drafted += r->spec.drafted;
    EXPECT_EQ(r->spec.steps_by_method[static_cast<uint32_t>(SpecMethod::kEagle)], r->spec.steps);
  }
  EXPECT_GT(drafted, 0u);

  runtime::EngineConfig ec;
  ec.context_length = 128;
  auto e = runtime::Engine::Create(m, SpecEnv::Get().Ref(), ec);
  ASSERT_TRUE(e.ok()) << e.status();
  std::vector<uint64_t> ids;
  for (const GoldenCase& g : cases) {
    runtime::EngineRequest r;
    r.prompt = g.prompt;
    r.max_new_tokens = static_cast<uint32_t>(g.generated.size());
    r.sampler.temperature = 0.0f;
    r.spec = spec;
    ids.push_back(*(*e)->Submit(r));
  }
  ASSERT_TRUE((*e)->Wait(0, -1).ok());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto out = (*e)->Result(ids[i]);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->samples[0].tokens, cases[i].generated) << out->status;
    EXPECT_GT(out->spec.drafted, 0u);
  }
  std::remove(spec.heads_path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Devices, EagleTest, ::testing::Values("ref", "cpu"));

absl::Status CreateWith(const std::string& heads_path) {
  runtime::SessionConfig c;
  c.spec.method = SpecMethod::kEagle;
  c.spec.heads_path = heads_path;
  return runtime::Session::Create(SpecEnv::Get().Model("stories260K.gguf", "ref"), nullptr, c).status();
}

void ExpectRefused(const HeadShape& shape, const std::string& name, const std::string& message) {
  const std::string path = WriteEagleHead(shape, name);
  const absl::Status s = CreateWith(path);
  std::remove(path.c_str());
  ASSERT_FALSE(s.ok()) << name;
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(message), std::string::npos) << s;
  EXPECT_NE(s.message().find(name), std::string::npos) << "the message names the file: " << s;
}

TEST(EagleRefusalTest, WrongShapesAndKindsAreRefusedWithAMessage) {
  const absl::Status none = CreateWith("");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.message().find("'eagle' needs heads_path"), std::string::npos) << none;

  HeadShape fc;
  fc.fc_dims = {64, 64};
  ExpectRefused(fc, "eagle-bad-fc.gguf",
                "tensor 'eagle.fc.weight' must be F32 with ggml dims [128, 64], it has [64, 64]");
  HeadShape narrow;
  narrow.n_embd = 32;
  ExpectRefused(narrow, "eagle-narrow.gguf", "trained for n_embd 32 and vocab 512, but the model has 64 and 512");
  HeadShape heads;
  heads.n_head = 5;
  ExpectRefused(heads, "eagle-heads.gguf", "eagle.n_head = 5 does not divide eagle.n_embd = 64");
  HeadShape window;
  window.window = 0;
  ExpectRefused(window, "eagle-window.gguf", "eagle.window = 0 is outside [1, 4096]");

  // A Medusa file given as an EAGLE head.
  const std::string medusa = TestTempDir().File("eagle-medusa.gguf");
  runtime::GgufWriter w;
  ASSERT_TRUE(w.AddString("general.architecture", "medusa").ok());
  ASSERT_TRUE(w.OpenFile(medusa).ok());
  ASSERT_TRUE(w.Close().ok());
  const absl::Status s = CreateWith(medusa);
  std::remove(medusa.c_str());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("general.architecture must be \"eagle\", not \"medusa\""), std::string::npos) << s;
  const absl::Status missing = CreateWith(TestTempDir().File("no-such-eagle.gguf"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("no-such-eagle.gguf"), std::string::npos) << missing;
}

}  // namespace
}  // namespace kestrel::testing
