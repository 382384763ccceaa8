// The device-conformance harness shared by the accelerator plugins' suites (opencl, cuda; the cpu
// suite takes its descriptor helpers): a plugin under test and the reference plugin are dlopen()ed
// by one PluginRegistry, every op runs on both devices with the same fresh random inputs (seed
// printed on failure; KESTREL_TEST_SEED reproduces), outputs are poisoned before each run, and
// results are compared by relative norm error (NaN never passes) or bit for bit.
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
#include "plugins/ref/ref_test_util.h"

namespace kestrel::conformance {

using Rng = plugins::ref::testing_util::Rng;

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

// ---- op cases -------------------------------------------------------------------------------------
// Desc(dtype, dims) and OpDesc(kind, in, out, params, size): plugins/ref/ref_test_util.h.
using plugins::ref::testing_util::Desc;
using plugins::ref::testing_util::OpDesc;
inline kestrel_op_desc_t MakeOp(uint32_t kind, const std::vector<kestrel_tensor_arg_t>& in,
                                const std::vector<kestrel_tensor_arg_t>& out,
                                const std::vector<uint8_t>& params) {
  return OpDesc(kind, in, out, params.empty() ? nullptr : params.data(), params.size());
}
// A tensor argument with only its descriptor (for op_query).
kestrel_tensor_arg_t A(kestrel_tensor_desc_t d);

struct Tensor {
  kestrel_tensor_desc_t desc{};
  std::vector<uint8_t> bytes;  // inputs; initial content of in-place outputs (empty: poison)
  bool prepared = false;       // pass as a prepared weight
};

template <typename T>
std::vector<uint8_t> Bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}
Tensor F32(std::vector<int64_t> dims, const std::vector<float>& v);
Tensor I32(std::vector<int64_t> dims, const std::vector<int32_t>& v);
Tensor Out(uint32_t dtype, std::vector<int64_t> dims);

struct OpCase {
  uint32_t kind = 0;
  std::vector<Tensor> in, out;
  std::vector<uint8_t> params;
  int out_alias = -1;     // output 0 shares input out_alias's buffer (in-place)
  double tol = 1e-5;      // relative norm error for F32 outputs
  bool exact = false;     // compare outputs bit for bit
  uint32_t op_version = 1;
};

template <typename P>
std::vector<uint8_t> Params(P p) {
  p.struct_size = sizeof(P);
  return Bytes(std::vector<P>{p});
}

// Every buffer tensor sits at offset kPad inside kPad guard bytes on each side (a canary pattern).
constexpr uint64_t kPad = 64;
// A device buffer of bytes + 2 * kPad: guards, then `init` (or `poison` bytes when null).
absl::StatusOr<hal::Buffer> AllocatePadded(hal::Device* dev, uint64_t bytes, const uint8_t* init,
                                           uint8_t poison);
// DATA_LOSS naming `what` and the first guard byte that changed (an out-of-bounds write).
absl::Status CheckPadding(hal::Device* dev, const hal::Buffer& buffer, uint64_t bytes,
                          const std::string& what);

// Runs `c` on `dev` (every tensor in a padded buffer, outputs poisoned with `poison` bytes unless
// they have initial content); returns the outputs' bytes. DATA_LOSS when the op wrote a guard
// byte or changed an input that is not its output.
absl::Status RunOn(hal::Device* dev, const OpCase& c, std::vector<std::vector<uint8_t>>* outs,
                   uint8_t poison = 0xFF);

// Runs `c` on env.ref (twice, under two poisons: the reference must write every output byte) and
// env.dev and compares (gtest failures, with `what` and the seed).
void Check(const Devices& env, const OpCase& c, const std::string& what);

// Random weight bytes of `dtype` (encoded independently of both plugins).
Tensor Weight(Rng& rng, uint32_t dtype, int64_t rows, int64_t cols, bool prepared);

extern const uint32_t kWeightDtypes[5];  // F32, F16, BF16, Q8_0, Q4_0

std::string Name(uint32_t dtype);

// Random F32 or F16 KV-cache bytes.
std::vector<uint8_t> RandomCache(Rng& rng, uint32_t dtype, int64_t elems);

// ---- paged attention ------------------------------------------------------------------------------
struct Seq {
  int64_t q_len, kv_len;
};

// Sequences with out-of-order blocks from one shuffled pool; unused table entries hold -1. With
// `tree`, a random forest per sequence as the 7th input (tree_mask = 1).
OpCase Attention(Rng& rng, int64_t h, int64_t hkv, int64_t dh, int64_t b, uint32_t kd,
                 uint32_t vd, bool causal, const std::vector<Seq>& seqs, bool tree = false);
// The same case with a sliding window (op_version 2): the table entries of blocks before every
// query's window are set to -1, as a host that freed them would.
OpCase WindowedAttention(OpCase c, uint32_t window);

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

// out = a + b over [1, n] F32 buffers; `args` (3 entries) back the descriptor.
kestrel_op_desc_t AddOp(kestrel_plugin_buffer_t* a, kestrel_plugin_buffer_t* b,
                        kestrel_plugin_buffer_t* out, int64_t n, kestrel_tensor_arg_t args[3]);

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
