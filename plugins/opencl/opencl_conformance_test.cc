// Conformance of the OpenCL plugin against the reference plugin, through the HAL, with the shared
// device-conformance harness (tests/device_conformance: both plugins dlopen()ed by one
// PluginRegistry, every op on both devices with the same fresh random inputs, seed printed on
// failure, KESTREL_TEST_SEED reproduces, outputs poisoned, relative norm error or bit for bit).
// The shared cases: every op, op_query answers, data-dependent errors, in-place ops, streams and
// events through the raw plugin table. Here: the OpenCL device and its skip, its matmul shapes,
// and the kernel binary cache. Without an OpenCL device every test is skipped with the plugin's
// reason.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/device_conformance/device_conformance.h"

namespace kestrel::plugins::opencl {
namespace {

namespace cases = conformance::cases;
using conformance::RawPlugin;

const conformance::Devices& Env() { return conformance::LoadDevices("opencl"); }

class OpenClTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(Env().ref, nullptr) << "the reference plugin did not load from "
                                  << conformance::PluginDir();
    if (Env().dev == nullptr) GTEST_SKIP() << "no OpenCL device: " << Env().why_not;
  }
};

// ---- element-wise and per-row ops -----------------------------------------------------------------
TEST_F(OpenClTest, AddAndSwiglu) { cases::AddAndSwiglu(Env()); }
TEST_F(OpenClTest, AddInPlace) { cases::AddInPlace(Env()); }
TEST_F(OpenClTest, RmsNorm) { cases::RmsNorm(Env()); }
TEST_F(OpenClTest, Rope) { cases::Rope(Env()); }
TEST_F(OpenClTest, RopeFreqFactors) { cases::RopeFreqFactors(Env()); }
TEST_F(OpenClTest, MatmulBias) { cases::MatmulBias(Env()); }
TEST_F(OpenClTest, EmbeddingGatherEveryWeightDtype) {
  cases::EmbeddingGatherEveryWeightDtype(Env());
}

// ---- matmul and logits ----------------------------------------------------------------------------
TEST_F(OpenClTest, MatmulEveryWeightDtypeAndOddShapes) {
  cases::MatmulEveryWeightDtype(Env(), {{1, 64, 64}, {5, 96, 33}, {9, 256, 7}, {1, 2080, 5},
                                        {2, 64, 172}},
                                // stories260K's FFN-down K (not a block multiple), and K = 13
                                {{3, 172, 64}, {2, 13, 3}});
}

TEST_F(OpenClTest, LogitsPicksRows) { cases::LogitsPicksRows(Env(), /*ten_rows=*/false); }

// ---- KV cache ops and paged attention ----------------------------------------------------------
TEST_F(OpenClTest, KvWriteF32AndF16Caches) { cases::KvWriteF32AndF16Caches(Env()); }
TEST_F(OpenClTest, KvBlockCopyAppliesPairsInOrder) { cases::KvBlockCopyAppliesPairsInOrder(Env()); }
TEST_F(OpenClTest, PagedAttentionVarlenPrefillAndDecode) {
  cases::PagedAttentionVarlenPrefillAndDecode(Env());
}
TEST_F(OpenClTest, PagedAttentionF16Caches) { cases::PagedAttentionF16Caches(Env()); }
TEST_F(OpenClTest, PagedAttentionSlidingWindow) { cases::PagedAttentionSlidingWindow(Env()); }
TEST_F(OpenClTest, GegluAndScaledEmbedding) { cases::GegluAndScaledEmbedding(Env()); }
TEST_F(OpenClTest, PagedAttentionSingleDecodeLongContext) {
  cases::PagedAttentionSingleDecodeLongContext(Env());
}

// ---- op_query, data-dependent errors, names ------------------------------------------------------
// Tree-mask attention: unsupported (the runtime falls back to ref).
TEST_F(OpenClTest, OpQueryLevels) { cases::OpQueryLevels(Env(), KESTREL_OP_UNSUPPORTED); }
TEST_F(OpenClTest, OutOfRangeIndicesAreErrorsNotAccesses) {
  cases::OutOfRangeIndicesAreErrorsNotAccesses(Env());
}
TEST_F(OpenClTest, DeviceNamesAndCaps) { cases::DeviceNamesAndCaps(Env()); }

// ---- raw plugin table: streams, events, the kernel cache --------------------------------------------
// RawPlugin loads the plugin library beside the registry's user of it; the OpenCL plugin counts
// init/shutdown pairs from such direct users, and the last cache_dir given wins.
TEST_F(OpenClTest, AsyncWriteOpReadOrderOnOneStream) {
  cases::AsyncWriteOpReadOrderOnOneStream(Env());
}
TEST_F(OpenClTest, EventWaitAcrossTwoStreams) { cases::EventWaitAcrossTwoStreams(Env()); }

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    closedir(d);
  }
  return names;
}

TEST_F(OpenClTest, KernelBinaryCacheIsWrittenThenUsed) {
  char tmpl[] = "/tmp/kestrel_ocl_cache_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = std::string(tmpl) + "/nested/cache";
  {
    RawPlugin p("opencl", {{"cache_dir", dir}});
    ASSERT_TRUE(p.ok()) << p.error();
    EXPECT_NE(p.logs().find("kernels compiled"), std::string::npos) << p.logs();
  }
  const std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].rfind("kernels-", 0), 0u) << files[0];
  {
    RawPlugin p("opencl", {{"cache_dir", dir}});
    ASSERT_TRUE(p.ok()) << p.error();
    EXPECT_NE(p.logs().find("kernels from the cache"), std::string::npos) << p.logs();
  }
  std::remove((dir + "/" + files[0]).c_str());
  rmdir(dir.c_str());
  rmdir((std::string(tmpl) + "/nested").c_str());
  rmdir(tmpl);
}

TEST_F(OpenClTest, UnwritableCacheIsAWarningNotAnError) {
  // A cache folder below a regular file can never be created.
  char tmpl[] = "/tmp/kestrel_ocl_file_XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  RawPlugin p("opencl", {{"cache_dir", std::string(tmpl) + "/cache"}});
  EXPECT_TRUE(p.ok()) << p.error();
  EXPECT_NE(p.logs().find("cannot create the kernel cache folder"), std::string::npos)
      << p.logs();
  std::remove(tmpl);
}

}  // namespace
}  // namespace kestrel::plugins::opencl
