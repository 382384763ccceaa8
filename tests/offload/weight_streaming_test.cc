// Weight streaming through the public C API on stories260K (5 layers, F32): device budgets
// that cannot hold every weight make the planner stream layers through a ring of device buffers;
// greedy tokens must equal the fully resident run's at every budget, on ref and cpu (synchronous:
// each layer copied before its use) and on opencl (queued copies on a stream of their own,
// prefetched ahead; skipped without an OpenCL device). The device's tracked allocations never
// exceed the budget plus the activations the resident run needs too, and a budget that cannot
// hold even a streamed model fails with RESOURCE_EXHAUSTED naming the numbers. On every device
// the streamed matrices are read from the file with direct I/O (or pread + FADV_DONTNEED when
// O_DIRECT is off; opencl queues its copies from the ring slots' host bytes): a copy of the model
// whose pages were dropped from the page cache gets none of its streamed bytes cached back
// (mincore), under a budget below the weight bytes, on cpu and on opencl.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "nlohmann/json.hpp"
#include "tests/offload/offload_test_util.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

constexpr uint32_t kCtx = 96;

std::string BudgetName(const std::string& device) {
  return device == "opencl" ? "opencl" : "host";  // ref and cpu compute in host memory
}

StatusPtr Load(kestrel_runtime_t* rt, const std::string& device, const std::string& budget,
               bool metadata_only, ModelPtr* out) {
  return LoadBudgeted(rt, {"stories260K.gguf", device, budget, 0, metadata_only, kCtx}, out);
}

std::vector<int32_t> Greedy(kestrel_model_t* m, const std::vector<int32_t>& prompt, int n) {
  return GreedyIds(m, kCtx, prompt, n);
}

std::vector<std::vector<int32_t>> Prompts() { return GoldenPrompts("stories260K.golden.json", 2); }

class WeightStreamingTest : public ::testing::TestWithParam<const char*> {};

TEST_P(WeightStreamingTest, BudgetsGiveTheResidentTokensWithinTheBudget) {
  const std::string device = GetParam();
  const std::string who = BudgetName(device);
  // Each model in a runtime of its own, so each device's counters are that model's alone.
  RuntimePtr rt = MakeRuntime();
  ModelPtr resident;
  StatusPtr s = Load(rt.get(), device, who + "=unlimited", false, &resident);
  if (s != nullptr && device == "opencl") {
    GTEST_SKIP() << "no OpenCL device: " << kestrel_status_message(s.get());
  }
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t full = Plan(resident.get());
  EXPECT_EQ(full.n_streamed_layers, 0u);
  const auto prompts = Prompts();
  ASSERT_EQ(prompts.size(), 2u);
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts) want.push_back(Greedy(resident.get(), p, 24));
  // What the device holds besides the plan (activations, workspace): the same in every run.
  const kestrel_memory_stats_t r = MemoryStats(resident.get());
  ASSERT_GE(r.device_peak_bytes, full.device_total_bytes);
  const uint64_t overhead = r.device_peak_bytes - full.device_total_bytes;
  resident.reset();
  rt.reset();

  uint32_t last_streamed = 0;
  for (double f : {0.9, 0.7, 0.55}) {
    const uint64_t budget =
        full.kv_bytes + static_cast<uint64_t>(f * static_cast<double>(full.resident_bytes));
    SCOPED_TRACE(device + ", budget " + std::to_string(budget) + " (" + std::to_string(f) +
                 " of the weights)");
    RuntimePtr rt_budget = MakeRuntime();
    ModelPtr m;
    s = Load(rt_budget.get(), device, who + "=" + std::to_string(budget), false, &m);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    const kestrel_memory_plan_info_t p = Plan(m.get());
    EXPECT_GT(p.n_streamed_layers, 0u);
    EXPECT_GE(p.n_streamed_layers, last_streamed);  // a smaller budget streams no fewer layers
    last_streamed = p.n_streamed_layers;
    EXPECT_LT(p.resident_bytes, full.resident_bytes);
    EXPECT_GT(p.streamed_bytes, 0u);
    // A device with streams (PoCL) prefetches at least one layer ahead; ref and cpu copy each
    // layer just before its use, into one slot.
    if (device == "opencl") {
      EXPECT_GE(p.stream_prefetch_distance, 1u);
    } else {
      EXPECT_EQ(p.stream_prefetch_distance, 0u);
    }
    EXPECT_EQ(p.stream_slots, p.stream_prefetch_distance + 1);
    EXPECT_LT(p.stream_slots, p.n_streamed_layers);  // else the ring would hold them all
    EXPECT_GT(p.stream_ring_bytes, 0u);
    EXPECT_LE(p.device_total_bytes, budget);
    EXPECT_EQ(p.device_budget_bytes, budget);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(Greedy(m.get(), prompts[i], 24), want[i]) << "prompt " << i;
    }
    const kestrel_memory_stats_t b = MemoryStats(m.get());
    // Every step (2 x (prefill + 24 decode)) copied every streamed layer but those the ring
    // still held from the step before (at most its slots' worth).
    EXPECT_GT(b.streamed_bytes_copied, 0u);
    EXPECT_GE(b.streamed_bytes_copied,
              2 * 25 * (p.streamed_bytes - std::min(p.streamed_bytes, p.stream_ring_bytes)));
    // Reading from the file blocks the host (the copies themselves are queued on opencl).
    EXPECT_GT(b.stream_copy_wait_seconds, 0.0);
    // Every copied byte came from the file, through the planned staging buffer (on opencl also
    // the slots' host bytes the queued copies read).
    EXPECT_EQ(b.stream_file_bytes_read, b.streamed_bytes_copied);
    EXPECT_GT(b.stream_file_read_seconds, 0.0);
    if (device == "opencl") {
      EXPECT_GT(p.stream_staging_bytes, p.stream_ring_bytes);
    } else {
      EXPECT_GT(p.stream_staging_bytes, 0u);
    }
    ASSERT_NE(b.stream_io_mode, nullptr);
    EXPECT_STRNE(b.stream_io_mode, "memory (mapped file)");
    EXPECT_LE(b.device_peak_bytes, budget + overhead)
        << "peak " << b.device_peak_bytes << ", activations etc. " << overhead;
    // Every step copied the streamed layers again (a ring that held them all would save
    // nothing, so the planner never picks one): more bytes moved than loading everything once.
    EXPECT_GT(b.host_to_device_bytes, r.host_to_device_bytes);
  }
}

TEST_P(WeightStreamingTest, ABudgetTooSmallEvenToStreamNamesTheNumbers) {
  const std::string device = GetParam();
  RuntimePtr rt = MakeRuntime();
  ModelPtr m;
  StatusPtr s = Load(rt.get(), device, BudgetName(device) + "=200K", false, &m);
  if (s != nullptr && device == "opencl" &&
      kestrel_status_code(s.get()) != KESTREL_STATUS_RESOURCE_EXHAUSTED) {
    GTEST_SKIP() << "no OpenCL device: " << kestrel_status_message(s.get());
  }
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_RESOURCE_EXHAUSTED);
  const std::string msg = kestrel_status_message(s.get());
  EXPECT_NE(msg.find("204800 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("every streamable layer (5) streamed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bytes too many"), std::string::npos) << msg;
}

// Bytes of `path` in the page cache (mincore over a fresh read-only mapping).
uint64_t CachedBytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return UINT64_MAX;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  void* map = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return UINT64_MAX;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((static_cast<size_t>(size) + page - 1) / page);
  uint64_t cached = UINT64_MAX;
  if (::mincore(map, static_cast<size_t>(size), in.data()) == 0) {
    cached = 0;
    for (unsigned char c : in) cached += (c & 1) ? page : 0;
  }
  ::munmap(map, static_cast<size_t>(size));
  return cached;
}

// Drops `path`'s clean pages from the page cache.
bool DropCached(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ::fdatasync(fd);
  const bool ok = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return ok;
}

// (device, direct I/O allowed): cpu reads into one staging buffer and copies synchronously;
// opencl (PoCL) reads each layer into its ring slot's host bytes and queues the copy from them
// (its pread fallback is the reader cpu's pread case covers).
class StreamFromFileTest : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(StreamFromFileTest, StreamedLayersBypassThePageCacheUnderABudget) {
  const std::string device = std::get<0>(GetParam());
  const bool direct = std::get<1>(GetParam());
  RuntimePtr rt = MakeRuntime();
  ModelPtr resident;
  StatusPtr s = Load(rt.get(), device, BudgetName(device) + "=unlimited", false, &resident);
  if (s != nullptr && device == "opencl") {
    GTEST_SKIP() << "no OpenCL device: " << kestrel_status_message(s.get());
  }
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t full = Plan(resident.get());
  const auto prompts = Prompts();
  const std::vector<int32_t> want = Greedy(resident.get(), prompts[0], 16);
  resident.reset();

  // A copy of its own: no other process maps it, so what the page cache holds of it is ours.
  const std::string copy = TestTempDir().File(device + (direct ? "-direct.gguf" : "-pread.gguf"));
  {
    std::ifstream in(ModelPath("stories260K.gguf"), std::ios::binary);
    std::ofstream out(copy, std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_TRUE(DropCached(copy));
  ASSERT_EQ(CachedBytes(copy), 0u) << "the page cache kept " << copy;

  // Less than the weights: the planner streams, and the budget includes the staging buffer.
  // (opencl's ring has two slots, prefetching a layer ahead: 70 % of the weights.)
  const uint64_t budget =
      full.kv_bytes + (device == "opencl" ? full.resident_bytes * 7 / 10 : full.resident_bytes / 2);
  ASSERT_LT(budget, full.resident_bytes);
  kestrel_model_options_t o;
  kestrel_model_options_init(&o);
  o.device = device.c_str();
  const std::string mem = BudgetName(device) + "=" + std::to_string(budget);
  o.memory_budget = mem.c_str();
  o.plan_context_length = kCtx;
  o.offload_flags = direct ? 0 : KESTREL_OFFLOAD_FLAG_NO_DIRECT_IO;
  kestrel_model_t* raw = nullptr;
  s.reset(kestrel_model_load(rt.get(), copy.data(), copy.size(), &o, &raw));
  ModelPtr m(raw);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t p = Plan(m.get());
  ASSERT_GT(p.n_streamed_layers, 0u);
  EXPECT_GT(p.stream_staging_bytes, 0u);
  EXPECT_LE(p.device_total_bytes, budget);
  if (device == "opencl") {
    // Host bytes the queued copies read: the host budget's, not the device's.
    EXPECT_GE(p.stream_staging_bytes, p.stream_ring_bytes);
    EXPECT_EQ(p.device_total_bytes, p.resident_bytes + p.kv_bytes + p.stream_ring_bytes);
  } else {
    EXPECT_EQ(p.device_total_bytes, p.resident_bytes + p.kv_bytes + p.stream_ring_bytes +
                                        p.stream_staging_bytes);
  }
  EXPECT_EQ(Greedy(m.get(), prompts[0], 16), want);
  const kestrel_memory_stats_t st = MemoryStats(m.get());
  ASSERT_NE(st.stream_io_mode, nullptr);
  const std::string mode = st.stream_io_mode;
  EXPECT_EQ(st.stream_file_bytes_read, st.streamed_bytes_copied);
  // 17 steps (the prompt, then 16 tokens), each reading what the ring did not still hold.
  EXPECT_GE(st.stream_file_bytes_read,
            17 * (p.streamed_bytes - std::min(p.streamed_bytes, p.stream_ring_bytes)));
  if (!direct) {
    EXPECT_EQ(mode, "pread (O_DIRECT refused: disabled by the caller)");
  } else if (mode.rfind("pread", 0) == 0) {
    GTEST_SKIP() << "the filesystem of " << copy << " refused O_DIRECT (" << mode
                 << "): page-cache check skipped";
  } else {
    EXPECT_EQ(mode, "direct I/O (O_DIRECT)");
  }
  // The streamed matrices were read every step, yet their pages are not in the page cache: at
  // most the file less the streamed bytes (resident weights were read through the mapping at
  // load), plus a page at each end of each streamed matrix (up to 7 a layer) shared with a
  // resident neighbour.
  const uint64_t cached = CachedBytes(copy);
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t file_bytes =
      static_cast<uint64_t>(std::ifstream(copy, std::ios::ate | std::ios::binary).tellg());
  EXPECT_LE(cached, file_bytes - p.streamed_bytes + 2 * page * 7 * p.n_streamed_layers)
      << "cached " << cached << " of " << file_bytes << " bytes; streamed " << p.streamed_bytes;
  m.reset();
  std::remove(copy.c_str());
}

INSTANTIATE_TEST_SUITE_P(DirectOrPread, StreamFromFileTest,
                         ::testing::Values(std::make_tuple(std::string("cpu"), true),
                                           std::make_tuple(std::string("cpu"), false),
                                           std::make_tuple(std::string("opencl"), true)),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, bool>>& i) {
                           return std::get<0>(i.param) + (std::get<1>(i.param) ? "_direct" : "_pread");
                         });

INSTANTIATE_TEST_SUITE_P(Devices, WeightStreamingTest, ::testing::Values("ref", "cpu", "opencl"));

}  // namespace
}  // namespace kestrel::testing
