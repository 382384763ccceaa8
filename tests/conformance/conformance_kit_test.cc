// The conformance kit's own tests. `kestrel-conformance` is run as a vendor runs it (the
// executable, its flags, its JSON report) on every in-tree plugin, which must pass with nothing
// expected to fail, and on test plugins broken in known ways, whose reports must list exactly the
// failures they were built with: the failed check ids equal the expected list, the exit status is
// 0 with that list given as --expect-fail and 1 without it. A plugin with one op off by more
// than its tier (off_add: ADD x 1.001) fails that op's checks and nothing else. Also: the report
// format, unexpected passes, stale expectations and usage errors. The expected-failure list
// parser is unit-tested directly.
//
// KESTREL_CONFORMANCE_BIN, KESTREL_PLUGIN_DIR (built plugins), KESTREL_TEST_PLUGIN_DIR (broken
// ones), KESTREL_BUILD_DIR are set by tests/conformance/CMakeLists.txt.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugin_sdk/conformance/report.h"
#include "tests/temp_dir.h"

namespace kestrel::conformance {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

struct KitRun {
  int exit_code = -1;
  std::string output;
  nlohmann::json report;
};

// Inside the process's temporary folder (tests/temp_dir.h), removed at exit.
std::string TempPath(const std::string& name) { return kestrel::testing::TestTempDir().File("kit_" + name); }

// Runs kestrel-conformance with `args` (a shell-quoted argument string) and reads its report.
KitRun RunKit(const std::string& plugin, const std::string& tiers, const std::vector<std::string>& expect,
           const std::string& extra = "") {
  const std::string report = TempPath("report.json"), md = TempPath("report.md");
  std::string cmd = "'" + Env("KESTREL_CONFORMANCE_BIN") + "' --plugin '" + plugin + "' --report '" +
                    report + "' --markdown '" + md + "'";
  if (!tiers.empty()) cmd += " --tiers " + tiers;
  if (!expect.empty()) {
    const std::string path = TempPath("expect.txt");
    std::ofstream f(path);
    f << "# expected failures\n";
    for (const std::string& e : expect) f << e << "\n";
    cmd += " --expect-fail '" + path + "'";
  }
  cmd += " " + extra + " 2>&1";
  KitRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream f(report);
  if (f) r.report = nlohmann::json::parse(f, nullptr, false);
  std::remove(report.c_str());
  std::ifstream m(md);
  if (r.exit_code != 2) {
    EXPECT_TRUE(m.good()) << "no Markdown report";
  }
  std::remove(md.c_str());
  return r;
}

std::set<std::string> FailedIds(const nlohmann::json& report) {
  std::set<std::string> ids;
  for (const auto& c : report["checks"]) {
    if (c["result"] == "fail") ids.insert(c["id"].get<std::string>());
  }
  return ids;
}

std::string Plugin(const std::string& name) {
  return Env("KESTREL_PLUGIN_DIR") + "/libkestrel_plugin_" + name + ".so";
}
std::string Broken(const std::string& name) {
  return Env("KESTREL_TEST_PLUGIN_DIR") + "/libkestrel_plugin_broken_" + name + ".so";
}
std::string TestPlugin(const std::string& name) {
  return Env("KESTREL_BUILD_DIR") + "/tests/plugins/libkestrel_plugin_" + name + ".so";
}

struct KitCase {
  std::string name;
  std::string plugin;  // path
  std::string tiers;   // "" = all
  std::vector<std::string> expected_failures;
};

// The report holds exactly `want` as failures, every check as expected with the list, and the
// run fails without the list when the list is not empty.
void ExpectExactly(const KitCase& k) {
  SCOPED_TRACE(k.name + " (" + k.plugin + ")");
  std::ifstream exists(k.plugin);
  if (!exists) GTEST_SKIP() << "not built: " << k.plugin;
  KitRun with = RunKit(k.plugin, k.tiers, k.expected_failures);
  ASSERT_TRUE(with.report.is_object()) << with.output;
  const std::set<std::string> want(k.expected_failures.begin(), k.expected_failures.end());
  EXPECT_EQ(FailedIds(with.report), want) << with.output;
  EXPECT_EQ(with.exit_code, 0) << with.output;
  EXPECT_TRUE(with.report["summary"]["as_expected"].get<bool>());
  EXPECT_TRUE(with.report["summary"]["unused_expectations"].empty());
  EXPECT_TRUE(with.report.contains("seed"));
  if (!want.empty()) {
    KitRun without = RunKit(k.plugin, k.tiers, {});
    EXPECT_EQ(without.exit_code, 1) << without.output;
  }
}

class KitOnPluginTest : public ::testing::TestWithParam<KitCase> {};

TEST_P(KitOnPluginTest, ReportListsExactlyTheExpectedFailures) { ExpectExactly(GetParam()); }

// The failures a plugin whose device cannot be used at all shows in the abi tier (every check
// that needs init, a device or a table) and at loading.
std::vector<std::string> NoDeviceFailures() {
  return {"abi/struct_size/device_caps", "abi/optional_slots", "abi/null_arguments",
          "abi/unknown_op_kind", "abi/reinitialisation", "load/device"};
}

std::vector<std::string> Plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<KitCase> Cases() {
  std::vector<std::string> no_table = {
      "abi/get_api", "abi/major_version", "abi/negotiation/host_minor_0",
      "abi/negotiation/host_minor_1", "abi/negotiation/host_minor_99", "abi/struct_size/device_caps",
      "abi/required_slots", "abi/optional_slots", "abi/null_arguments", "abi/unknown_op_kind",
      "abi/reinitialisation", "abi/instances", "load/device"};
  return {
      {"ref", Plugin("ref"), "", {}},
      {"cpu", Plugin("cpu"), "", {}},
      {"opencl", Plugin("opencl"), "", {}},
      {"npu_stub", Plugin("npu_stub"), "", {}},
      {"partial", TestPlugin("partial"), "", {}},
      {"old11", TestPlugin("old11"), "", {}},
      // Instance slots in a table that says minor 3: a host never uses them.
      {"minor3", TestPlugin("minor3"), "abi", {"abi/optional_slots"}},
      {"off_add", TestPlugin("off_add"), "abi,ops,llm",
       {"ops/ADD/3x1", "ops/ADD/3x7", "ops/ADD/3x1031", "ops/ADD/5x33/in_place"}},
      {"broken_bad_major", Broken("bad_major"), "",
       Plus({"abi/major_version"}, NoDeviceFailures())},
      {"broken_null_slot", Broken("null_slot"), "", {"abi/required_slots", "load/device"}},
      {"broken_failing_init", Broken("failing_init"), "", NoDeviceFailures()},
      {"broken_zero_devices", Broken("zero_devices"), "", NoDeviceFailures()},
      {"broken_get_api_error", Broken("get_api_error"), "",
       Plus(no_table, {"abi/negotiation/other_major_refused"})},
      {"broken_no_symbol", Broken("no_symbol"), "",
       Plus(no_table, {"abi/entry_symbol", "abi/negotiation/other_major_refused",
                       "abi/struct_size/host_table_too_small"})},
  };
}

INSTANTIATE_TEST_SUITE_P(Plugins, KitOnPluginTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<KitCase>& i) { return i.param.name; });

TEST(KitTest, OneOpOffFailsThatOpAndOnlyThatOp) {
  KitRun r = RunKit(TestPlugin("off_add"), "ops", {});
  ASSERT_TRUE(r.report.is_object()) << r.output;
  EXPECT_EQ(r.exit_code, 1);
  for (const auto& c : r.report["checks"]) {
    const std::string id = c["id"];
    const bool is_add = id.rfind("ops/ADD/", 0) == 0;
    EXPECT_EQ(c["result"] == "fail", is_add) << id << ": " << c["message"];
    if (is_add) {
      EXPECT_NEAR(c["error"].get<double>(), 1e-3, 1e-4) << id;
      EXPECT_EQ(c["tolerance"].get<double>(), 1e-5) << id;
    }
  }
}

TEST(KitTest, UnexpectedPassAndStaleExpectationFailTheRun) {
  KitRun r = RunKit(TestPlugin("old11"), "abi", {"abi/get_api", "abi/no_such_check"});
  ASSERT_TRUE(r.report.is_object()) << r.output;
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.report["summary"]["unexpected_passes"], 1);
  EXPECT_EQ(r.report["summary"]["unused_expectations"], nlohmann::json::array({"abi/no_such_check"}));
  EXPECT_NE(r.output.find("UNEXPECTED PASS abi/get_api"), std::string::npos) << r.output;
  bool flagged = false;
  for (const auto& c : r.report["checks"]) {
    if (c["id"] == "abi/get_api") flagged = c.value("unexpected_pass", false);
  }
  EXPECT_TRUE(flagged);
}

TEST(KitTest, ReportNamesPluginDeviceTierAndSeed) {
  KitRun r = RunKit(Plugin("npu_stub"), "ops", {});
  ASSERT_TRUE(r.report.is_object()) << r.output;
  EXPECT_EQ(r.report["plugin"]["name"], "npu_stub");
  EXPECT_EQ(r.report["plugin"]["abi"], "1.4");
  EXPECT_EQ(r.report["device"]["name"], "npu");
  EXPECT_EQ(r.report["device"]["accuracy_tier"], "INT8");
  EXPECT_TRUE(r.report["seed"].is_number());
  EXPECT_EQ(r.report["tiers"], nlohmann::json::array({"ops"}));
}

TEST(KitTest, UsageErrorsExitTwoAndNameTheProblem) {
  struct Bad {
    std::string args, message;
  };
  const std::string bin = "'" + Env("KESTREL_CONFORMANCE_BIN") + "'";
  // Usage errors write no report; the path is the test's own in case one did.
  const std::string report = "--report '" + TempPath("usage.json") + "'";
  for (const Bad& b : {Bad{report, "--plugin is required"},
                       Bad{"--plugin /nonexistent.so " + report, "no file '/nonexistent.so'"},
                       Bad{"--plugin '" + Plugin("ref") + "' " + report + " --tiers abi,fast",
                           "unknown tier 'fast'"},
                       Bad{"--plugin '" + Plugin("ref") + "' " + report + " --expect-fail /nonexistent",
                           "cannot read '/nonexistent'"},
                       Bad{"--plugin '" + Plugin("ref") + "' " + report + " --speed 9", "unknown flag --speed"}}) {
    FILE* p = popen((bin + " " + b.args + " 2>&1").c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[1024];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    EXPECT_EQ(WEXITSTATUS(status), 2) << b.args;
    EXPECT_NE(out.find(b.message), std::string::npos) << out;
  }
}

TEST(ExpectationsTest, ParsesIdsPrefixesAndComments) {
  auto e = Expectations::Parse("# header\nops/ADD/3x1\n  llm/* # all of llm\n\n", "list");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->Matches("ops/ADD/3x1"));
  EXPECT_FALSE(e->Matches("ops/ADD/3x7"));
  EXPECT_TRUE(e->Matches("llm/moe/routing_ties_lower_id_wins"));
  EXPECT_TRUE(e->Unused().empty());
  auto bad = Expectations::Parse("ops/ADD 3x1\n", "list");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("list:1"), std::string::npos) << bad.status();
  auto star = Expectations::Parse("ops/*/x\n", "list");
  EXPECT_FALSE(star.ok());
}

}  // namespace
}  // namespace kestrel::conformance
