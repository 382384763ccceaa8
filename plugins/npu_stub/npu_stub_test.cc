// The stub NPU: its pieces (cost model, command queue, W8A8 matmul against the reference
// numerics) and the plugin through the HAL next to ref: an NPU's caps, a memory budget that runs
// out and recovers, work that completes asynchronously in order, ops against ref (f32 ops at the
// f32 tier, MATMUL at the INT8 tier), everything else UNSUPPORTED, and a simulated clock that is
// the cost model's sum, the same on every run.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "command_queue.h"
#include "gtest/gtest.h"
#include "hal/src/device.h"
#include "hal/src/plugin_registry.h"
#include "int8_matmul.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "npu_config.h"
#include "npu_stub.h"
#include "tests/device_conformance/device_conformance.h"

namespace kestrel::plugins::npu {
namespace {

namespace conf = ::kestrel::conformance;
using conf::Rng;

double RelErr(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    den += double{want[i]} * want[i];
  }
  return std::sqrt(num / den);
}

TEST(NpuCostModelTest, IsTheDocumentedFormula) {
  NpuConfig c;  // 16 GB/s, 4 TOPS, 64 GFLOP/s, 4 GB/s link, 5 us launch
  // 2*8*256*512 = 2097152 ops / 4000 ops/ns = 524.288 ns; 100000 bytes / 16 = 6250 ns.
  EXPECT_EQ(MatmulCostNs(c, 8, 256, 512, 100000), 5000u + 6250u);
  EXPECT_EQ(MatmulCostNs(c, 8, 256, 512, 1000), 5000u + 524u);
  EXPECT_EQ(VectorCostNs(c, 6400, 0), 5000u + 100u);
  EXPECT_EQ(HostCopyCostNs(c, 4000), 5000u + 1000u);
  EXPECT_EQ(DeviceCopyCostNs(c, 1600), 5000u + 200u);
}

TEST(NpuConfigTest, OptionsOverrideDefaultsAndBadValuesNameTheKey) {
  NpuConfig c;
  kestrel_plugin_option_t opts[] = {{"memory_mb", "64"}, {"launch_us", "2.5"}, {"other", "x"}};
  ASSERT_TRUE(ParseNpuConfig(opts, 3, "init", &c).ok());
  EXPECT_EQ(c.memory_bytes, uint64_t{64} << 20);
  EXPECT_EQ(c.launch_us, 2.5);
  for (const char* bad : {"0", "-1", "1.5", "abc", ""}) {
    kestrel_plugin_option_t o = {"memory_mb", bad};
    plugin_sdk::Status s = ParseNpuConfig(&o, 1, "init", &c);
    EXPECT_EQ(s.code(), KESTREL_PLUGIN_INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.message().find(std::string("memory_mb=") + bad), std::string::npos) << s.message();
  }
}

TEST(CommandQueueTest, RunsInOrderOffTheCallerAndKeepsTheFirstError) {
  CommandQueue q;
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) {
    q.Submit([&order, i] {
      order.push_back(i);
      return i == 40 ? plugin_sdk::Internal("command 40 failed") : plugin_sdk::Status();
    });
  }
  const uint64_t mark = q.Mark();
  EXPECT_EQ(mark, 100u);
  plugin_sdk::Status s = q.Synchronize();
  EXPECT_EQ(s.message(), "command 40 failed");
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
  EXPECT_TRUE(q.Synchronize().ok());  // reported once
}

TEST(Int8MatmulTest, IsW8A8WithinTheInt8TierOfTheReference) {
  Rng rng(7);
  const int64_t t = 5, n = 37, k = 96;  // neither a multiple of the tiles
  const std::vector<float> x = rng.Floats(t * k);
  for (uint32_t dtype : {uint32_t{KESTREL_DTYPE_F32}, uint32_t{KESTREL_DTYPE_Q4_0}}) {
    conf::Tensor w = conf::Weight(rng, dtype, n, k, false);
    std::vector<uint8_t> compiled(CompiledWeightBytes(n, k));
    CompileWeight(dtype, w.bytes.data(), n, k, compiled.data());
    std::vector<float> got(t * n), want(t * n);
    MatmulW8A8(compiled.data(), n, k, x.data(), t, got.data());
    plugin_sdk::Matmul(x.data(), t, k, dtype, w.bytes.data(), n, want.data());
    const double err = RelErr(got, want);
    EXPECT_LT(err, 3e-2) << plugin_sdk::DtypeName(dtype);
    EXPECT_GT(err, 1e-5) << "an int8 matmul cannot match f32 this closely";
  }
}

const conf::Devices& Env() { return conf::LoadDevices("npu_stub"); }

#define NPU_ENV()                                                  \
  const conf::Devices& env = Env();                                \
  ASSERT_NE(env.dev, nullptr) << "npu_stub did not load: " << env.why_not

TEST(NpuPluginTest, CapsAreAnNpusNotTheCpus) {
  NPU_ENV();
  const kestrel_device_caps_t& c = env.dev->caps();
  EXPECT_STREQ(c.name, "npu");
  EXPECT_EQ(c.kind, static_cast<uint32_t>(KESTREL_DEVICE_KIND_NPU));
  EXPECT_EQ(c.host_visible, 0);
  EXPECT_EQ(c.async, 1);
  EXPECT_EQ(c.memory_bytes, uint64_t{256} << 20);
  EXPECT_EQ(c.accuracy_tier, static_cast<uint32_t>(KESTREL_ACCURACY_INT8));
  EXPECT_TRUE(env.registry->plugins().back().own_instance || env.registry->plugins()[0].own_instance);
}

TEST(NpuPluginTest, MemoryRunsOutAtItsSizeAndRecovers) {
  auto reg = hal::PluginRegistry::Create(conf::PluginPath("npu_stub"), nullptr, {{"memory_mb", "1"}});
  auto dev = reg->FindDevice("npu");
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ((*dev)->caps().memory_bytes, uint64_t{1} << 20);
  auto a = (*dev)->Allocate(600 << 10);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = (*dev)->Allocate(600 << 10);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(b.status().message().find("out of device memory"), std::string::npos) << b.status();
  a->Reset();
  auto c = (*dev)->Allocate(600 << 10);
  EXPECT_TRUE(c.ok()) << c.status();
}

TEST(NpuPluginTest, BadOptionSkipsThePluginNamingKeyAndValue) {
  auto reg = hal::PluginRegistry::Create(conf::PluginPath("npu_stub"), nullptr, {{"int8_tops", "fast"}});
  ASSERT_EQ(reg->plugins().size(), 1u);
  EXPECT_FALSE(reg->plugins()[0].loaded);
  EXPECT_NE(reg->plugins()[0].skip_reason.find("int8_tops=fast"), std::string::npos)
      << reg->plugins()[0].skip_reason;
}

TEST(NpuPluginTest, AsyncWorkCompletesInOrderOnOneStream) {
  NPU_ENV();
  conf::cases::AsyncWriteOpReadOrderOnOneStream(env);
}

TEST(NpuPluginTest, EventsOrderTwoStreams) {
  NPU_ENV();
  conf::cases::EventWaitAcrossTwoStreams(env);
}

TEST(NpuPluginTest, F32OpsMatchRef) {
  NPU_ENV();
  conf::cases::AddAndSwiglu(env);
  conf::cases::AddInPlace(env);
  conf::cases::RmsNorm(env);
}

TEST(NpuPluginTest, MatmulIsWithinTheInt8TierForEveryWeightDtype) {
  NPU_ENV();
  Rng rng(11);
  for (uint32_t dtype : conf::kWeightDtypes) {
    for (bool prepared : {true, false}) {
      conf::OpCase c;
      c.kind = KESTREL_OP_MATMUL;
      const int64_t t = 3, n = 40, k = 128;
      c.in = {conf::F32({t, k}, rng.Floats(t * k)), conf::Weight(rng, dtype, n, k, prepared)};
      c.out = {conf::Out(KESTREL_DTYPE_F32, {t, n})};
      c.tol = 3e-2;
      conf::Check(env, c, std::string("MATMUL ") + conf::Name(dtype) +
                              (prepared ? " prepared" : " buffer"));
    }
  }
}

TEST(NpuPluginTest, EverythingElseIsUnsupported) {
  NPU_ENV();
  Rng rng(3);
  // Attention; a MATMUL with the optional bias (ABI 1.2); MATMULs on the GGUF formats the stub
  // does not compile (ABI 1.2 dtypes outside its weight_dtype_mask); GEGLU (ABI 1.3).
  std::vector<conf::OpCase> others = {
      conf::Attention(rng, 4, 2, 8, 4, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, {{2, 5}})};
  conf::OpCase bias;
  bias.kind = KESTREL_OP_MATMUL;
  bias.in = {conf::F32({2, 64}, rng.Floats(128)), conf::Weight(rng, KESTREL_DTYPE_F32, 8, 64, true),
             conf::F32({8}, rng.Floats(8))};
  bias.out = {conf::Out(KESTREL_DTYPE_F32, {2, 8})};
  others.push_back(bias);
  for (uint32_t dtype : conf::kExtraQuantDtypes) {
    conf::OpCase kq;
    kq.kind = KESTREL_OP_MATMUL;
    kq.in = {conf::F32({2, 256}, rng.Floats(512)), conf::Weight(rng, dtype, 8, 256, true)};
    kq.out = {conf::Out(KESTREL_DTYPE_F32, {2, 8})};
    others.push_back(kq);
  }
  conf::OpCase geglu;
  geglu.kind = KESTREL_OP_GEGLU;
  geglu.in = {conf::F32({2, 8}, rng.Floats(16)), conf::F32({2, 8}, rng.Floats(16))};
  geglu.out = {conf::Out(KESTREL_DTYPE_F32, {2, 8})};
  others.push_back(geglu);
  for (const conf::OpCase& c : others) {
    std::vector<kestrel_tensor_arg_t> in, out;
    for (const conf::Tensor& t : c.in) in.push_back(conf::A(t.desc));
    for (const conf::Tensor& t : c.out) out.push_back(conf::A(t.desc));
    kestrel_op_desc_t op = conf::MakeOp(c.kind, in, out, c.params);
    auto s = env.dev->Query(op);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->level, KESTREL_OP_UNSUPPORTED)
        << conf::Name(c.in.size() > 1 ? c.in[1].desc.dtype : 0) << " kind " << c.kind;
  }
  for (uint32_t kind : {KESTREL_OP_ROPE, KESTREL_OP_EMBEDDING_GATHER, KESTREL_OP_LOGITS,
                        KESTREL_OP_KV_WRITE, KESTREL_OP_MOE}) {
    kestrel_op_desc_t op{};
    op.struct_size = sizeof op;
    op.kind = kind;
    op.op_version = 1;
    kestrel_op_support_t support{};
    support.struct_size = sizeof support;
    // Unknown to the stub: UNSUPPORTED before any descriptor check.
    auto s = env.dev->Query(op);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->level, KESTREL_OP_UNSUPPORTED) << kind;
  }
}

// Reads the simulated clock: {ns, launches}.
std::pair<uint64_t, uint64_t> ReadClock(hal::Device* dev) {
  auto buf = dev->Allocate(16);
  EXPECT_TRUE(buf.ok());
  kestrel_tensor_arg_t out{};
  out.desc = conf::Desc(KESTREL_DTYPE_I32, {4});
  out.buffer = buf->handle();
  kestrel_op_desc_t op{};
  op.struct_size = sizeof op;
  op.kind = KESTREL_NPU_OP_READ_CLOCK;
  op.op_version = 1;
  op.n_outputs = 1;
  op.outputs = &out;
  EXPECT_TRUE(dev->Execute(op, nullptr).ok());
  uint32_t w[4] = {0, 0, 0, 0};
  EXPECT_TRUE(dev->Read(*buf, 0, w, sizeof w).ok());
  return {(uint64_t{w[1]} << 32) | w[0], (uint64_t{w[3]} << 32) | w[2]};
}

// A fixed sequence on a fresh device: one write of x, one prepared-weight MATMUL; the clock moves
// by exactly the cost model's numbers.
std::pair<uint64_t, uint64_t> SimulatedStep() {
  auto reg = hal::PluginRegistry::Create(conf::PluginPath("npu_stub"), nullptr);
  auto dev = reg->FindDevice("npu");
  EXPECT_TRUE(dev.ok());
  if (!dev.ok()) return {};
  Rng rng(5);
  const int64_t t = 4, n = 64, k = 128;
  conf::OpCase c;
  c.kind = KESTREL_OP_MATMUL;
  c.in = {conf::F32({t, k}, rng.Floats(t * k)), conf::Weight(rng, KESTREL_DTYPE_Q8_0, n, k, true)};
  c.out = {conf::Out(KESTREL_DTYPE_F32, {t, n})};
  const auto before = ReadClock(*dev);
  std::vector<std::vector<uint8_t>> outs;
  EXPECT_TRUE(conf::RunOn(*dev, c, &outs).ok());
  const auto after = ReadClock(*dev);
  return {after.first - before.first, after.second - before.second};
}

TEST(NpuPluginTest, SimulatedTimeIsTheCostModelsAndTheSameEveryRun) {
  const auto first = SimulatedStep();
  const auto second = SimulatedStep();
  EXPECT_EQ(first, second);
  EXPECT_GT(first.first, 0u);
  // RunOn: buffer writes of the inputs (x; the poisoned output), the MATMUL, the read of the
  // output, and the reads of ReadClock's own buffer; every launch costs at least launch_us.
  EXPECT_GE(first.first, first.second * 5000u);
  NpuConfig cfg;
  const uint64_t matmul = MatmulCostNs(cfg, 4, 64, 128,
                                       CompiledWeightBytes(64, 128) + 4 * 128 + 4 * 64 * 4);
  EXPECT_GE(first.first, matmul);
}

}  // namespace
}  // namespace kestrel::plugins::npu
