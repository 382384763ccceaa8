#include "plugin_sdk/conformance/kit.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kestrel/plugin_sdk/accuracy.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::conformance {
namespace {

bool Selected(const KitOptions& o, const char* tier) {
  return std::find(o.tiers.begin(), o.tiers.end(), tier) != o.tiers.end();
}

const char* KindName(uint32_t kind) {
  switch (kind) {
    case KESTREL_DEVICE_KIND_CPU: return "cpu";
    case KESTREL_DEVICE_KIND_GPU: return "gpu";
    case KESTREL_DEVICE_KIND_NPU: return "npu";
    case KESTREL_DEVICE_KIND_ACCELERATOR: return "accelerator";
    default: return "unknown";
  }
}

// Loads the reference plugin and the plugin under test in one registry and picks the device.
Target LoadTarget(const KitOptions& o) {
  Target t;
  const std::string path = o.ref_path == o.plugin_path ? o.ref_path : o.ref_path + ":" + o.plugin_path;
  t.registry = hal::PluginRegistry::Create(path, nullptr);
  t.ref = t.registry->ReferenceDevice();
  const hal::PluginRecord* rec = nullptr;
  for (const hal::PluginRecord& p : t.registry->plugins()) {
    if (p.path == o.plugin_path) rec = &p;
  }
  if (rec == nullptr || !rec->loaded) {
    t.why_not = rec == nullptr ? "not loaded" : rec->skip_reason;
    return t;
  }
  t.plugin_name = rec->name;
  for (const auto& d : t.registry->devices()) {
    if (d->plugin_name() != rec->name) continue;
    if (o.device.empty() || d->name() == o.device) {
      t.dev = d.get();
      break;
    }
  }
  if (t.dev == nullptr) {
    t.why_not = absl::StrCat("plugin '", rec->name, "' has no device named '", o.device, "'");
    return t;
  }
  t.tier = t.dev->caps().accuracy_tier;
  return t;
}

}  // namespace

void CheckCase(Target& target, Report& report, const std::string& tier, const std::string& id,
               OpCase c, uint32_t weight_dtype) {
  const std::string full = absl::StrCat(tier, "/", id);
  std::vector<kestrel_tensor_arg_t> in, out;
  for (const Tensor& t : c.in) in.push_back(A(t.desc));
  for (const Tensor& t : c.out) out.push_back(A(t.desc));
  kestrel_op_desc_t query = MakeOp(c.kind, in, out, c.params);
  query.op_version = c.op_version;
  auto support = target.dev->Query(query);
  if (!support.ok()) {
    report.Fail(tier, id, absl::StrCat("op_query failed: ", support.status().message()));
    return;
  }
  if (support->level == KESTREL_OP_UNSUPPORTED) {
    report.Skip(tier, id, "not claimed by the device (op_query: UNSUPPORTED)");
    return;
  }
  c.exact = c.exact || plugin_sdk::IsExactKind(c.kind);
  c.tol = plugin_sdk::OpTolerance(target.tier, c.kind, weight_dtype);
  std::vector<std::vector<uint8_t>> want, got;
  absl::Status s = RunReference(target.ref, c, &want);
  if (!s.ok()) {
    report.Fail(tier, id, absl::StrCat("the reference plugin failed (a kit bug): ", s.message()));
    return;
  }
  s = RunOn(target.dev, c, &got);
  if (!s.ok()) {
    report.Fail(tier, id, absl::StrCat("claimed but failed: ", s.message()));
    return;
  }
  const Comparison cmp = Compare(c, want, got);
  CheckResult r{full, tier, cmp.ok ? Outcome::kPass : Outcome::kFail, cmp.message};
  if (!c.exact) {
    r.error = cmp.max_error;
    r.tolerance = c.tol;
  } else if (cmp.ok) {
    r.message = "bit for bit";
  }
  report.Add(std::move(r));
}

Report RunKit(const KitOptions& options, Expectations expectations) {
  Report report(std::move(expectations));
  nlohmann::json& meta = report.meta();
  meta["tool"] = "kestrel-conformance";
  meta["tool_version"] = "0.1.0";
  meta["host_plugin_abi"] = absl::StrCat(KESTREL_PLUGIN_API_MAJOR, ".", KESTREL_PLUGIN_API_MINOR);
  meta["tiers"] = options.tiers;
  meta["seed"] = plugin_sdk::testing_util::TestSeed();
  meta["reproduce"] = absl::StrCat("KESTREL_TEST_SEED=", plugin_sdk::testing_util::TestSeed());
  meta["reference_plugin"] = options.ref_path;
  if (!options.expect_fail_path.empty()) meta["expect_fail_file"] = options.expect_fail_path;

  if (Selected(options, "abi")) RunAbiTier(options, report);
  const bool needs_device = Selected(options, "ops") || Selected(options, "llm") ||
                            Selected(options, "model") || Selected(options, "stress");
  if (!needs_device) return report;

  Target target = LoadTarget(options);
  nlohmann::json plugin = {{"path", options.plugin_path}};
  for (const hal::PluginRecord& p : target.registry->plugins()) {
    if (p.path != options.plugin_path) continue;
    plugin["name"] = p.name;
    plugin["version"] = p.version;
    plugin["abi"] = absl::StrCat(p.api_major, ".", p.api_minor);
    plugin["own_instance"] = p.own_instance;
  }
  meta["plugin"] = plugin;
  if (target.ref == nullptr || target.dev == nullptr) {
    const std::string why = target.ref == nullptr
                                ? absl::StrCat("the reference plugin did not load from '",
                                               options.ref_path, "'")
                                : absl::StrCat("the plugin has no usable device: ", target.why_not);
    report.Fail("load", "device", why);
    return report;
  }
  const kestrel_device_caps_t& caps = target.dev->caps();
  meta["device"] = {{"name", caps.name},
                    {"description", caps.description},
                    {"kind", KindName(caps.kind)},
                    {"memory_bytes", caps.memory_bytes},
                    {"host_visible", caps.host_visible != 0},
                    {"async", caps.async != 0},
                    {"accuracy_tier", plugin_sdk::AccuracyTierName(caps.accuracy_tier)}};
  if (Selected(options, "ops")) RunOpsTier(target, report);
  if (Selected(options, "llm")) RunLlmTier(target, report);
  if (Selected(options, "model")) RunModelTier(options, target, report);
  if (Selected(options, "stress")) RunStressTier(target, report);
  return report;
}

}  // namespace kestrel::conformance
