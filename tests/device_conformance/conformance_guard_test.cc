// The conformance harness catches what a device gets silently wrong: the faulty test plugin
// (tests/plugins/faulty_plugin.cc) runs ADD with the reference kernels and then writes one byte
// past the end or before the start of its output (inside the buffer, outside the tensor), or
// skips the op and reports success. RunOn must refuse the first two with DATA_LOSS naming the
// output and the side, a skipped op must leave the poison that the comparison then rejects, and
// Check (and RunReference, the op-case core's reference run) must fail when the *reference*
// leaves an output unwritten.
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "tests/device_conformance/device_conformance.h"

namespace kestrel::conformance {
namespace {

Devices* g_env = nullptr;  // faulty as the device under test, ref as the reference
Devices* g_swapped = nullptr;  // ref as the device under test, faulty as the reference

class ConformanceGuardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto* env = new Devices;
    env->plugin = "faulty";
    env->registry = hal::PluginRegistry::Create(
        PluginPath("ref") + std::string(":") + KESTREL_FAULTY_PLUGIN, nullptr);
    env->ref = env->registry->ReferenceDevice();
    auto dev = env->registry->FindDevice("faulty");
    if (dev.ok()) env->dev = *dev;
    g_env = env;
    auto* swapped = new Devices;
    swapped->plugin = "ref";
    swapped->ref = env->dev;
    swapped->dev = env->ref;
    g_swapped = swapped;
  }
  void SetUp() override {
    ASSERT_NE(g_env->ref, nullptr);
    ASSERT_NE(g_env->dev, nullptr);
  }
  void TearDown() override { Arm("none"); }
  static void Arm(const std::string& fail) {
    ASSERT_TRUE(g_env->dev->SetOptions({{"fail", fail}, {"at", "1"}, {"count", "1000000"}}).ok());
  }
  static OpCase Add() {
    Rng rng(3);
    OpCase c;
    c.kind = KESTREL_OP_ADD;
    c.in = {F32({3, 50}, rng.Floats(150)), F32({3, 50}, rng.Floats(150))};
    c.out = {Out(KESTREL_DTYPE_F32, {3, 50})};
    return c;
  }
};

TEST_F(ConformanceGuardTest, AWellBehavedDevicePasses) {
  std::vector<std::vector<uint8_t>> want, got;
  ASSERT_TRUE(RunOn(g_env->ref, Add(), &want).ok());
  absl::Status s = RunOn(g_env->dev, Add(), &got);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(got, want);
  Check(*g_env, Add(), "ADD");
}

TEST_F(ConformanceGuardTest, AWritePastTheEndIsDataLoss) {
  Arm("overrun");
  std::vector<std::vector<uint8_t>> got;
  absl::Status s = RunOn(g_env->dev, Add(), &got);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("output 0"), std::string::npos) << s;
  EXPECT_NE(s.message().find("byte 0 past its end"), std::string::npos) << s;
}

TEST_F(ConformanceGuardTest, AWriteBeforeTheStartIsDataLoss) {
  Arm("underrun");
  std::vector<std::vector<uint8_t>> got;
  absl::Status s = RunOn(g_env->dev, Add(), &got);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("output 0"), std::string::npos) << s;
  EXPECT_NE(s.message().find("1 before its start"), std::string::npos) << s;
}

TEST_F(ConformanceGuardTest, ASkippedOpLeavesThePoisonAndFailsTheComparison) {
  Arm("skip");
  std::vector<std::vector<uint8_t>> want, got;
  ASSERT_TRUE(RunOn(g_env->ref, Add(), &want).ok());
  ASSERT_TRUE(RunOn(g_env->dev, Add(), &got).ok());
  EXPECT_EQ(got[0], std::vector<uint8_t>(got[0].size(), 0xFF));
  EXPECT_NE(got, want);
  EXPECT_NONFATAL_FAILURE(Check(*g_env, Add(), "ADD skipped"), "relative norm error");
}

TEST_F(ConformanceGuardTest, AReferenceThatLeavesAnOutputUnwrittenFailsCheck) {
  // The bit-exact path compares bytes only: with both devices skipping, the outputs would be
  // equal (both poison). The reference's second run under another poison exposes it.
  Arm("skip");
  static OpCase c;  // EXPECT_FATAL_FAILURE's statement may not use locals
  c = Add();
  c.exact = true;
  EXPECT_FATAL_FAILURE(Check(*g_swapped, c, "reference skipped"), "left byte 0 of output 0");
}

TEST_F(ConformanceGuardTest, RunReferenceRefusesAnUnwrittenOutput) {
  // The same check in the shared op-case core, which kestrel-conformance's CheckCase uses too.
  std::vector<std::vector<uint8_t>> want;
  ASSERT_TRUE(RunReference(g_env->ref, Add(), &want).ok());
  Arm("skip");
  absl::Status s = RunReference(g_env->dev, Add(), &want);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("left byte 0 of output 0 unwritten"), std::string::npos) << s;
}

}  // namespace
}  // namespace kestrel::conformance
