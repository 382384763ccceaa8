// kestrel-conformance: runs the vendor conformance kit on one plugin and writes its report.
//
//   kestrel-conformance --plugin PATH [--device NAME] [--tiers abi,ops,llm,model,stress]
//                       [--expect-fail FILE] --report OUT.json [--markdown OUT.md]
//
// Exit status: 0 when every check is as expected (passed, or failed and listed in --expect-fail;
// skipped checks are neither), 1 when not (an unexpected failure or an unexpected pass), 2 for a
// usage error. Environment: KESTREL_PLUGIN_DIR (where libkestrel_plugin_ref.so, the oracle, is;
// default: the installed plugin folder), KESTREL_MODELS_DIR (stories260K and tiny-moe with their
// golden files; default ../shared/models), KESTREL_TEST_SEED (reproduce a run's random inputs).
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "hal/src/plugin_registry.h"
#include "plugin_sdk/conformance/kit.h"

namespace {

constexpr const char* kUsage =
    "usage: kestrel-conformance --plugin PATH [--device NAME] [--tiers abi,ops,llm,model,stress]\n"
    "                           [--expect-fail FILE] --report OUT.json [--markdown OUT.md]\n";

int Usage(const std::string& error) {
  std::cerr << "kestrel-conformance: " << error << "\n" << kUsage;
  return 2;
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

// The absolute path (so the plugin under test and the oracle compare equal when they are one file).
std::string Canonical(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

// The oracle: $KESTREL_PLUGIN_DIR, else the plugin folder of this installation.
std::string RefPlugin() {
  if (const char* dir = std::getenv("KESTREL_PLUGIN_DIR"); dir != nullptr && *dir) {
    return std::string(dir) + "/libkestrel_plugin_ref.so";
  }
  return kestrel::hal::DefaultPluginDirectory() + "/libkestrel_plugin_ref.so";
}

}  // namespace

int main(int argc, char** argv) {
  using kestrel::conformance::KitOptions;
  KitOptions o;
  for (const char* t : kestrel::conformance::kAllTiers) o.tiers.push_back(t);
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) return Usage("missing value after " + flag);
    const std::string value = argv[++i];
    if (flag == "--plugin") {
      o.plugin_path = value;
    } else if (flag == "--device") {
      o.device = value;
    } else if (flag == "--tiers") {
      o.tiers.clear();
      for (absl::string_view t : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        bool known = false;
        for (const char* k : kestrel::conformance::kAllTiers) known = known || t == k;
        if (!known) {
          return Usage("--tiers: unknown tier '" + std::string(t) +
                       "' (known: abi, ops, llm, model, stress)");
        }
        o.tiers.emplace_back(t);
      }
      if (o.tiers.empty()) return Usage("--tiers: no tier given");
    } else if (flag == "--expect-fail") {
      o.expect_fail_path = value;
    } else if (flag == "--report") {
      o.report_path = value;
    } else if (flag == "--markdown") {
      o.markdown_path = value;
    } else {
      return Usage("unknown flag " + flag);
    }
  }
  if (o.plugin_path.empty()) return Usage("--plugin is required");
  if (o.report_path.empty()) return Usage("--report is required");
  if (!FileExists(o.plugin_path)) return Usage("--plugin: no file '" + o.plugin_path + "'");
  o.plugin_path = Canonical(o.plugin_path);
  o.ref_path = Canonical(RefPlugin());
  if (!FileExists(o.ref_path)) {
    return Usage("the reference plugin (the oracle) is not at '" + o.ref_path +
                 "': set KESTREL_PLUGIN_DIR to its folder");
  }
  const char* models = std::getenv("KESTREL_MODELS_DIR");
  o.models_dir = models != nullptr && *models ? models : "../shared/models";

  kestrel::conformance::Expectations expectations;
  if (!o.expect_fail_path.empty()) {
    auto e = kestrel::conformance::Expectations::Load(o.expect_fail_path);
    if (!e.ok()) return Usage(std::string(e.status().message()));
    expectations = std::move(*e);
  }
  kestrel::conformance::Report report = kestrel::conformance::RunKit(o, std::move(expectations));
  const nlohmann::json j = report.ToJson();
  {
    std::ofstream f(o.report_path);
    f << j.dump(2) << "\n";
    if (!f) return Usage("--report: cannot write " + o.report_path);
  }
  if (!o.markdown_path.empty()) {
    std::ofstream md(o.markdown_path);
    md << report.ToMarkdown();
    if (!md) return Usage("--markdown: cannot write " + o.markdown_path);
  }
  const auto& s = j["summary"];
  std::cout << "kestrel-conformance: " << o.plugin_path << ": " << s["passed"] << " passed, "
            << s["failed"] << " failed, " << s["expected_failures"] << " expected failures, "
            << s["unexpected_passes"] << " unexpected passes, " << s["skipped"] << " skipped -> "
            << (report.AsExpected() ? "PASS" : "FAIL") << " (report: " << o.report_path << ")\n";
  for (const auto& u : s["unused_expectations"]) {
    std::cout << "  UNUSED EXPECTATION " << u.get<std::string>() << ": matches no check\n";
  }
  for (const auto& c : j["checks"]) {
    if (!c["as_expected"].get<bool>()) {
      std::cout << "  " << (c.contains("unexpected_pass") ? "UNEXPECTED PASS " : "FAIL ")
                << c["id"].get<std::string>() << ": " << c["message"].get<std::string>() << "\n";
    }
  }
  return report.AsExpected() ? 0 : 1;
}
