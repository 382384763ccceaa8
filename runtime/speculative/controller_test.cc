// The controller against a simulated device: steps cost t1 * (1 + slope * draft nodes) (with
// noise), proposals are accepted token by token with a fixed probability per method. The figures
// are simulated time, not measured time: they check the decisions, not the machine.
#include "runtime/speculative/controller.h"

#include <cstdio>
#include <random>

#include "gtest/gtest.h"

namespace kestrel {
namespace runtime {
namespace {

struct SimMethod {
  SpecMethod method;
  double accept = 0;     // per-token acceptance
  double hit = 1;        // probability that a proposal is not empty
  uint32_t extra = 0;    // nodes a proposal carries beyond its draft size (lookahead's window)
};

struct SimResult {
  double speedup = 0;       // tokens per simulated ms over plain decoding's
  uint64_t spec_steps = 0;  // steps that carried a draft
  uint64_t steps = 0;
  ControllerReport report;
};

SimResult Simulate(Controller& c, const std::vector<SimMethod>& methods, uint64_t n_tokens,
                   double slope, double noise, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  const double t1 = 10.0;
  // The controller sees noisy timings; the result is accounted at the true cost, so it measures
  // the decisions, not the noise.
  auto cost = [&](uint32_t n) { return t1 * (1 + slope * (n - 1)); };
  auto noisy = [&](double ms) { return ms * (1 + noise * (2 * u(rng) - 1)); };
  SimResult r;
  double time = 0;
  uint64_t tokens = 0;
  while (tokens < n_tokens) {
    ++r.steps;
    const ControllerChoice ch = c.Choose();
    uint32_t nodes = 0, accepted = 0;
    if (ch.method != SpecMethod::kOff) {
      const SimMethod* sm = nullptr;
      for (const SimMethod& m : methods) {
        if (m.method == ch.method) sm = &m;
      }
      EXPECT_NE(sm, nullptr);
      if (u(rng) < sm->hit) {
        nodes = ch.draft + sm->extra;
        if (ch.max_nodes > 0) nodes = std::min(nodes, ch.max_nodes);
      }
      const double propose_ms = 0.01;
      time += propose_ms;
      c.RecordProposal(ch.method, propose_ms, ch.draft, nodes);
      if (nodes > 0) {
        while (accepted < std::min(ch.draft, nodes) && u(rng) < sm->accept) ++accepted;
        c.RecordAcceptance(ch.method, std::min(ch.draft, nodes), accepted);
        ++r.spec_steps;
      }
    }
    const double ms = cost(1 + nodes);
    c.RecordStep(1 + nodes, noisy(ms));
    time += ms;
    tokens += 1 + accepted;
  }
  r.speedup = (static_cast<double>(tokens) / time) / (1.0 / t1);
  r.report = c.Report();
  return r;
}

const std::vector<SpecMethod> kAuto = {SpecMethod::kNgram, SpecMethod::kLookahead};

TEST(ControllerTest, NothingAcceptedCostsAlmostNothing) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::printf("seed %u\n", seed);
    Controller c(kAuto, 5, true);
    // n-gram finds a (wrong) match now and then; lookahead always proposes, never right.
    const SimResult r = Simulate(c, {{SpecMethod::kNgram, 0.0, 0.3, 0}, {SpecMethod::kLookahead, 0.0, 1.0, 4}},
                                 128, /*slope=*/0.3, /*noise=*/0.3, seed);
    EXPECT_GE(r.speedup, 0.97) << "spec steps " << r.spec_steps << " of " << r.steps;
    const SimResult longer = Simulate(c, {{SpecMethod::kNgram, 0.0, 0.3, 0}, {SpecMethod::kLookahead, 0.0, 1.0, 4}},
                                      4000, 0.3, 0.3, seed);
    EXPECT_GE(longer.speedup, 0.99);
    EXPECT_LT(longer.spec_steps, 40u) << "probes must back off";
    EXPECT_GT(longer.report.probe_interval, 100u);
    EXPECT_DOUBLE_EQ(longer.report.expected_speedup, 1.0);
  }
}

TEST(ControllerTest, CheapVerifyTimingNoiseDoesNotTurnItOn) {
  // A verify step costs little more than a plain one, and timings jump by +-50 %: a small
  // measured ratio must not make a method that is never right look worth it.
  Controller c(kAuto, 5, true);
  const SimResult r = Simulate(c, {{SpecMethod::kNgram, 0.0, 1.0, 0}, {SpecMethod::kLookahead, 0.0, 1.0, 4}},
                               2000, 0.02, 0.5, 7);
  EXPECT_LT(r.spec_steps, 60u);
  EXPECT_GE(r.speedup, 0.95);
}

TEST(ControllerTest, PicksTheMethodThatPaysAndALongDraft) {
  Controller c(kAuto, 5, true);
  const SimResult r = Simulate(c, {{SpecMethod::kNgram, 0.9, 0.9, 0}, {SpecMethod::kLookahead, 0.2, 1.0, 4}},
                               2000, 0.1, 0.2, 11);
  // Fixed n-gram at draft 5 on this device: E = (1 - 0.9^6) / 0.1 = 4.69 tokens for 1.5 steps.
  Controller fixed({SpecMethod::kNgram}, 5, false);
  const SimResult f = Simulate(fixed, {{SpecMethod::kNgram, 0.9, 0.9, 0}}, 2000, 0.1, 0.2, 11);
  std::printf("auto %.2fx, fixed n-gram %.2fx\n", r.speedup, f.speedup);
  EXPECT_GE(r.speedup, 0.95 * f.speedup);
  EXPECT_GT(r.report.acceptance[static_cast<uint32_t>(SpecMethod::kNgram)], 0.8);
}

TEST(ControllerTest, TurnsBackOnWhenTheTextChanges) {
  Controller c(kAuto, 5, true);
  Simulate(c, {{SpecMethod::kNgram, 0.0, 0.3, 0}, {SpecMethod::kLookahead, 0.0, 1.0, 4}}, 300, 0.3, 0.1, 5);
  EXPECT_EQ(c.Report().expected_speedup, 1.0);
  // Now the text repeats (n-gram is right): within a back-off period or two it is back on.
  const SimResult r = Simulate(c, {{SpecMethod::kNgram, 0.95, 1.0, 0}, {SpecMethod::kLookahead, 0.0, 1.0, 4}},
                               1500, 0.3, 0.1, 6);
  EXPECT_GT(r.report.expected_speedup, 1.5);
  EXPECT_GT(r.speedup, 1.2);
}

TEST(ControllerTest, CostRatioIsMeasuredAgainstPlainSteps) {
  Controller c({SpecMethod::kNgram}, 4, true);
  for (int i = 0; i < 20; ++i) c.RecordStep(1, 20.0);
  c.RecordStep(3, 30.0);
  EXPECT_NEAR(c.Ratio(3), 1.5, 1e-9);
  EXPECT_NEAR(c.Ratio(2), 1.25, 1e-9);    // between the plain step and size 3
  EXPECT_NEAR(c.Ratio(5), 2.0, 1e-9);     // the measured slope, extended
  c.RecordStep(4, 10.0);                  // noise: cheaper than a plain step
  EXPECT_GE(c.Ratio(4), 1.0);
  EXPECT_NEAR(c.StepMs(1), 20.0, 1e-9);
}

TEST(ControllerTest, AllOrNothingProposalsGetTheFullDraft) {
  // A quoted passage: a proposal is either right to its end or wrong at its first token. The
  // per-token (geometric) view of 60 % acceptance would stop at a short draft; per depth, a
  // token past the first is always right, so the longest draft pays most.
  Controller c({SpecMethod::kNgram}, 8, true);
  for (int i = 0; i < 4; ++i) c.RecordStep(1, 10.0);
  for (int i = 0; i < 30; ++i) {
    c.RecordProposal(SpecMethod::kNgram, 0.01, 8, 8);
    c.RecordAcceptance(SpecMethod::kNgram, 8, i % 5 >= 2 ? 8 : 0);
    c.RecordStep(9, 15.0);
  }
  const ControllerChoice ch = c.Choose();
  EXPECT_EQ(ch.method, SpecMethod::kNgram);
  EXPECT_EQ(ch.draft, 8u);
}

TEST(ControllerTest, ConfidentProposalsAreTrustedFirstAndBackOffWhenWrong) {
  Controller c(kAuto, 5, true);
  EXPECT_EQ(c.ChooseConfident(SpecMethod::kNgram, 5).method, SpecMethod::kOff) << "no plain step yet";
  for (int i = 0; i < 4; ++i) {
    c.Choose();
    c.RecordStep(1, 10.0);
  }
  // Before any data: the whole proposal (capped at max_draft).
  ControllerChoice ch = c.ChooseConfident(SpecMethod::kNgram, 9);
  EXPECT_EQ(ch.method, SpecMethod::kNgram);
  EXPECT_EQ(ch.draft, 5u);
  EXPECT_FALSE(ch.probe);
  // Now every confident proposal is wrong: they must become rare.
  uint32_t verified = 0;
  for (int step = 0; step < 2000; ++step) {
    ch = c.ChooseConfident(SpecMethod::kNgram, 5);
    if (ch.method == SpecMethod::kOff) {
      c.Choose();
      c.RecordStep(1, 10.0);
      continue;
    }
    ++verified;
    c.RecordProposal(SpecMethod::kNgram, 0.01, ch.draft, ch.draft);
    c.RecordAcceptance(SpecMethod::kNgram, ch.draft, 0);
    c.RecordStep(1 + ch.draft, 15.0);
  }
  EXPECT_LT(verified, 20u);
  // The ordinary n-gram statistics were not touched by the confident ones.
  EXPECT_DOUBLE_EQ(c.Acceptance(SpecMethod::kNgram), 0.5);
}

TEST(ControllerTest, FixedMethodIsAlwaysChosen) {
  Controller c({SpecMethod::kLookahead}, 3, false);
  for (int i = 0; i < 5; ++i) {
    const ControllerChoice ch = c.Choose();
    EXPECT_EQ(ch.method, SpecMethod::kLookahead);
    EXPECT_EQ(ch.draft, 3u);
    EXPECT_EQ(ch.max_nodes, 0u);
  }
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
