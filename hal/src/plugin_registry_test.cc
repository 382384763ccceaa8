// Loader tests: each broken plugin is skipped with a reason naming what is wrong, the host never
// crashes, and the reference plugin loads with a device.
#include "hal/src/plugin_registry.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kestrel::hal {
namespace {

std::string TestPlugin(const std::string& name) {
  return std::string(KESTREL_TEST_PLUGIN_DIR) + "/libkestrel_plugin_broken_" + name + ".so";
}

const PluginRecord& Only(const PluginRegistry& reg) {
  EXPECT_EQ(reg.plugins().size(), 1u);
  return reg.plugins().front();
}

TEST(PluginRegistryTest, OtherMajorVersionIsSkippedNamingBothVersions) {
  auto reg = PluginRegistry::Create(TestPlugin("bad_major"), nullptr);
  const PluginRecord& r = Only(*reg);
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.skip_reason.find("plugin ABI 2.7"), std::string::npos) << r.skip_reason;
  const std::string host_version = std::to_string(KESTREL_PLUGIN_API_MAJOR) + "." +
                                   std::to_string(KESTREL_PLUGIN_API_MINOR);
  EXPECT_NE(r.skip_reason.find("host implements " + host_version), std::string::npos) << r.skip_reason;
  EXPECT_TRUE(reg->devices().empty());
}

TEST(PluginRegistryTest, NullRequiredSlotIsSkipped) {
  auto reg = PluginRegistry::Create(TestPlugin("null_slot"), nullptr);
  const PluginRecord& r = Only(*reg);
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.skip_reason.find("required slot 'op_execute' is NULL"), std::string::npos) << r.skip_reason;
}

TEST(PluginRegistryTest, FailingInitIsSkippedWithThePluginsMessage) {
  auto reg = PluginRegistry::Create(TestPlugin("failing_init"), nullptr);
  const PluginRecord& r = Only(*reg);
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.skip_reason.find("init failed"), std::string::npos) << r.skip_reason;
  EXPECT_NE(r.skip_reason.find("no license"), std::string::npos) << r.skip_reason;
}

TEST(PluginRegistryTest, ZeroDevicesIsListedWithTheReason) {
  auto reg = PluginRegistry::Create(TestPlugin("zero_devices"), nullptr);
  const PluginRecord& r = Only(*reg);
  EXPECT_FALSE(r.loaded);
  EXPECT_EQ(r.name, "broken_zero_devices");
  EXPECT_NE(r.skip_reason.find("no accelerator present"), std::string::npos) << r.skip_reason;
}

TEST(PluginRegistryTest, MissingEntrySymbolIsSkipped) {
  auto reg = PluginRegistry::Create(TestPlugin("no_symbol"), nullptr);
  const PluginRecord& r = Only(*reg);
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.skip_reason.find("does not export kestrel_plugin_get_api"), std::string::npos)
      << r.skip_reason;
}

TEST(PluginRegistryTest, GetApiErrorIsSkipped) {
  auto reg = PluginRegistry::Create(TestPlugin("get_api_error"), nullptr);
  EXPECT_NE(Only(*reg).skip_reason.find("simulated get_api failure"), std::string::npos);
}

TEST(PluginRegistryTest, DeviceOpenFailureIsSkipped) {
  // failing caps: the null_slot plugin never gets that far, but a missing file does.
  auto reg = PluginRegistry::Create("/nonexistent/libkestrel_plugin_x.so", nullptr);
  const PluginRecord& r = Only(*reg);
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.skip_reason.find("/nonexistent/libkestrel_plugin_x.so"), std::string::npos);
}

TEST(PluginRegistryTest, AllBrokenPluginsTogetherAndLogging) {
  std::vector<std::string> lines;
  auto reg = PluginRegistry::Create(KESTREL_TEST_PLUGIN_DIR,
                                    [&](kestrel_plugin_log_level_t, const std::string& m) {
                                      lines.push_back(m);
                                    });
  EXPECT_EQ(reg->plugins().size(), 6u);
  for (const PluginRecord& r : reg->plugins()) EXPECT_FALSE(r.loaded) << r.path;
  EXPECT_GE(lines.size(), 5u);
  auto dev = reg->DefaultDevice();
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kNotFound);
}

TEST(PluginRegistryTest, ReferencePluginLoadsAndRunsBuffers) {
  const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
  ASSERT_NE(dir, nullptr) << "KESTREL_PLUGIN_DIR must point at the built plugins";
  auto reg = PluginRegistry::Create(std::string(dir) + "/libkestrel_plugin_ref.so", nullptr);
  ASSERT_EQ(reg->plugins().size(), 1u);
  ASSERT_TRUE(reg->plugins()[0].loaded) << reg->plugins()[0].skip_reason;
  auto dev = reg->FindDevice("ref");
  ASSERT_TRUE(dev.ok()) << dev.status();
  auto missing = reg->FindDevice("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("available: ref"), std::string::npos);

  auto a = (*dev)->Allocate(64);
  auto b = (*dev)->Allocate(64);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<uint8_t> in(64), out(64, 0);
  for (int i = 0; i < 64; ++i) in[i] = static_cast<uint8_t>(i * 3);
  ASSERT_TRUE((*dev)->Write(*a, 0, in.data(), 64).ok());
  ASSERT_TRUE((*dev)->Copy(*a, 0, *b, 0, 64).ok());
  ASSERT_TRUE((*dev)->Read(*b, 0, out.data(), 64).ok());
  EXPECT_EQ(in, out);
  auto bad = (*dev)->Read(*b, 60, out.data(), 8);
  EXPECT_EQ(bad.code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace kestrel::hal
