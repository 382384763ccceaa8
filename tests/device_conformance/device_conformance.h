// The device-conformance harness shared by the accelerator plugins' suites (opencl, cuda; the cpu
// suite takes its descriptor helpers): a plugin under test and the reference plugin are dlopen()ed
// by one PluginRegistry, every op runs on both devices with the same fresh random inputs (seed
// printed on failure; KESTREL_TEST_SEED reproduces), every tensor sits inside guard bytes checked
// after the op, inputs must come back unchanged, outputs are poisoned before each run (the
// reference's twice, under two poisons), and results are compared by relative norm error (NaN
// never passes) or bit for bit.
//
// What lives here: host tensors and op cases, running a case through the HAL, the comparison, the
// random KV caches and paged-attention cases, the raw plugin table (RawPlugin, for streams and
// events), and the bodies of the cases every device plugin shares (namespace `cases`). What stays
// in each plugin's test: the fixture with its device selection and skip message ("no OpenCL
// device: ..."), the TEST_F names, and the cases of its own paths.
#ifndef KESTREL_TESTS_DEVICE_CONFORMANCE_DEVICE_CONFORMANCE_H_
#define KESTREL_TESTS_DEVICE_CONFORMANCE_DEVICE_CONFORMANCE_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "hal/src/device.h"
#include "hal/src/plugin_library.h"
#include "hal/src/plugin_registry.h"
#include "kestrel/plugin_api.h"
#include "plugin_sdk/conformance/op_case.h"

namespace kestrel::conformance {


// $KESTREL_PLUGIN_DIR, and the path of libkestrel_plugin_<name>.so in it.
std::string PluginDir();
std::string PluginPath(const std::string& name);

// ---- the two devices, loaded once per process ----------------------------------------------------
struct Devices {
  std::string plugin;  // the plugin under test ("opencl", "cuda")
  std::unique_ptr<hal::PluginRegistry> registry;
  hal::Device* ref = nullptr;
  hal::Device* dev = nullptr;  // the plugin's first device; null when it has none
  std::string why_not;         // why there is no device
};

// The reference plugin and `plugin` from $KESTREL_PLUGIN_DIR, loaded on first use and kept for
// the process (one registry per plugin name).
const Devices& LoadDevices(const std::string& plugin);

// Op cases (Tensor, OpCase, RunOn with guard bytes, RunReference, Attention, ...):
// plugin_sdk/conformance/op_case.h.

// Runs `c` on env.ref (RunReference: twice, under two poisons) and env.dev (RunOn: guards and
// inputs checked) and compares (gtest failures, with `what` and the seed).
void Check(const Devices& env, const OpCase& c, const std::string& what);

// ---- raw plugin table ------------------------------------------------------------------------------
// Loads libkestrel_plugin_<plugin>.so directly with its own init(options) and shutdown, beside the
// registry's user of the same library (the host shares one loaded library per process; the device
// plugins count init/shutdown pairs from direct users like this one), and opens device 0.
class RawPlugin {
 public:
  explicit RawPlugin(const std::string& plugin, const hal::PluginOptions& options = {});
  ~RawPlugin();
  RawPlugin(const RawPlugin&) = delete;
  RawPlugin& operator=(const RawPlugin&) = delete;

  bool ok() const { return dev_ != nullptr; }
  const std::string& error() const { return error_; }
  std::string logs() const;
  const kestrel_plugin_api_t* api() const { return api_; }
  kestrel_plugin_device_t* dev() const { return dev_; }
  // Takes a plugin status; records its message.
  bool Check(kestrel_plugin_status_t* s, const std::string& what);

 private:
  int sink_ = 0;
  bool initialized_ = false;
  const kestrel_plugin_api_t* api_ = nullptr;
  kestrel_plugin_device_t* dev_ = nullptr;
  std::string error_;
  mutable std::mutex logs_mu_;
  std::string logs_;
};


// ---- the cases every device plugin shares -----------------------------------------------------------
// Each is the body of one TEST_F of the plugin's suite (same name there); a plugin calls those its
// device claims and adds its own.
namespace cases {

struct MatmulShape {
  int64_t t, k, n;
};

void AddAndSwiglu(const Devices& env);
void AddInPlace(const Devices& env);
void RmsNorm(const Devices& env);
void Rope(const Devices& env);
// Plugin ABI 1.2 optional inputs: ROPE freq_factors and MATMUL bias, each as a prepared weight
// and as a buffer.
void RopeFreqFactors(const Devices& env);
void MatmulBias(const Devices& env);
void EmbeddingGatherEveryWeightDtype(const Devices& env);
// Every weight dtype and prepared/buffer over `shapes`, plus `plain_only` for the non-block
// formats (F32, F16, BF16); tolerance 2e-6 * sqrt(K) + 1e-6.
void MatmulEveryWeightDtype(const Devices& env, const std::vector<MatmulShape>& shapes,
                            const std::vector<MatmulShape>& plain_only);
// Three picked rows of 7 from a prepared weight; with `ten_rows`, also 10 picked rows from a
// buffer weight (more rows than a decode GEMV takes).
void LogitsPicksRows(const Devices& env, bool ten_rows);
void KvWriteF32AndF16Caches(const Devices& env);
void KvBlockCopyAppliesPairsInOrder(const Devices& env);
void PagedAttentionVarlenPrefillAndDecode(const Devices& env);
void PagedAttentionF16Caches(const Devices& env);
void PagedAttentionSingleDecodeLongContext(const Devices& env);
// Plugin ABI 1.3: GEGLU, EMBEDDING_GATHER's scale (op_version 2), PAGED_ATTENTION's sliding
// window (op_version 2) over windows crossing blocks, with freed blocks before the window.
void GegluAndScaledEmbedding(const Devices& env);
void PagedAttentionSlidingWindow(const Devices& env);
// MATMUL preferred; MOE, unknown, vendor kinds, op_version 2 and F16 activations unsupported;
// tree-mask attention at `tree_mask_level`, causal attention preferred; a malformed descriptor
// INVALID_ARGUMENT.
void OpQueryLevels(const Devices& env, uint32_t tree_mask_level);
void OutOfRangeIndicesAreErrorsNotAccesses(const Devices& env);
// "<plugin>:0", found by index too; async, not host-visible, Q4_0 weights, memory > 0.
void DeviceNamesAndCaps(const Devices& env);
void AsyncWriteOpReadOrderOnOneStream(const Devices& env);
void EventWaitAcrossTwoStreams(const Devices& env);

}  // namespace cases
}  // namespace kestrel::conformance

#endif  // KESTREL_TESTS_DEVICE_CONFORMANCE_DEVICE_CONFORMANCE_H_
