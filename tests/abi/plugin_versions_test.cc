// Plugin ABI versions on today's host (1.4): a plugin built against the frozen 1.1 header loads
// and runs through the 1.1 slots (one process-wide instance, init once), a 1.4 plugin gets an
// instance per registry (per runtime) with its own options and its own log sink, and a table that
// says minor 3 is never used past minor 3 (no instance slot, no accuracy_tier) even where it has
// those slots. The other direction (today's plugins on a 1.1 host) is old_host_test.c.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hal/src/device.h"
#include "hal/src/plugin_registry.h"

namespace kestrel::hal {
namespace {

struct Lines {
  std::mutex mu;
  std::vector<std::string> lines;
  LogSink Sink() {
    return [this](kestrel_plugin_log_level_t, const std::string& m) {
      std::lock_guard<std::mutex> lock(mu);
      lines.push_back(m);
    };
  }
  bool Has(const std::string& needle) {
    std::lock_guard<std::mutex> lock(mu);
    for (const std::string& l : lines) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }
};

std::string RefPlugin() {
  const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
  return std::string(dir != nullptr ? dir : ".") + "/libkestrel_plugin_ref.so";
}

kestrel_tensor_arg_t Arg(const Buffer& b, int64_t n) {
  kestrel_tensor_arg_t a{};
  a.desc.struct_size = sizeof(kestrel_tensor_desc_t);
  a.desc.dtype = KESTREL_DTYPE_F32;
  a.desc.rank = 2;
  a.desc.dims[0] = 1;
  a.desc.dims[1] = n;
  a.buffer = b.handle();
  return a;
}

// out = x + y on `dev` through the HAL; the result read back.
std::vector<float> RunAdd(Device* dev, const std::vector<float>& x, const std::vector<float>& y) {
  const int64_t n = static_cast<int64_t>(x.size());
  auto a = dev->Allocate(n * 4), b = dev->Allocate(n * 4), o = dev->Allocate(n * 4);
  EXPECT_TRUE(a.ok() && b.ok() && o.ok());
  if (!a.ok() || !b.ok() || !o.ok()) return {};
  EXPECT_TRUE(dev->Write(*a, 0, x.data(), n * 4).ok());
  EXPECT_TRUE(dev->Write(*b, 0, y.data(), n * 4).ok());
  kestrel_tensor_arg_t in[2] = {Arg(*a, n), Arg(*b, n)};
  kestrel_tensor_arg_t out[1] = {Arg(*o, n)};
  kestrel_op_desc_t op{};
  op.struct_size = sizeof op;
  op.kind = KESTREL_OP_ADD;
  op.op_version = 1;
  op.n_inputs = 2;
  op.n_outputs = 1;
  op.inputs = in;
  op.outputs = out;
  auto support = dev->Query(op);
  EXPECT_TRUE(support.ok()) << support.status();
  if (support.ok()) {
    EXPECT_NE(support->level, KESTREL_OP_UNSUPPORTED);
  }
  absl::Status st = dev->Execute(op, nullptr);
  EXPECT_TRUE(st.ok()) << st;
  std::vector<float> z(n, -1.0f);
  EXPECT_TRUE(dev->Read(*o, 0, z.data(), n * 4).ok());
  return z;
}

TEST(PluginVersionsTest, Abi11PluginRunsOnThisHostThroughTheOldSlots) {
  auto first = PluginRegistry::Create(KESTREL_OLD11_PLUGIN, nullptr);
  ASSERT_EQ(first->plugins().size(), 1u);
  const PluginRecord& r = first->plugins()[0];
  ASSERT_TRUE(r.loaded) << r.skip_reason;
  EXPECT_EQ(r.api_major, 1);
  EXPECT_EQ(r.api_minor, 1);
  EXPECT_FALSE(r.own_instance);
  auto dev = first->FindDevice("old11");
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_STREQ((*dev)->caps().description, "ABI 1.1 test plugin, init called 1 time(s)");
  std::vector<float> x = {1, 2, 3, 4}, y = {0.5f, -2, 10, 0};
  EXPECT_EQ(RunAdd(*dev, x, y), (std::vector<float>{1.5f, 0, 13, 4}));

  // A second registry shares the library's one instance: init is not called again.
  auto second = PluginRegistry::Create(KESTREL_OLD11_PLUGIN, nullptr);
  auto dev2 = second->FindDevice("old11");
  ASSERT_TRUE(dev2.ok()) << dev2.status();
  EXPECT_FALSE(second->plugins()[0].own_instance);
  EXPECT_STREQ((*dev2)->caps().description, "ABI 1.1 test plugin, init called 1 time(s)");
}

TEST(PluginVersionsTest, Minor3TableIsNotUsedPastMinor3) {
  auto first = PluginRegistry::Create(KESTREL_MINOR3_PLUGIN, nullptr);
  ASSERT_EQ(first->plugins().size(), 1u);
  const PluginRecord& r = first->plugins()[0];
  ASSERT_TRUE(r.loaded) << r.skip_reason;
  EXPECT_EQ(r.api_minor, 3);
  EXPECT_FALSE(r.own_instance);
  auto dev = first->FindDevice("minor3");
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_STREQ((*dev)->caps().description, "minor3 test plugin, instance_create called 0 time(s)");
  // The plugin wrote INT8 into a field its minor does not have: the host reads REFERENCE.
  EXPECT_EQ((*dev)->caps().accuracy_tier, uint32_t{KESTREL_ACCURACY_REFERENCE});
  EXPECT_EQ(RunAdd(*dev, {1, 2}, {3, 4}), (std::vector<float>{4, 6}));
  auto second = PluginRegistry::Create(KESTREL_MINOR3_PLUGIN, nullptr);
  EXPECT_FALSE(second->plugins()[0].own_instance);
}

TEST(PluginVersionsTest, TwoRegistriesGetTheirOwnInstancesOptionsAndLogSinks) {
  Lines one, two;
  auto a = PluginRegistry::Create(RefPlugin(), one.Sink(), {{"only_in_one", "1"}});
  auto b = PluginRegistry::Create(RefPlugin(), two.Sink(), {{"only_in_two", "2"}});
  ASSERT_TRUE(a->plugins()[0].loaded) << a->plugins()[0].skip_reason;
  ASSERT_TRUE(b->plugins()[0].loaded) << b->plugins()[0].skip_reason;
  EXPECT_TRUE(a->plugins()[0].own_instance);
  EXPECT_TRUE(b->plugins()[0].own_instance);
  EXPECT_EQ(a->plugins()[0].api_minor, KESTREL_PLUGIN_API_MINOR);
  // Each instance saw its own options, and its log lines reached only its own registry's sink.
  EXPECT_TRUE(one.Has("ignoring option 'only_in_one'"));
  EXPECT_TRUE(two.Has("ignoring option 'only_in_two'"));
  EXPECT_FALSE(one.Has("only_in_two"));
  EXPECT_FALSE(two.Has("only_in_one"));

  // The devices are distinct and work side by side; a device's logs go to its instance's sink.
  auto da = a->FindDevice("ref");
  auto db = b->FindDevice("ref");
  ASSERT_TRUE(da.ok() && db.ok());
  EXPECT_NE(*da, *db);
  EXPECT_EQ(RunAdd(*da, {1, 2}, {3, 4}), (std::vector<float>{4, 6}));
  EXPECT_EQ(RunAdd(*db, {5, 6}, {7, 8}), (std::vector<float>{12, 14}));
  kestrel_op_desc_t unsupported{};
  unsupported.struct_size = sizeof unsupported;
  unsupported.kind = KESTREL_OP_ADD;
  unsupported.op_version = 7;  // valid but unsupported: logged at DEBUG by the device
  auto q = (*db)->Query(unsupported);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->level, KESTREL_OP_UNSUPPORTED);
  EXPECT_TRUE(two.Has("op_version=7"));
  EXPECT_FALSE(one.Has("op_version=7"));

  // Destroying one runtime's registry leaves the other's instance working.
  a.reset();
  EXPECT_EQ(RunAdd(*db, {1}, {1}), (std::vector<float>{2}));
}

TEST(PluginVersionsTest, TwoRegistriesGetTheirOwnCpuSettings) {
  const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
  const std::string cpu = std::string(dir != nullptr ? dir : ".") + "/libkestrel_plugin_cpu.so";
  auto a = PluginRegistry::Create(cpu, nullptr, {{"threads", "2"}});
  auto b = PluginRegistry::Create(cpu, nullptr, {{"threads", "3"}});
  auto da = a->FindDevice("cpu");
  auto db = b->FindDevice("cpu");
  ASSERT_TRUE(da.ok() && db.ok()) << a->plugins()[0].skip_reason;
  EXPECT_TRUE(a->plugins()[0].own_instance);
  // Each instance has its own settings (and thread pool): no "options of the first load win".
  EXPECT_NE(std::string((*da)->caps().description).find(", 2 threads"), std::string::npos)
      << (*da)->caps().description;
  EXPECT_NE(std::string((*db)->caps().description).find(", 3 threads"), std::string::npos)
      << (*db)->caps().description;
  EXPECT_EQ(RunAdd(*da, {1, 2}, {3, 4}), (std::vector<float>{4, 6}));
  EXPECT_EQ(RunAdd(*db, {1, 2}, {3, 4}), (std::vector<float>{4, 6}));
}

}  // namespace
}  // namespace kestrel::hal
