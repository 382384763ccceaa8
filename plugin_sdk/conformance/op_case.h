// Op cases for checking a plugin against the reference plugin through the HAL: host tensors,
// one op's inputs and outputs (OpCase), running a case on a device with poisoned outputs
// inside guard bytes (RunOn: out-of-bounds writes and changed inputs are errors; RunReference: the
// reference run twice under two poisons), comparing two runs (Compare), and the generators the suites share (random weights of
// every dtype, random KV caches, paged-attention cases over scattered block tables with optional
// tree masks). Used by kestrel-conformance (the vendor kit) and by the in-tree GoogleTest suites
// (tests/device_conformance). Inputs come from Rng (plugin_sdk/src/test_util.h): fresh per process
// unless KESTREL_TEST_SEED fixes the seed.
#ifndef KESTREL_PLUGIN_SDK_CONFORMANCE_OP_CASE_H_
#define KESTREL_PLUGIN_SDK_CONFORMANCE_OP_CASE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "kestrel/plugin_api.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::conformance {

using Rng = plugin_sdk::testing_util::Rng;

// ---- op cases -------------------------------------------------------------------------------------
// Desc(dtype, dims) and OpDesc(kind, in, out, params, size): plugin_sdk/src/test_util.h.
using plugin_sdk::testing_util::Desc;
using plugin_sdk::testing_util::OpDesc;
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

// ---- running a case --------------------------------------------------------------------------------
// Every buffer tensor sits at offset kPad inside kPad guard bytes on each side (a canary pattern),
// so that a write outside the tensor is seen even when it stays inside the buffer.
constexpr uint64_t kPad = 64;
// A device buffer of bytes + 2 * kPad: guards, then `init` (or `poison` bytes when null), guards.
absl::StatusOr<hal::Buffer> AllocatePadded(hal::Device* dev, uint64_t bytes, const uint8_t* init,
                                           uint8_t poison);
// DATA_LOSS naming `what`, the side and the first guard byte that changed (an out-of-bounds write).
absl::Status CheckPadding(hal::Device* dev, const hal::Buffer& buffer, uint64_t bytes,
                          const std::string& what);

// Runs `c` on `dev` (every tensor in a padded buffer, outputs poisoned with `poison` bytes unless
// they have initial content); returns the outputs' bytes. DATA_LOSS when the op wrote a guard
// byte or changed an input that is not its output.
absl::Status RunOn(hal::Device* dev, const OpCase& c, std::vector<std::vector<uint8_t>>* outs,
                   uint8_t poison = 0xFF);

// The expected outputs: `c` on the reference device `ref` twice, under poisons 0xFF and 0x00. The
// reference must write every byte of every poisoned output (the two runs agree); otherwise an
// output that neither device wrote would compare equal. DATA_LOSS naming the first unwritten
// byte; RunOn's errors otherwise.
absl::Status RunReference(hal::Device* ref, const OpCase& c,
                          std::vector<std::vector<uint8_t>>* outs);


// Random weight bytes of `dtype` (encoded independently of both plugins; the formats of
// quants.h as random blocks with realistic scales). Quantized dtypes need cols a multiple of
// their block (32, or 256 for the K-quants).
Tensor Weight(Rng& rng, uint32_t dtype, int64_t rows, int64_t cols, bool prepared);

extern const uint32_t kWeightDtypes[5];      // F32, F16, BF16, Q8_0, Q4_0
extern const uint32_t kExtraQuantDtypes[8];  // Q4_1, Q5_0, Q5_1, Q2_K..Q6_K (plugin ABI 1.2)

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

// out = a + b over [1, n] F32 buffers; `args` (3 entries) back the descriptor.
kestrel_op_desc_t AddOp(kestrel_plugin_buffer_t* a, kestrel_plugin_buffer_t* b,
                        kestrel_plugin_buffer_t* out, int64_t n, kestrel_tensor_arg_t args[3]);

// How two runs of a case compare: F32 outputs by relative norm error against `tol` (NaN or inf
// in the device's output never passes), other outputs (and `exact` cases) bit for bit.
struct Comparison {
  bool ok = true;
  double max_error = 0.0;  // the largest relative norm error of an F32 output
  std::string message;     // why not, when !ok
};
Comparison Compare(const OpCase& c, const std::vector<std::vector<uint8_t>>& want,
                   const std::vector<std::vector<uint8_t>>& got);

}  // namespace kestrel::conformance

#endif  // KESTREL_PLUGIN_SDK_CONFORMANCE_OP_CASE_H_
