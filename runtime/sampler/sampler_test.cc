#include "runtime/sampler/sampler.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

// Counts heap allocations made while g_count_allocations is set, to check that Sample() and Accept()
// run on member scratch only. Replacing the global operator new is the only portable way to see
// allocations made inside the standard library containers.
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<long> g_allocations{0};
}  // namespace

// noinline on every replacement: once inlined, GCC pairs the malloc()/free() inside with the
// new/delete of the caller and warns (-Wmismatched-new-delete) although both sides are replaced here.
__attribute__((noinline)) void* operator new(std::size_t size) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void* operator new[](std::size_t size) { return operator new(size); }
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete[](void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace kestrel::runtime {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// A config with every filter off, so only temperature (and whatever the test sets) acts.
SamplerConfig Plain(float temperature) {
  SamplerConfig c;
  c.temperature = temperature;
  c.top_k = 0;
  c.top_p = 1.0f;
  c.min_p = 0.0f;
  c.repetition_penalty = 1.0f;
  c.repetition_window = 0;
  return c;
}

Sampler MakeSampler(const SamplerConfig& config) {
  absl::StatusOr<Sampler> s = Sampler::Create(config);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

int32_t SampleOk(Sampler& s, const std::vector<float>& logits) {
  absl::StatusOr<int32_t> t = s.Sample(logits);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : -1;
}

// Distinct random logits (ties are practically impossible with 24-bit mantissas over this range).
std::vector<float> RandomLogits(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

int32_t ArgMax(const std::vector<float>& v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > v[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Validation

void ExpectInvalid(const SamplerConfig& c, const std::string& message) {
  absl::Status s = ValidateSamplerConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(std::string(s.message()), message);
  absl::StatusOr<Sampler> created = Sampler::Create(c);
  EXPECT_EQ(created.status(), s);
}

TEST(SamplerConfigTest, DefaultsAndBoundariesAreValid) {
  EXPECT_TRUE(ValidateSamplerConfig(SamplerConfig{}).ok());
  SamplerConfig c;
  c.temperature = 0.0f;
  c.top_k = 0;
  c.top_p = 1.0f;
  c.min_p = 0.0f;
  c.repetition_window = 0;
  EXPECT_TRUE(ValidateSamplerConfig(c).ok());
  c.min_p = 1.0f;
  c.top_p = 1e-9f;
  c.temperature = -0.0f;  // -0 == 0: greedy
  EXPECT_TRUE(ValidateSamplerConfig(c).ok());
}

TEST(SamplerConfigTest, RejectsEachBadFieldByNameAndValue) {
  SamplerConfig c;
  c.temperature = -0.5f;
  ExpectInvalid(c, "sampler temperature = -0.5 must be >= 0 (0 means greedy)");
  c.temperature = kNaN;
  ExpectInvalid(c, "sampler temperature = nan must be finite");
  c.temperature = kInf;
  ExpectInvalid(c, "sampler temperature = inf must be finite");

  c = SamplerConfig{};
  c.top_k = -1;
  ExpectInvalid(c, "sampler top_k = -1 must be >= 0 (0 means off)");

  c = SamplerConfig{};
  c.top_p = 1.5f;
  ExpectInvalid(c, "sampler top_p = 1.5 is outside (0, 1]");
  c.top_p = 0.0f;
  ExpectInvalid(c, "sampler top_p = 0 is outside (0, 1]");
  c.top_p = kNaN;
  ExpectInvalid(c, "sampler top_p = nan is outside (0, 1]");

  c = SamplerConfig{};
  c.min_p = -0.25f;
  ExpectInvalid(c, "sampler min_p = -0.25 is outside [0, 1]");
  c.min_p = 2.0f;
  ExpectInvalid(c, "sampler min_p = 2 is outside [0, 1]");
  c.min_p = kNaN;
  ExpectInvalid(c, "sampler min_p = nan is outside [0, 1]");

  c = SamplerConfig{};
  c.repetition_penalty = 0.0f;
  ExpectInvalid(c, "sampler repetition_penalty = 0 must be finite and > 0 (1 means off)");
  c.repetition_penalty = -1.0f;
  ExpectInvalid(c, "sampler repetition_penalty = -1 must be finite and > 0 (1 means off)");
  c.repetition_penalty = kNaN;
  ExpectInvalid(c, "sampler repetition_penalty = nan must be finite and > 0 (1 means off)");
  c.repetition_penalty = kInf;
  ExpectInvalid(c, "sampler repetition_penalty = inf must be finite and > 0 (1 means off)");

  c = SamplerConfig{};
  c.repetition_window = -3;
  ExpectInvalid(c, "sampler repetition_window = -3 must be >= 0 (0 means off)");
}

TEST(SamplerTest, ConfigAccessorReturnsTheConfig) {
  SamplerConfig c;
  c.top_k = 7;
  c.seed = 42;
  Sampler s = MakeSampler(c);
  EXPECT_EQ(s.config().top_k, 7);
  EXPECT_EQ(s.config().seed, 42u);
}

// ---------------------------------------------------------------------------------------------
// Bad logits

TEST(SamplerTest, RejectsEmptyAndAllMaskedLogits) {
  for (float t : {0.0f, 1.0f}) {
    Sampler s = MakeSampler(Plain(t));
    EXPECT_EQ(s.Sample({}).status().code(), absl::StatusCode::kInvalidArgument);
    absl::StatusOr<int32_t> r = s.Sample(std::vector<float>{kNaN, -kInf, kNaN});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(r.status().message()), "sampler: all 3 logits are -inf or NaN");
  }
}

TEST(SamplerTest, NaNIsNeverPicked) {
  Sampler greedy = MakeSampler(Plain(0.0f));
  EXPECT_EQ(SampleOk(greedy, {kNaN, 1.0f, kNaN, 0.5f}), 1);
  Sampler s = MakeSampler(Plain(1.0f));
  for (int i = 0; i < 1000; ++i) {
    int32_t t = SampleOk(s, {kNaN, 0.0f, kNaN, 0.0f, -kInf});
    ASSERT_TRUE(t == 1 || t == 3) << t;
  }
}

TEST(SamplerTest, PositiveInfinityTokensAreCertain) {
  Sampler greedy = MakeSampler(Plain(0.0f));
  EXPECT_EQ(SampleOk(greedy, {100.0f, kInf, 3.0f, kInf}), 1);
  Sampler s = MakeSampler(Plain(1.0f));
  int counts[4] = {0, 0, 0, 0};
  for (int i = 0; i < 2000; ++i) ++counts[SampleOk(s, {100.0f, kInf, 3.0f, kInf})];
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 800);
  EXPECT_GT(counts[3], 800);
}

// ---------------------------------------------------------------------------------------------
// Greedy

TEST(SamplerTest, GreedyTiesGoToLowestId) {
  Sampler s = MakeSampler(Plain(0.0f));
  EXPECT_EQ(SampleOk(s, {1.0f, 3.0f, 2.0f, 3.0f, 3.0f}), 1);
  EXPECT_EQ(SampleOk(s, {-kInf, -5.0f, -5.0f}), 1);
  EXPECT_EQ(SampleOk(s, {7.0f}), 0);
}

TEST(SamplerTest, GreedyWithPenaltyChangesThePick) {
  SamplerConfig c = Plain(0.0f);
  c.repetition_penalty = 1.2f;
  c.repetition_window = 8;
  Sampler s = MakeSampler(c);
  const std::vector<float> positive = {2.0f, 1.9f};   // 2.0 / 1.2 = 1.67 < 1.9
  const std::vector<float> negative = {-1.0f, -1.1f};  // -1.0 * 1.2 = -1.2 < -1.1
  EXPECT_EQ(SampleOk(s, positive), 0);
  EXPECT_EQ(SampleOk(s, negative), 0);
  s.Accept(0);
  EXPECT_EQ(SampleOk(s, positive), 1);
  EXPECT_EQ(SampleOk(s, negative), 1);
}

TEST(SamplerTest, PenaltyAppliesOncePerDistinctToken) {
  SamplerConfig c = Plain(0.0f);
  c.repetition_penalty = 2.0f;
  c.repetition_window = 8;
  Sampler s = MakeSampler(c);
  s.Accept(0);
  s.Accept(0);
  s.Accept(0);
  // Once: 4 / 2 = 2 > 1.5 keeps token 0; twice or more would drop it to <= 1.
  EXPECT_EQ(SampleOk(s, {4.0f, 1.5f}), 0);
}

TEST(SamplerTest, PenaltyIgnoresOutOfRangeTokens) {
  SamplerConfig c = Plain(0.0f);
  c.repetition_penalty = 100.0f;
  c.repetition_window = 4;
  Sampler s = MakeSampler(c);
  s.Accept(-1);
  s.Accept(5);
  EXPECT_EQ(SampleOk(s, {1.0f, 0.5f}), 0);
}

TEST(SamplerTest, RepetitionWindowOnlyPenalisesTheLastNTokens) {
  SamplerConfig c = Plain(0.0f);
  c.repetition_penalty = 10.0f;
  c.repetition_window = 2;
  Sampler s = MakeSampler(c);
  const std::vector<float> logits = {3.0f, 2.9f, 2.8f};
  EXPECT_EQ(SampleOk(s, logits), 0);
  s.Accept(0);  // window {0}
  EXPECT_EQ(SampleOk(s, logits), 1);
  s.Accept(1);  // window {0, 1}
  EXPECT_EQ(SampleOk(s, logits), 2);
  s.Accept(2);  // window {1, 2}: token 0 fell out
  EXPECT_EQ(SampleOk(s, logits), 0);
  s.Accept(0);  // window {2, 0}
  EXPECT_EQ(SampleOk(s, logits), 1);
  s.Reset();  // window cleared
  EXPECT_EQ(SampleOk(s, logits), 0);
}

// A window of 2^31 - 1 tokens (an option, or a saved state: session_state_fuzzer) holds only what
// was accepted: creating the sampler used to allocate 8 GiB for it.
TEST(SamplerTest, HugeRepetitionWindowCostsOnlyTheTokensItHolds) {
  SamplerConfig c = Plain(0.0f);
  c.repetition_penalty = 10.0f;
  c.repetition_window = std::numeric_limits<int32_t>::max();
  Sampler s = MakeSampler(c);
  EXPECT_TRUE(s.Window().empty());
  s.Accept(0);
  s.Accept(1);
  EXPECT_EQ(s.Window(), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(SampleOk(s, {3.0f, 2.9f, 2.8f}), 2);
  ASSERT_TRUE(s.Restore(s.RngState(), {2, 1}).ok());
  EXPECT_EQ(s.Window(), (std::vector<int32_t>{2, 1}));
}

// The window keeps the last N tokens in order through growth, wrap-around, Restore and Reset.
TEST(SamplerTest, WindowKeepsTheLastTokensInOrder) {
  SamplerConfig c = Plain(0.0f);
  c.repetition_window = 3;
  Sampler s = MakeSampler(c);
  for (int32_t t : {5, 6}) s.Accept(t);
  EXPECT_EQ(s.Window(), (std::vector<int32_t>{5, 6}));
  for (int32_t t : {7, 8, 9}) s.Accept(t);
  EXPECT_EQ(s.Window(), (std::vector<int32_t>{7, 8, 9}));
  ASSERT_TRUE(s.Restore(s.RngState(), {1, 2}).ok());
  EXPECT_EQ(s.Window(), (std::vector<int32_t>{1, 2}));
  s.Accept(3);
  s.Accept(4);
  EXPECT_EQ(s.Window(), (std::vector<int32_t>{2, 3, 4}));
  EXPECT_FALSE(s.Restore(s.RngState(), {1, 2, 3, 4}).ok());
  s.Reset();
  EXPECT_TRUE(s.Window().empty());
}

TEST(SamplerTest, ZeroWindowDisablesPenalty) {
  SamplerConfig c = Plain(0.0f);
  c.repetition_penalty = 10.0f;
  c.repetition_window = 0;
  Sampler s = MakeSampler(c);
  s.Accept(0);
  EXPECT_EQ(SampleOk(s, {3.0f, 2.9f}), 0);
}

// ---------------------------------------------------------------------------------------------
// Filters that reduce to greedy

TEST(SamplerTest, TopKOneEqualsGreedyAtAnyTemperature) {
  for (float t : {0.01f, 0.8f, 1.0f, 5.0f, 1000.0f}) {
    SamplerConfig c = Plain(t);
    c.top_k = 1;
    Sampler s = MakeSampler(c);
    for (uint32_t trial = 0; trial < 50; ++trial) {
      std::vector<float> logits = RandomLogits(500, trial);
      ASSERT_EQ(SampleOk(s, logits), ArgMax(logits)) << "temperature " << t;
    }
  }
}

TEST(SamplerTest, TopKOneBreaksTiesTowardsLowestId) {
  SamplerConfig c = Plain(10.0f);
  c.top_k = 1;
  Sampler s = MakeSampler(c);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(SampleOk(s, {0.0f, 2.0f, 1.0f, 2.0f}), 1);
}

TEST(SamplerTest, TinyTopPEqualsGreedy) {
  for (float t : {0.5f, 1.0f, 10.0f}) {
    SamplerConfig c = Plain(t);
    c.top_p = 1e-6f;
    Sampler s = MakeSampler(c);
    for (uint32_t trial = 0; trial < 50; ++trial) {
      std::vector<float> logits = RandomLogits(32000, 100 + trial);
      ASSERT_EQ(SampleOk(s, logits), ArgMax(logits));
    }
  }
}

TEST(SamplerTest, MinPOneEqualsGreedy) {
  for (float t : {0.5f, 1.0f, 10.0f}) {
    SamplerConfig c = Plain(t);
    c.min_p = 1.0f;
    Sampler s = MakeSampler(c);
    for (uint32_t trial = 0; trial < 50; ++trial) {
      std::vector<float> logits = RandomLogits(1000, 200 + trial);
      ASSERT_EQ(SampleOk(s, logits), ArgMax(logits));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Filters that keep a known set

TEST(SamplerTest, TopPKeepsTheSmallestNucleus) {
  SamplerConfig c = Plain(1.0f);
  c.top_p = 0.75f;  // probs 0.5, 0.3, 0.2: {0.5, 0.3} is the smallest set reaching 0.75
  Sampler s = MakeSampler(c);
  const std::vector<float> logits = {std::log(0.3f), std::log(0.2f), std::log(0.5f)};
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 4000; ++i) ++counts[SampleOk(s, logits)];
  EXPECT_EQ(counts[1], 0);
  // Renormalised: 0.5 / 0.8 = 0.625 for token 2, 0.375 for token 0.
  EXPECT_NEAR(counts[2] / 4000.0, 0.625, 0.03);
  EXPECT_NEAR(counts[0] / 4000.0, 0.375, 0.03);
}

TEST(SamplerTest, TopPWithTopKOffOnLargeVocabKeepsOnlyTheNucleus) {
  // 100 tied tokens hold ~all the mass, more than the first sorted prefix (64): top-p 0.9 keeps the
  // 90 lowest ids among them, which needs the prefix to grow once.
  SamplerConfig c = Plain(1.0f);
  c.top_p = 0.9f;
  Sampler s = MakeSampler(c);
  std::vector<float> logits(32000, -20.0f);
  for (int i = 0; i < 100; ++i) logits[static_cast<size_t>(1000 + i * 7)] = 5.0f;
  for (int i = 0; i < 500; ++i) {
    int32_t t = SampleOk(s, logits);
    ASSERT_TRUE(t >= 1000 && t < 1000 + 90 * 7 && (t - 1000) % 7 == 0) << t;
  }
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplerConfig c = Plain(1.0f);
  c.min_p = 0.2f;  // relative probs 1, 0.5, 0.1: token 2 is below 0.2 * max
  Sampler s = MakeSampler(c);
  const std::vector<float> logits = {0.0f, std::log(0.5f), std::log(0.1f)};
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 3000; ++i) ++counts[SampleOk(s, logits)];
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[0], counts[1]);
}

TEST(SamplerTest, TopKKeepsTheKBest) {
  SamplerConfig c = Plain(100.0f);  // near uniform over what survives
  c.top_k = 3;
  Sampler s = MakeSampler(c);
  const std::vector<float> logits = {0.0f, 5.0f, 1.0f, 4.0f, 4.0f, 4.0f};  // keeps 1, 3, 4 (tie -> ids)
  int counts[6] = {0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 3000; ++i) ++counts[SampleOk(s, logits)];
  EXPECT_EQ(counts[0] + counts[2] + counts[5], 0);
  EXPECT_GT(counts[1], 800);
  EXPECT_GT(counts[3], 800);
  EXPECT_GT(counts[4], 800);
}

// ---------------------------------------------------------------------------------------------
// Distribution and determinism

// Pearson chi-square statistic of `draws` samples against softmax(logits / temperature).
double ChiSquare(float temperature, const std::vector<float>& logits, int draws, uint64_t seed) {
  SamplerConfig c = Plain(temperature);
  c.seed = seed;
  Sampler s = MakeSampler(c);
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) ++counts[static_cast<size_t>(SampleOk(s, logits))];
  double z = 0.0;
  for (float l : logits) z += std::exp(static_cast<double>(l) / temperature);
  double chi2 = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double expected = draws * std::exp(static_cast<double>(logits[i]) / temperature) / z;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST(SamplerTest, TemperatureOneMatchesSoftmax) {
  // 4 degrees of freedom: P(chi2 > 18.47) = 0.001. The seed is fixed, so the test is deterministic.
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
  EXPECT_LT(ChiSquare(1.0f, logits, 20000, 0xC0FFEE), 18.47);
  EXPECT_LT(ChiSquare(1.0f, logits, 20000, 12345), 18.47);
}

TEST(SamplerTest, TemperatureScalesTheLogits) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
  EXPECT_LT(ChiSquare(0.5f, logits, 20000, 7), 18.47);
  EXPECT_LT(ChiSquare(2.0f, logits, 20000, 7), 18.47);
  // And it is not accidentally the temperature-1 distribution.
  SamplerConfig c = Plain(0.5f);
  Sampler s = MakeSampler(c);
  int top = 0;
  for (int i = 0; i < 20000; ++i) top += SampleOk(s, logits) == 1;
  // softmax(l / 0.5)[1] = 0.6429..., softmax(l)[1] = 0.4450...
  EXPECT_NEAR(top / 20000.0, 0.6429, 0.02);
}

TEST(SamplerTest, DrawUsesTheTop53BitsOfMt19937_64) {
  // Two equal logits: the token is 1 exactly when u >= 0.5, i.e. when the top bit of the
  // mt19937_64 output is set. This pins the stream to the standard-specified engine.
  SamplerConfig c = Plain(1.0f);
  c.seed = 987654321;
  Sampler s = MakeSampler(c);
  std::mt19937_64 reference(987654321);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(SampleOk(s, {0.0f, 0.0f}), static_cast<int32_t>(reference() >> 63));
  }
}

std::vector<int32_t> Generate(Sampler& s, int steps) {
  std::vector<int32_t> out;
  for (int i = 0; i < steps; ++i) {
    std::vector<float> logits = RandomLogits(2000, static_cast<uint32_t>(i));
    // Make the distribution flat enough that the seed matters.
    for (float& l : logits) l *= 0.2f;
    int32_t t = SampleOk(s, logits);
    s.Accept(t);
    out.push_back(t);
  }
  return out;
}

TEST(SamplerTest, SameSeedReproducesDifferentSeedsDiffer) {
  SamplerConfig c;  // defaults: every stage on
  c.repetition_penalty = 1.1f;
  Sampler a = MakeSampler(c);
  Sampler b = MakeSampler(c);
  c.seed = c.seed + 1;
  Sampler other = MakeSampler(c);
  const std::vector<int32_t> seq_a = Generate(a, 64);
  EXPECT_EQ(seq_a, Generate(b, 64));
  EXPECT_NE(seq_a, Generate(other, 64));
}

TEST(SamplerTest, ResetRestoresTheSequence) {
  SamplerConfig c;
  c.repetition_penalty = 1.3f;
  c.repetition_window = 16;
  Sampler s = MakeSampler(c);
  const std::vector<int32_t> first = Generate(s, 64);
  const std::vector<int32_t> continued = Generate(s, 64);
  EXPECT_NE(first, continued);  // the RNG and window moved on
  s.Reset();
  EXPECT_EQ(Generate(s, 64), first);
}

TEST(SamplerTest, CopyContinuesTheSameStream) {
  Sampler a = MakeSampler(SamplerConfig{});
  Generate(a, 10);
  Sampler b = a;
  EXPECT_EQ(Generate(a, 20), Generate(b, 20));
}

// ---------------------------------------------------------------------------------------------
// Allocation

TEST(SamplerTest, SampleAndAcceptDoNotAllocateAfterWarmUp) {
  // The counter itself works (a direct call to ::operator new may not be elided).
  g_allocations = 0;
  g_count_allocations = true;
  void* volatile probe = ::operator new(16);
  g_count_allocations = false;
  ::operator delete(probe);
  ASSERT_EQ(g_allocations.load(), 1);

  std::vector<SamplerConfig> configs(4);
  configs[1].top_k = 0;  // top-p over the whole vocabulary
  configs[2] = Plain(1.0f);
  configs[3].temperature = 0.0f;
  for (SamplerConfig& c : configs) c.repetition_penalty = 1.1f;
  const std::vector<float> logits = RandomLogits(32000, 99);
  for (const SamplerConfig& c : configs) {
    Sampler s = MakeSampler(c);
    for (int i = 0; i < 70; ++i) s.Accept(i * 13);  // fill the window
    ASSERT_TRUE(s.Sample(logits).ok());             // warm-up sizes the scratch
    g_allocations = 0;
    g_count_allocations = true;
    int32_t sink = 0;
    for (int i = 0; i < 50; ++i) {
      absl::StatusOr<int32_t> t = s.Sample(logits);
      sink += t.ok() ? *t : 0;
      s.Accept(sink % 32000);
    }
    g_count_allocations = false;
    EXPECT_EQ(g_allocations.load(), 0) << "top_k " << c.top_k << " temperature " << c.temperature;
  }
}

TEST(SamplerTest, LogitBiasShiftsAndBans) {
  SamplerConfig c = Plain(0.0f);
  c.logit_bias = {{0, -kInf}, {2, 5.0f}, {99, 100.0f}};  // 99: outside the row, ignored
  Sampler s = MakeSampler(c);
  EXPECT_EQ(SampleOk(s, {3.0f, 1.0f, -1.0f}), 2);  // -1 + 5 beats 1
  c.logit_bias = {{0, -kInf}};
  Sampler banned = MakeSampler(c);
  EXPECT_EQ(SampleOk(banned, {kInf, 1.0f, -1.0f}), 1);  // a ban holds against +inf
  // Sampled at temperature 1, a banned token never comes.
  SamplerConfig r = Plain(1.0f);
  r.logit_bias = {{1, -kInf}};
  Sampler random = MakeSampler(r);
  for (int i = 0; i < 200; ++i) EXPECT_NE(SampleOk(random, {0.0f, 0.5f, 0.0f}), 1);
}

TEST(SamplerConfigTest, RejectsNaNAndPlusInfBias) {
  for (float bad : {kNaN, kInf}) {
    SamplerConfig c;
    c.logit_bias = {{7, bad}};
    absl::Status st = ValidateSamplerConfig(c);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("logit_bias for token 7"), std::string::npos) << st;
  }
}

TEST(SamplerTest, LogprobsAreLogSoftmaxAfterBiasBeforeTruncation) {
  SamplerConfig c = Plain(0.7f);
  c.top_k = 1;  // truncation must not change the reported distribution
  c.logit_bias = {{3, 1.0f}};
  Sampler s = MakeSampler(c);
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, 1.0f};  // token 3 becomes 2.0
  const int32_t t = SampleOk(s, logits);
  EXPECT_EQ(t, 1);  // top-k 1 keeps the first of the tied best
  TokenLogprobs lp;
  s.Logprobs(t, 3, &lp);
  double z = 0;
  for (float l : {1.0f, 2.0f, 0.5f, 2.0f}) z += std::exp(static_cast<double>(l));
  EXPECT_EQ(lp.chosen.token, 1);
  EXPECT_NEAR(lp.chosen.logprob, 2.0 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].token, 1);  // ties towards the lower id
  EXPECT_EQ(lp.top[1].token, 3);
  EXPECT_EQ(lp.top[2].token, 0);
  EXPECT_NEAR(lp.top[2].logprob, 1.0 - std::log(z), 1e-6);
  double total = 0;
  for (float l : {1.0f, 2.0f, 0.5f, 2.0f}) total += std::exp(l - std::log(z));
  EXPECT_NEAR(total, 1.0, 1e-9);
  s.Logprobs(t, 10, &lp);  // more than the row: all of it
  EXPECT_EQ(lp.top.size(), 4u);
  s.Logprobs(t, 0, &lp);
  EXPECT_TRUE(lp.top.empty());
}

}  // namespace
}  // namespace kestrel::runtime
