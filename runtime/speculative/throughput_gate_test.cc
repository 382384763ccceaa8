// The engine's gate against a simulated batch: a step's tokens per ms with drafts on and off (with
// noise). Simulated figures: they check the decisions, not the machine.
#include "runtime/speculative/throughput_gate.h"

#include <random>

#include "gtest/gtest.h"

namespace kestrel {
namespace runtime {
namespace {

// Fraction of 2000 steps the gate let drafts run.
double OnShare(double on_over_off, double noise, uint32_t seed) {
  ThroughputGate g;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-noise, noise);
  uint32_t on = 0;
  for (int step = 0; step < 2000; ++step) {
    const uint32_t cap = g.DraftCap();
    const double rate = (cap == ThroughputGate::kOff ? 1.0 : on_over_off) * (1 + u(rng));
    on += cap != ThroughputGate::kOff;
    g.Record(cap, 8, 8 / rate);
  }
  return on / 2000.0;
}

TEST(ThroughputGateTest, DraftsOnlyWhenTheyMeasureFaster) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    EXPECT_GT(OnShare(1.6, 0.2, seed), 0.9) << "seed " << seed;
    EXPECT_LT(OnShare(0.8, 0.2, seed), 0.1) << "seed " << seed;
    // As fast either way: noise alone must not keep drafts on most of the time.
    EXPECT_LT(OnShare(1.0, 0.1, seed), 0.5) << "seed " << seed;
  }
}

// Throughput over `steps` decode steps relative to never drafting, at the true rates (noise only
// in what the gate sees).
double RelativeThroughput(double on_over_off, double noise, uint32_t steps, uint32_t seed) {
  ThroughputGate g;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-noise, noise);
  double time = 0;
  for (uint32_t step = 0; step < steps; ++step) {
    const uint32_t cap = g.DraftCap();
    const double rate = cap == ThroughputGate::kOff ? 1.0 : on_over_off;
    time += 8 / rate;
    g.Record(cap, 8, 8 / (rate * (1 + u(rng))));
  }
  return 8.0 * steps / time;
}

TEST(ThroughputGateTest, NothingAcceptedCostsUnderThreePercent) {
  // Drafts that are never accepted make a batch step 1.7x longer: the warm-up and the probes must
  // cost under 3 % over a short generation (64 steps, the engine bench) and a long one.
  for (uint32_t seed : {1u, 2u, 3u}) {
    EXPECT_GE(RelativeThroughput(0.6, 0.2, 64, seed), 0.97) << "seed " << seed;
    EXPECT_GE(RelativeThroughput(0.6, 0.2, 2000, seed), 0.99) << "seed " << seed;
  }
}

TEST(ThroughputGateTest, UnpromisingShadowPredictionsNeverDraft) {
  // Drafts' shadow estimate below kMinPredicted (open text for n-gram): not even a warm-up or
  // probe step drafts, so the gate costs nothing; once the estimate rises, drafting that pays is
  // found and kept.
  ThroughputGate g;
  uint32_t on = 0;
  for (int step = 0; step < 2000; ++step) {
    const uint32_t cap = g.DraftCap(0.4);
    on += cap != ThroughputGate::kOff;
    g.Record(cap, 8, 8.0);
  }
  EXPECT_EQ(on, 0u);
  for (int step = 0; step < 200; ++step) {
    const uint32_t cap = g.DraftCap(1.5);
    on += cap != ThroughputGate::kOff;
    g.Record(cap, 8, cap == ThroughputGate::kOff ? 8.0 : 8.0 / 1.6);
  }
  EXPECT_GT(on, 150u);
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
