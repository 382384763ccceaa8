// Unit tests of runtime/offload/: SIZE parsing, the planner on fixed inputs (exact placements,
// the host swap space and the RESOURCE_EXHAUSTED numbers), the KV swap space's accounting and
// cost model, the eviction policies, and the file reader (direct I/O where
// the temp filesystem allows it, pread otherwise, same bytes either way).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/offload/eviction_policy.h"
#include "runtime/offload/file_reader.h"
#include "runtime/offload/kv_swap.h"
#include "runtime/offload/memory_planner.h"
#include "runtime/offload/size_spec.h"
#include "tests/temp_dir.h"

namespace kestrel::runtime::offload {
namespace {

TEST(SizeSpecTest, ParsesSuffixesAndPercentages) {
  EXPECT_EQ(*ParseSize("1024", 0), 1024u);
  EXPECT_EQ(*ParseSize("256K", 0), 256u * 1024);
  EXPECT_EQ(*ParseSize("256M", 0), 256ull << 20);
  EXPECT_EQ(*ParseSize("1.5G", 0), 3ull << 29);
  EXPECT_EQ(*ParseSize("2GiB", 0), 2ull << 30);
  EXPECT_EQ(*ParseSize("1T", 0), 1ull << 40);
  EXPECT_EQ(*ParseSize("60%", 1000), 600u);
  EXPECT_EQ(*ParseSize("unlimited", 0), UINT64_MAX);
  for (const char* bad : {"", "M", "-1", "12Q", "0%", "1001%", "1e30G", "nan"}) {
    absl::StatusOr<uint64_t> v = ParseSize(bad, 100);
    EXPECT_FALSE(v.ok()) << bad;
    if (!v.ok()) {
      EXPECT_NE(std::string(v.status().message()).find(std::string("'") + bad + "'"),
                std::string::npos)
          << v.status();
    }
  }
}

TEST(SizeSpecTest, ParsesBudgetLists) {
  auto b = ParseBudgets({"opencl=256M", "host=60%,cpu=1K"}, 1000);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->size(), 3u);
  EXPECT_EQ((*b)[0].device, "opencl");
  EXPECT_EQ((*b)[0].bytes, 256ull << 20);
  EXPECT_EQ((*b)[1].device, "host");
  EXPECT_EQ((*b)[1].bytes, 600u);
  EXPECT_EQ((*b)[2].bytes, 1024u);
  EXPECT_FALSE(ParseBudgets({"host=1G", "host=2G"}, 0).ok());
  EXPECT_FALSE(ParseBudgets({"=1G"}, 0).ok());
  EXPECT_FALSE(ParseBudgets({"host"}, 0).ok());
  EXPECT_TRUE(ParseBudgets({}, 0)->empty());
}

// 2 MoE layers x 4 experts, top-2: per layer 100 bytes of dense weights and 3 expert stacks of
// 400 bytes (each expert: 3 x 100 bytes); 10 bytes of KV per token.
PlanRequest Request() {
  PlanRequest r;
  r.device = "cpu";
  r.device_capacity = 1 << 30;
  r.device_is_host = true;
  r.n_layers = 2;
  r.n_experts = 4;
  r.top_k = 2;
  r.kv_bytes_per_token = 10;
  r.context = 10;
  r.sequences = 1;
  int id = 0;
  for (int l = 0; l < 2; ++l) {
    r.tensors.push_back({id++, 100, l, false});
    for (int k = 0; k < 3; ++k) r.tensors.push_back({id++, 400, l, true});
  }
  r.tensors.push_back({id++, 50, -1, false});  // embeddings
  r.weight_bytes = 2 * 100 + 6 * 400 + 50;
  return r;
}

TEST(MemoryPlannerTest, EverythingResidentWhenItFits) {
  PlanRequest r = Request();
  auto p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->experts_offloaded);
  EXPECT_EQ(p->resident_bytes, 2650u);
  EXPECT_EQ(p->resident.size(), 9u);
  EXPECT_EQ(p->kv_bytes, 100u);
  EXPECT_EQ(p->device_budget, 1u << 30);
  EXPECT_FALSE(p->device_budget_given);
  EXPECT_EQ(p->host_swap_bytes, 0u);  // no host budget, no swap space

  // The host budget beyond what the device (host memory) holds is KV swap space.
  r.budgets = {{"host", 10000}};
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->device_total_bytes(), 2750u);
  EXPECT_EQ(p->host_swap_bytes, 10000u - 2750u);

  // An "unlimited" host budget (`kestrel plan` without --mem) leaves unlimited swap space, not
  // UINT64_MAX less what is used (which `kestrel plan --json` printed as a 20-digit figure).
  r.budgets = {{"host", UINT64_MAX}};
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->host_swap_bytes, UINT64_MAX);
}

TEST(MemoryPlannerTest, ExpertsGoToTheCacheUnderAHostBudget) {
  PlanRequest r = Request();
  // dense 250 + KV 100 = 350; the 900 bytes left hold 3 slots of 300, one of them staging.
  r.budgets = {{"host", 1250}};
  auto p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->experts_offloaded);
  EXPECT_EQ(p->expert_slot_bytes, 300u);
  EXPECT_EQ(p->expert_slots, 2u);
  EXPECT_EQ(p->experts_total, 8u);
  EXPECT_EQ(p->offloaded.size(), 6u);
  EXPECT_EQ(p->resident_bytes, 250u);
  EXPECT_EQ(p->expert_cache_bytes(), 900u);
  EXPECT_LE(p->device_total_bytes(), 1250u);
  EXPECT_EQ(p->device_budget, 1250u);
  EXPECT_EQ(p->host_budget, 1250u);
  EXPECT_EQ(p->host_swap_bytes, 0u);  // the expert cache took all the host budget left

  // The device budget binds the same way; "cpu" names "cpu:0".
  r.device = "cpu:0";
  r.budgets = {{"cpu", 1300}, {"host", 1 << 20}};
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->expert_slots, 2u);
  EXPECT_EQ(p->device_budget, 1300u);
}

TEST(MemoryPlannerTest, AHostBudgetDoesNotLimitAGpu) {
  PlanRequest r = Request();
  r.device = "opencl:0";
  r.device_is_host = false;
  r.budgets = {{"host", 10}};
  auto p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->experts_offloaded);
  EXPECT_EQ(p->host_budget, 10u);
  EXPECT_EQ(p->host_swap_bytes, 10u);  // the device's memory is not the host's
}

// A device that does not take some dtypes (opencl and a K-quant, say): those tensors are planned
// on the fallback device in host memory, never streamed nor cached on the device; one expert stack
// it cannot hold sends every expert stack there; the host budget bounds them, naming the dtypes.
TEST(MemoryPlannerTest, DtypesTheDeviceCannotHoldArePlannedOnTheHost) {
  PlanRequest r = Request();
  r.device = "opencl:0";
  r.device_is_host = false;
  r.device_async = true;
  r.dtype_name = [](uint32_t d) { return d == 7 ? std::string("Q4_K") : std::string("F32"); };
  for (PlannedTensor& t : r.tensors) t.streamable = !t.expert_stack && t.layer >= 0;
  r.tensors[0].device_can_hold = false;  // layer 0's dense matrix
  r.tensors[0].streamable = false;
  r.tensors[0].dtype = 7;
  // dense 150 on the device + KV 100; 1000 left: every expert would fit the cache, not all.
  r.budgets = {{"opencl", 1250}};
  auto p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->host_resident, std::vector<int>{0});
  EXPECT_EQ(p->host_resident_bytes, 100u);
  EXPECT_EQ(p->resident_bytes, 150u);
  EXPECT_TRUE(p->experts_offloaded);
  EXPECT_EQ(p->expert_slots, 2u);  // (1250 - 250) / 300 - 1 staging
  EXPECT_TRUE(p->streamed.empty());

  // One expert stack in a dtype the device does not take: all six go to the host, no cache.
  r.tensors[1].device_can_hold = false;
  r.tensors[1].dtype = 7;
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->experts_offloaded);
  EXPECT_EQ(p->expert_bytes, 0u);
  EXPECT_EQ(p->host_resident.size(), 7u);
  EXPECT_EQ(p->host_resident_bytes, 100u + 6 * 400u);
  EXPECT_EQ(p->device_total_bytes(), 150u + 100u);

  // They count against the host budget: too small a one names the dtypes and the numbers.
  r.budgets = {{"opencl", 1250}, {"host", 1000}};
  p = PlanMemory(r);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string m(p.status().message());
  EXPECT_NE(m.find("Q4_K"), std::string::npos) << m;
  EXPECT_NE(m.find("2500 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("opencl:0"), std::string::npos) << m;
  r.budgets = {{"opencl", 1250}, {"host", 3000}};
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->host_swap_bytes, 500u);
}

TEST(KvSwapSpaceTest, HeldBytesNeverExceedTheBudget) {
  KvSwapSpace space(1000);
  EXPECT_EQ(space.budget_bytes(), 1000u);
  uint8_t* a = space.Allocate(1, 600);
  ASSERT_NE(a, nullptr);
  a[599] = 7;
  EXPECT_EQ(space.Allocate(1, 10), nullptr);   // key 1 holds a buffer already
  EXPECT_EQ(space.Allocate(2, 401), nullptr);  // 1001 > 1000
  EXPECT_EQ(space.held_bytes(), 600u);
  uint8_t* b = space.Allocate(2, 400);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(space.held_bytes(), 1000u);
  EXPECT_EQ(space.Allocate(3, 1), nullptr);
  uint64_t n = 0;
  EXPECT_EQ(space.Find(1, &n), a);
  EXPECT_EQ(n, 600u);
  EXPECT_EQ(a[599], 7);
  space.Release(1);
  space.Release(1);  // twice: no-op
  EXPECT_EQ(space.Find(1), nullptr);
  EXPECT_EQ(space.held_bytes(), 400u);
  EXPECT_EQ(space.peak_bytes(), 1000u);
  EXPECT_EQ(space.n_entries(), 1u);
  EXPECT_EQ(space.Allocate(4, 0), nullptr);
  EXPECT_EQ(space.Allocate(5, UINT64_MAX), nullptr);
}

TEST(SwapCostModelTest, ComparesMeasuredCopyAndComputeRates) {
  SwapCostModel m;
  EXPECT_LT(m.SwapMs(1000), 0);
  EXPECT_TRUE(m.PreferSwap(10, 1000));  // nothing measured: swap, which measures
  m.RecordCompute(100, 10);             // 10 tokens per ms
  EXPECT_TRUE(m.PreferSwap(10, 1000));  // the copy rate is still unknown
  m.RecordCopy(1000, 1);                // 1000 bytes per ms: out and back = 2 ms per 1000 bytes
  EXPECT_DOUBLE_EQ(m.SwapMs(1000), 2.0);
  EXPECT_DOUBLE_EQ(m.RecomputeMs(10), 1.0);
  EXPECT_FALSE(m.PreferSwap(10, 1000));  // 2 ms of copies against 1 ms of compute
  EXPECT_TRUE(m.PreferSwap(100, 1000));  // 2 ms against 10 ms
  m.RecordCopy(1000, 0);                 // no time measured: ignored
  EXPECT_DOUBLE_EQ(m.copy_bytes_per_ms(), 1000.0);
  m.RecordCopy(4000, 1);  // moving average: 0.75 x 1000 + 0.25 x 4000
  EXPECT_DOUBLE_EQ(m.copy_bytes_per_ms(), 1750.0);
}

// 4 dense layers: 4 streamable matrices of 256 bytes and a 64-byte norm each; 512 bytes of
// embeddings; 10 bytes of KV per token. All resident: 4864 bytes of weights.
PlanRequest DenseRequest(bool async) {
  PlanRequest r;
  r.device = "opencl";
  r.device_async = async;
  r.n_layers = 4;
  r.kv_bytes_per_token = 10;
  r.context = 10;
  int id = 0;
  for (int l = 0; l < 4; ++l) {
    for (int k = 0; k < 4; ++k) r.tensors.push_back({id++, 256, l, false, true});
    r.tensors.push_back({id++, 64, l, false, false});
  }
  r.tensors.push_back({id++, 512, -1, false, false});
  r.weight_bytes = 4864;
  return r;
}

TEST(MemoryPlannerTest, StreamsTheFewestLayersSpreadOverTheDepth) {
  // Async: 3 of 4 layers streamed through 2 slots (prefetch 1) fit 4000; prefetch 2 would not.
  PlanRequest r = DenseRequest(true);
  r.budgets = {{"opencl", 4000}};
  auto p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->streamed_layers, (std::vector<uint32_t>{0, 2, 3}));
  EXPECT_EQ(p->streamed.size(), 12u);
  EXPECT_EQ(p->streamed_bytes, 3072u);
  EXPECT_EQ(p->stream_slot_bytes, 1024u);
  EXPECT_EQ(p->stream_slots, 2u);
  EXPECT_EQ(p->prefetch_distance, 1u);
  EXPECT_EQ(p->resident_bytes, 1792u);
  EXPECT_EQ(p->resident.size(), 21u - 12u);
  EXPECT_EQ(p->device_total_bytes(), 1792u + 2048u + 100u);
  // A prefetch distance asked for: 3 slots, so all 4 layers must stream to save anything.
  r.prefetch_distance = 2;
  r.budgets = {{"opencl", 4600}};
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->prefetch_distance, 2u);
  EXPECT_EQ(p->stream_slots, 3u);
  EXPECT_EQ(p->streamed_layers.size(), 4u);
  EXPECT_LE(p->device_total_bytes(), 4600u);
  // A synchronous device copies each layer just before its use: one slot, 2 layers suffice.
  r = DenseRequest(false);
  r.budgets = {{"opencl", 4000}};
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->streamed_layers, (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(p->stream_slots, 1u);
  EXPECT_EQ(p->prefetch_distance, 0u);
  EXPECT_EQ(p->device_total_bytes(), 4864u - 2048u + 1024u + 100u);
  // Everything fits: nothing streamed.
  r.budgets = {{"opencl", 4964}};
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->streamed_layers.empty());
  EXPECT_EQ(p->stream_ring_bytes(), 0u);
}

TEST(MemoryPlannerTest, ReplanForKvStreamsLayersWhenNoCacheCanShrink) {
  PlanRequest r = DenseRequest(false);
  r.budgets = {{"opencl", 4964}};  // everything fits: 4864 of weights + 100 of KV
  auto p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->streamed_layers.empty());
  // Without the plan's request there is nothing to give: no expert cache.
  EXPECT_EQ(ReplanForKv(*p, 1100).status().code(), absl::StatusCode::kResourceExhausted);
  // With it, 2 layers (2048 bytes) streamed through one 1024-byte slot make room for 1000 more.
  auto q = ReplanForKv(*p, 1100, &r);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->kv_bytes, 1100u);
  EXPECT_EQ(q->streamed_layers.size(), 2u);
  EXPECT_EQ(q->device_total_bytes(), 4864u - 2048u + 1024u + 1100u);
  EXPECT_LE(q->device_total_bytes(), 4964u);
  // More than streaming everything frees: the numbers, and both ways named.
  auto bad = ReplanForKv(*p, 4000, &r);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string m(bad.status().message());
  EXPECT_NE(m.find("KV pool of 4000 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("nor streaming more layers"), std::string::npos) << m;
  EXPECT_NE(m.find("4964"), std::string::npos) << m;
}

TEST(MemoryPlannerTest, WindowLayersHoldTheirWindowNotTheContext) {
  PlanRequest r = DenseRequest(false);
  r.kv_window_tokens = {32, 0, 32, 0};  // layers 0 and 2 keep 32 tokens per sequence
  r.kv_layer_bytes_per_token = 3;
  r.context = 100;
  r.sequences = 2;
  auto p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kv_bytes, 3u * (32 + 100 + 32 + 100) * 2);
  EXPECT_EQ(p->kv_tokens, 200u);
  r.context = 20;  // a context shorter than the window: every layer keeps the context
  p = PlanMemory(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kv_bytes, 3u * 20 * 4 * 2);
}

TEST(MemoryPlannerTest, ABudgetTooSmallToStreamGivesTheNumbers) {
  PlanRequest r = DenseRequest(true);
  r.budgets = {{"opencl", 2000}};
  auto p = PlanMemory(r);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string m(p.status().message());
  EXPECT_NE(m.find("is 2000 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("every streamable layer (4) streamed"), std::string::npos) << m;
  EXPECT_NE(m.find("still needs 2916 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("916 bytes too many"), std::string::npos) << m;
}

TEST(MemoryPlannerTest, ImpossibleBudgetsGiveTheNumbers) {
  PlanRequest r = Request();
  r.budgets = {{"host", 300}};
  auto p = PlanMemory(r);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  std::string m(p.status().message());
  EXPECT_NE(m.find("is 300 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("need 250 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("100 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("50 bytes too many"), std::string::npos) << m;

  r.budgets = {{"host", 1249}};  // 899 left: 2 slots + staging need 900
  p = PlanMemory(r);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  m = std::string(p.status().message());
  EXPECT_NE(m.find("899 bytes are left"), std::string::npos) << m;
  EXPECT_NE(m.find("at least 3 slots of 300 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("= 900 bytes"), std::string::npos) << m;

  r.budgets = {{"opencl", 1}};
  p = PlanMemory(r);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EvictionPolicyTest, LruEvictsTheLeastRecent) {
  EvictionPolicy p(EvictionKind::kLru, 10, 3);
  EXPECT_EQ(p.Victim(UINT32_MAX), 0u);
  p.Use(0, 5);
  EXPECT_EQ(p.Victim(UINT32_MAX), 1u);
  p.Use(1, 6);
  p.Use(2, 7);
  p.Use(0, 5);  // slot 1 is now the oldest
  EXPECT_EQ(p.Victim(UINT32_MAX), 1u);
  EXPECT_EQ(p.Victim(1), 2u);  // pinned slots are skipped
}

TEST(EvictionPolicyTest, LfuEvictsTheLeastFrequentWithHistory) {
  EvictionPolicy p(EvictionKind::kLfu, 10, 2);
  p.Use(0, 1);
  p.Use(0, 1);
  p.Use(0, 1);
  p.Use(1, 2);
  EXPECT_EQ(p.Victim(UINT32_MAX), 1u);  // key 2 used once, key 1 three times
  p.Use(1, 3);                           // key 3 replaces key 2
  p.Use(1, 3);
  p.Use(1, 3);
  p.Use(1, 3);
  EXPECT_EQ(p.Victim(UINT32_MAX), 0u);  // key 1: 3 uses < key 3: 4 uses
  EXPECT_EQ(ParseEvictionKind("lfu").value(), EvictionKind::kLfu);
  EXPECT_FALSE(ParseEvictionKind("fifo").ok());
}

class FileReaderTest : public ::testing::TestWithParam<bool> {};

TEST_P(FileReaderTest, ReadsTheBytesAtAnyOffset) {
  const kestrel::testing::ScopedTempDir tmp("offload_reader");
  const std::string path = tmp.File(GetParam() ? "direct" : "pread");
  std::vector<uint8_t> data(50000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + 7);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  auto r = FileReader::Open(path, 10000, GetParam());
  ASSERT_TRUE(r.ok()) << r.status();
  std::printf("file reader mode: %s\n", (*r)->mode().c_str());
  if (!GetParam()) {
    EXPECT_FALSE((*r)->direct());
  }
  for (uint64_t off : {0u, 1u, 4095u, 4096u, 12345u, 40000u}) {
    const uint64_t n = off == 40000u ? 10000u : 9999u;
    auto got = (*r)->Read(off, n);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(std::vector<uint8_t>(*got, *got + n),
              std::vector<uint8_t>(data.begin() + off, data.begin() + off + n))
        << "offset " << off;
  }
  EXPECT_FALSE((*r)->Read(0, 10001).ok());
  auto past = (*r)->Read(45000, 9000);
  EXPECT_FALSE(past.ok());
  EXPECT_GE((*r)->staging_bytes(), 10000u);
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(DirectAndPread, FileReaderTest, ::testing::Bool());

}  // namespace
}  // namespace kestrel::runtime::offload
