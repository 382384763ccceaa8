// Plugins load when they are needed, not when the runtime is created: a program that asks for one
// device maps that plugin (and ref, the fallback) only; listing devices loads every plugin. What
// is loaded is read from /proc/self/maps, so this file holds one test (one process: a plugin
// library, once loaded, stays mapped for the life of the process).
#include <fstream>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

// Names of the Kestrel plugins mapped into this process ("cpu", "ref", ...).
std::set<std::string> MappedPlugins() {
  std::set<std::string> names;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const std::string prefix = "libkestrel_plugin_";
  while (std::getline(maps, line)) {
    const size_t at = line.rfind(prefix);
    if (at == std::string::npos || line.size() < 3 || line.compare(line.size() - 3, 3, ".so") != 0) {
      continue;
    }
    names.insert(line.substr(at + prefix.size(), line.size() - 3 - at - prefix.size()));
  }
  return names;
}

std::string Join(const std::set<std::string>& s) {
  std::string out;
  for (const std::string& n : s) out += (out.empty() ? "" : ",") + n;
  return out;
}

TEST(LazyPluginsTest, OnlyTheAskedDeviceAndRefLoadUntilDevicesAreListed) {
  const std::string path = ModelPath("stories260K.gguf");
  KESTREL_REQUIRE_MODEL_FILE(path);
  ASSERT_TRUE(MappedPlugins().empty()) << Join(MappedPlugins());

  kestrel_runtime_t* rt = nullptr;
  KESTREL_ASSERT_OK(kestrel_runtime_create(nullptr, &rt));
  RuntimePtr runtime(rt);
  EXPECT_TRUE(MappedPlugins().empty()) << "runtime_create loaded " << Join(MappedPlugins());

  kestrel_model_options_t mo;
  kestrel_model_options_init(&mo);
  mo.device = "ref";
  kestrel_model_t* m = nullptr;
  KESTREL_ASSERT_OK(kestrel_model_load(rt, path.data(), path.size(), &mo, &m));
  ModelPtr model(m);
  kestrel_session_t* s = nullptr;
  KESTREL_ASSERT_OK(kestrel_session_create(m, nullptr, &s));
  SessionPtr session(s);
  KESTREL_ASSERT_OK(kestrel_session_generate(s, "Once", 4, nullptr, nullptr));
  EXPECT_EQ(MappedPlugins(), std::set<std::string>{"ref"}) << Join(MappedPlugins());

  // Listing loads every plugin file on the path (the build's plugin folder).
  const size_t n_plugins = kestrel_runtime_plugin_count(rt);
  EXPECT_GE(n_plugins, 2u);
  EXPECT_GE(kestrel_runtime_device_count(rt), 2u);
  const std::set<std::string> mapped = MappedPlugins();
  EXPECT_GE(mapped.size(), 2u) << Join(mapped);
  for (size_t i = 0; i < n_plugins; ++i) {
    kestrel_plugin_info_t info;
    info.struct_size = sizeof(info);
    KESTREL_ASSERT_OK(kestrel_runtime_plugin_info(rt, i, &info));
    if (info.loaded) {
      EXPECT_EQ(mapped.count(info.name), 1u) << info.name << " loaded but not mapped";
    } else {
      EXPECT_NE(info.skip_reason[0], '\0') << info.path << " skipped without a reason";
    }
  }
}

}  // namespace
}  // namespace kestrel::testing
