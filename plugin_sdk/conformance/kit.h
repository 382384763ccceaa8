// kestrel-conformance: the vendor kit that runs a plugin through the tiers of the plugin contract
// and writes the report a vendor attaches to a certification request.
//
//   abi     the raw table, in a child process per check (a crash fails the check, not the run):
//           entry symbol, version negotiation both ways, struct_size handling, NULL and
//           all-or-none optional slots, re-initialisation, two instances (ABI 1.4)
//   ops     every op kind the device claims (op_query) against the reference plugin: each weight
//           dtype, edge shapes, in place, fresh random inputs (seed in the report), poisoned
//           outputs, the tolerance of the device's declared accuracy tier
//   llm     paged attention over scattered block tables, varlen batches, GQA/MQA, tree masks;
//           KV write / block copy in copy-on-write and swap patterns; a speculative
//           accept/rollback sequence; MoE routing ties; stream/event ordering
//   model   stories260K and tiny-moe end to end on the device (ref as fallback): golden ids
//           (REFERENCE tier) or logit error and greedy agreement against ref (INT8 tier); ops
//           actually ran on the device (ops counted per device)
//   stress  allocation until RESOURCE_EXHAUSTED and recovery, concurrent streams, 10k small ops
//
// The reference plugin (the oracle) is libkestrel_plugin_ref.so from $KESTREL_PLUGIN_DIR, else the
// installed plugin folder; the models from $KESTREL_MODELS_DIR (default ../shared/models).
#ifndef KESTREL_PLUGIN_SDK_CONFORMANCE_KIT_H_
#define KESTREL_PLUGIN_SDK_CONFORMANCE_KIT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hal/src/device.h"
#include "hal/src/plugin_registry.h"
#include "plugin_sdk/conformance/op_case.h"
#include "plugin_sdk/conformance/report.h"

namespace kestrel::conformance {

inline constexpr const char* kAllTiers[] = {"abi", "ops", "llm", "model", "stress"};

struct KitOptions {
  std::string plugin_path;             // --plugin
  std::string device;                  // --device ("" = the plugin's first device)
  std::vector<std::string> tiers;      // --tiers (default: all)
  std::string expect_fail_path;        // --expect-fail
  std::string report_path;             // --report
  std::string markdown_path;           // --markdown
  std::string ref_path;                // the oracle plugin
  std::string models_dir;              // stories260K.gguf, tiny-moe-f32.gguf and goldens
};

// The plugin under test loaded through the HAL beside the reference plugin.
struct Target {
  std::unique_ptr<hal::PluginRegistry> registry;
  hal::Device* dev = nullptr;  // the device under test; null when it could not be loaded
  hal::Device* ref = nullptr;
  std::string plugin_name;
  std::string why_not;  // why there is no device
  uint32_t tier = 0;    // the device's declared accuracy tier
};

// One op case as one check "<tier>/<id>": skipped when the device does not claim it (op_query
// UNSUPPORTED), else run on the reference device and on the device under test (poisoned outputs)
// and compared, F32 outputs within the device's tier for `kind`/`weight_dtype` (accuracy.h),
// moved values bit for bit.
void CheckCase(Target& target, Report& report, const std::string& tier, const std::string& id,
               OpCase c, uint32_t weight_dtype);

// A MOE case: x [n, d], router [e, d] (all rows equal with `tied_router`: the lower expert ids
// must win), SwiGLU experts of `dtype` (prepared), Mixtral routing, top `k`, the stats output.
OpCase MoeCase(Rng& rng, uint32_t dtype, int64_t n, int64_t d, int64_t f, int64_t e, int64_t k,
               bool tied_router);

// The INT8 tier's model measure: `forced` decoded after `prompt` (teacher forcing) with the model
// on `dev` (fallback `ref`) and on `ref` alone; per position, the relative L2 error of dev's
// logits against ref's and whether their argmax agrees.
struct LogitAgreement {
  size_t positions = 0;
  double top1_agreement = 0;  // fraction of positions
  double mean_error = 0, max_error = 0;
  std::map<std::string, uint64_t> ops_per_device;  // of the run on `dev`
};
absl::StatusOr<LogitAgreement> CompareTeacherForced(const std::string& model_path,
                                                    hal::Device* dev, hal::Device* ref,
                                                    const std::vector<int32_t>& prompt,
                                                    const std::vector<int32_t>& forced);

// Runs the selected tiers; the report holds every check. Never fails because of the plugin.
Report RunKit(const KitOptions& options, Expectations expectations);

// The tiers (one file each).
void RunAbiTier(const KitOptions& options, Report& report);
void RunOpsTier(Target& target, Report& report);
void RunLlmTier(Target& target, Report& report);
void RunModelTier(const KitOptions& options, Target& target, Report& report);
void RunStressTier(Target& target, Report& report);

}  // namespace kestrel::conformance

#endif  // KESTREL_PLUGIN_SDK_CONFORMANCE_KIT_H_
