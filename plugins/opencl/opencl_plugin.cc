// The OpenCL plugin ("opencl"): every op of a llama model on any OpenCL 1.2+ device, through the
// ICD loader only (works with any vendor's driver). Devices are named "opencl:0", "opencl:1", ...
// (the host also maps the plugin name "opencl" to the first one).
//
// Owns: device discovery (device_count reports why there is none), one cl_context per opened
// device with the kernels built at open time (binaries cached on disk, see cl_util.h), cl_mem
// buffers, streams (one in-order cl_command_queue each) and events (markers), prepared weights
// (uploaded once; Q8_0/Q4_0 repacked into f32 scales + bare quants for aligned vector loads, BF16
// widened to F32) and the dispatch of op descriptors to the kernels in kernels/*.cl.
// Descriptor validation is the plugin SDK's (op_contract.h CheckOp, which ref uses too), so both plugins accept
// exactly the same descriptors. Index inputs (token ids, slots, block tables, rows, pairs) are
// read back (a few bytes, in stream order) and range-checked before any kernel runs, so a bad
// index is a status and never an out-of-bounds access; that read is the one synchronisation point
// of those ops. Every C++ exception is caught at the slot boundary.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/device_checks.h"
#include "kestrel/plugin_sdk/device_table.h"
#include "kestrel/plugin_sdk/weight_dtype_support.h"
#include "kestrel/plugin_sdk/plugin_glue.h"
#include "opencl_kernels_embedded.h"
#include "cl_util.h"
#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugins::opencl {
namespace {

using plugin_sdk::CheckCopy;
using plugin_sdk::CheckTransfer;
using plugin_sdk::CheckWeightPrepare;
using plugin_sdk::DeviceCapsValues;
using plugin_sdk::DiscoveredDevices;
using plugin_sdk::HostRef;
using plugin_sdk::LargeDimReason;
using plugin_sdk::MakeDeviceTable;
using plugin_sdk::PrepareOp;
using plugin_sdk::QueryOp;
using plugin_sdk::WriteDeviceCaps;

using plugin_sdk::DtypeName;
using plugin_sdk::FailedPrecondition;
using plugin_sdk::Internal;
using plugin_sdk::InvalidArgument;
using plugin_sdk::OutOfRange;
using plugin_sdk::ResourceExhausted;
using plugin_sdk::StrCat;
using plugin_sdk::TensorBytes;
using plugin_sdk::Unimplemented;

#define RETURN_IF_ERROR(expr) KESTREL_SDK_RETURN_IF_ERROR(expr)

constexpr uint32_t kDeviceMagic = 0x4F434C44;  // "OCLD"
constexpr uint32_t kBufferMagic = 0x4F434C42;  // "OCLB"
constexpr uint32_t kStreamMagic = 0x4F434C53;  // "OCLS"
constexpr uint32_t kEventMagic = 0x4F434C45;   // "OCLE"
constexpr uint32_t kWeightMagic = 0x4F434C57;  // "OCLW"
constexpr size_t kPreferredWorkGroup = 64;
constexpr uint32_t kAttentionMaxDimsPerItem = 4;  // ATT_MAXD in attention.cl
constexpr uint32_t kMatmulRows = 4;               // MM_ROWS in matmul.cl
constexpr uint32_t kMatmulTokens = 4;             // MM_TOK in matmul.cl

enum KernelId {
  kAdd, kSwiglu, kRmsNorm, kRope, kEmbedF32, kEmbedF16, kEmbedQ8, kEmbedQ4, kKvWriteF32,
  kKvWriteF16, kRepackQ8, kRepackQ4, kBf16ToF32, kMatmulF32, kMatmulF16, kMatmulQ8, kMatmulQ4,
  kAttnK32V32, kAttnK32V16, kAttnK16V32, kAttnK16V16, kMatmulSmallF32, kMatmulSmallF16,
  kMatmulSmallQ8, kMatmulSmallQ4, kAddBias, kGeglu, kNumKernels
};
const char* const kKernelNames[kNumKernels] = {
    "add_f32", "swiglu_f32", "rmsnorm_f32", "rope_f32", "embed_f32", "embed_f16", "embed_q8",
    "embed_q4", "kv_write_f32", "kv_write_f16", "repack_q8", "repack_q4", "bf16_to_f32",
    "matmul_f32", "matmul_f16", "matmul_q8", "matmul_q4", "attn_k32_v32", "attn_k32_v16",
    "attn_k16_v32", "attn_k16_v16", "matmul_small_f32", "matmul_small_f16", "matmul_small_q8",
    "matmul_small_q4", "add_bias_f32", "geglu_f32"};

// ---- plugin-wide state ------------------------------------------------------------------------
// The hosts, init count and devices (device_table.h): dlopen() of the same file returns the same
// library, so a second host (a second runtime, a test) shares this state.
struct Global : DiscoveredDevices<ClDeviceInfo> {
  std::string cache_dir;  // the latest init's "cache_dir" option
};
Global& G() {
  static Global* g = new Global;  // never destroyed: slots may run during static destruction
  return *g;
}

void Log(kestrel_plugin_log_level_t level, const std::string& message) {
  G().host.Log(level, message);
}

// Discovers the devices once (under G().mu).
void DiscoverLocked() {
  Global& g = G();
  if (g.discovered) return;
  g.devices = DiscoverDevices(&g.no_device_reason);
  g.discovered = true;
}

// ---- objects ------------------------------------------------------------------------------------
struct Device {
  uint32_t magic = kDeviceMagic;
  uint32_t index = 0;
  ClDeviceInfo info;
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;  // used for NULL streams (synchronous calls)
  cl_program program = nullptr;
  cl_kernel kernels[kNumKernels] = {};
  size_t wg = kPreferredWorkGroup;
  ~Device() {
    if (queue != nullptr) {
      clFinish(queue);
      clReleaseCommandQueue(queue);
    }
    for (cl_kernel k : kernels) {
      if (k != nullptr) clReleaseKernel(k);
    }
    if (program != nullptr) clReleaseProgram(program);
    if (context != nullptr) clReleaseContext(context);
  }
};

struct Buffer {
  uint32_t magic = kBufferMagic;
  Device* device = nullptr;
  cl_mem mem = nullptr;
  uint64_t size = 0;
  ~Buffer() {
    if (mem != nullptr) clReleaseMemObject(mem);
  }
};

struct Stream {
  uint32_t magic = kStreamMagic;
  Device* device = nullptr;
  cl_command_queue queue = nullptr;
  ~Stream() {
    if (queue != nullptr) {
      clFinish(queue);
      clReleaseCommandQueue(queue);
    }
  }
};

struct Event {
  uint32_t magic = kEventMagic;
  Device* device = nullptr;
  cl_event event = nullptr;
  ~Event() {
    if (event != nullptr) clReleaseEvent(event);
  }
};

// How a weight sits in device memory. kQ8 / kQ4 are the repacked layouts (f32 scales[rows * nb]
// in `scales`, quants alone in `data`: 32 int8 / 16 nibble bytes per block).
enum class WFormat { kF32, kF16, kQ8, kQ4 };

struct Weight {
  uint32_t magic = kWeightMagic;
  Device* device = nullptr;
  kestrel_tensor_desc_t desc{};
  WFormat format = WFormat::kF32;
  cl_mem data = nullptr;
  cl_mem scales = nullptr;
  ~Weight() {
    if (data != nullptr) clReleaseMemObject(data);
    if (scales != nullptr) clReleaseMemObject(scales);
  }
};

// A temporary device allocation; released when it goes out of scope (OpenCL defers the actual
// release until the commands using it have finished).
struct TempMem {
  cl_mem mem = nullptr;
  TempMem() = default;
  TempMem(const TempMem&) = delete;
  TempMem& operator=(const TempMem&) = delete;
  ~TempMem() {
    if (mem != nullptr) clReleaseMemObject(mem);
  }
};

Device* AsDevice(kestrel_plugin_device_t* d) { return reinterpret_cast<Device*>(d); }
Buffer* AsBuffer(kestrel_plugin_buffer_t* b) { return reinterpret_cast<Buffer*>(b); }
Stream* AsStream(kestrel_plugin_stream_t* s) { return reinterpret_cast<Stream*>(s); }
Event* AsEvent(kestrel_plugin_event_t* e) { return reinterpret_cast<Event*>(e); }
Weight* AsWeight(kestrel_plugin_weight_t* w) { return reinterpret_cast<Weight*>(w); }

Status CheckDevice(kestrel_plugin_device_t* d, const char* slot) {
  return plugin_sdk::CheckDevice(AsDevice(d), kDeviceMagic, "opencl", slot);
}

Status CheckBuffer(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b, const std::string& what) {
  return plugin_sdk::CheckBuffer(AsBuffer(b), kBufferMagic, AsDevice(d), what);
}

// The queue of `stream` (NULL: the device's own queue; the caller then finishes it).
Status QueueOf(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s, const char* slot,
               cl_command_queue* out) {
  if (s == nullptr) {
    *out = AsDevice(d)->queue;
    return Status();
  }
  RETURN_IF_ERROR(plugin_sdk::CheckStream(AsStream(s), kStreamMagic, AsDevice(d), slot));
  *out = AsStream(s)->queue;
  return Status();
}

// Sets the arguments of one kernel launch in order, then enqueues it.
class Launch {
 public:
  Launch(const Device& d, KernelId id) : kernel_(d.kernels[id]), name_(kKernelNames[id]) {}
  Launch& Mem(cl_mem m) { return Set(sizeof m, &m); }
  Launch& U64(uint64_t v) {
    const cl_ulong x = v;
    return Set(sizeof x, &x);
  }
  Launch& U32(uint64_t v) {
    const cl_uint x = static_cast<cl_uint>(v);
    return Set(sizeof x, &x);
  }
  Launch& I32(int64_t v) {
    const cl_int x = static_cast<cl_int>(v);
    return Set(sizeof x, &x);
  }
  Launch& F32(float v) {
    const cl_float x = v;
    return Set(sizeof x, &x);
  }
  // global = (g0, g1); local = (l0, 1), or chosen by the driver when l0 == 0.
  Status Run(cl_command_queue q, size_t g0, size_t g1, size_t l0) {
    if (err_ != CL_SUCCESS) {
      return ClStatus(err_, StrCat("clSetKernelArg(", name_, ", arg ", bad_arg_, ")"));
    }
    if (g0 == 0 || g1 == 0) return Status();
    const size_t global[2] = {g0, g1};
    const size_t local[2] = {l0, 1};
    KESTREL_CL_RETURN_IF_ERROR(
        clEnqueueNDRangeKernel(q, kernel_, 2, nullptr, global, l0 ? local : nullptr, 0, nullptr,
                               nullptr),
        StrCat("clEnqueueNDRangeKernel(", name_, ")"));
    return Status();
  }

 private:
  Launch& Set(size_t size, const void* value) {
    if (err_ == CL_SUCCESS) {
      err_ = clSetKernelArg(kernel_, index_, size, value);
      if (err_ != CL_SUCCESS) bad_arg_ = index_;
    }
    ++index_;
    return *this;
  }
  cl_kernel kernel_;
  const char* name_;
  cl_uint index_ = 0;
  cl_uint bad_arg_ = 0;
  cl_int err_ = CL_SUCCESS;
};

size_t RoundUp(size_t n, size_t m) { return (n + m - 1) / m * m; }
size_t CeilDiv(size_t n, size_t m) { return (n + m - 1) / m; }

Status NewMem(const Device& d, uint64_t size, const char* what, cl_mem* out) {
  if (size > d.info.max_alloc && d.info.max_alloc != 0) {
    return ResourceExhausted(what, ": ", size, " bytes exceed CL_DEVICE_MAX_MEM_ALLOC_SIZE=",
                             d.info.max_alloc, " of '", d.info.name, "'");
  }
  cl_int err = CL_SUCCESS;
  *out = clCreateBuffer(d.context, CL_MEM_READ_WRITE, std::max<uint64_t>(size, 1), nullptr, &err);
  if (err != CL_SUCCESS) {
    *out = nullptr;
    return ClStatus(err, StrCat(what, ": clCreateBuffer(", size, " bytes)"));
  }
  return Status();
}

// ---- tensor arguments ---------------------------------------------------------------------------
// One resolved argument: a cl_mem and a byte offset, or a prepared weight.
struct Arg {
  cl_mem mem = nullptr;
  uint64_t offset = 0;  // bytes
  const Weight* weight = nullptr;
  // Element offset for kernels taking `T* p, ulong p_off`.
  uint64_t Elems(uint64_t elem_size) const { return offset / elem_size; }
};

Status ResolveArg(kestrel_plugin_device_t* d, const kestrel_tensor_arg_t& a,
                  const std::string& label, bool writable, Arg* out) {
  const Weight* w = nullptr;
  const Buffer* b = nullptr;
  RETURN_IF_ERROR(plugin_sdk::CheckTensorArg(AsDevice(d), a, label, writable, kWeightMagic,
                                          kBufferMagic, &w, &b));
  // Matmul/embedding kernels read the weight's own layout (MakeWeightView); any other input
  // (e.g. an RMSNorm weight) has an F32 desc, so the weight's data is that tensor as it is.
  out->weight = w;
  out->mem = w != nullptr ? w->data : b->mem;
  out->offset = w != nullptr ? 0 : a.offset;
  return Status();
}

// Reads `n` int32 of an index argument (in stream order, blocking: they are range-checked on
// the host before any kernel uses them).
Status ReadInts(cl_command_queue q, const Arg& a, uint64_t n, const std::string& what,
                std::vector<int32_t>* out) {
  out->assign(static_cast<size_t>(n), 0);
  if (n == 0) return Status();
  KESTREL_CL_RETURN_IF_ERROR(clEnqueueReadBuffer(q, a.mem, CL_TRUE, a.offset, n * sizeof(int32_t),
                                                 out->data(), 0, nullptr, nullptr),
                             StrCat("clEnqueueReadBuffer(", what, ")"));
  return Status();
}

// A matmul/embedding weight in one of the kernel layouts: a prepared weight as it is, a buffer
// F32/F16 in place, a buffer BF16/Q8_0/Q4_0 converted on the device into temporaries first.
struct WeightView {
  WFormat format = WFormat::kF32;
  cl_mem data = nullptr;
  uint64_t data_off = 0;  // elements (F32/F16 only)
  cl_mem scales = nullptr;
  TempMem tmp_data, tmp_scales;
};

Status MakeWeightView(const Device& d, cl_command_queue q, const kestrel_tensor_desc_t& desc,
                      const Arg& a, WeightView* v) {
  if (a.weight != nullptr) {
    v->format = a.weight->format;
    v->data = a.weight->data;
    v->scales = a.weight->scales;
    return Status();
  }
  const uint64_t elems = TensorBytes(desc) / plugin_sdk::DtypeBlockBytes(desc.dtype) *
                         static_cast<uint64_t>(plugin_sdk::DtypeBlockElements(desc.dtype));
  switch (desc.dtype) {
    case KESTREL_DTYPE_F32:
      v->format = WFormat::kF32;
      v->data = a.mem;
      v->data_off = a.Elems(4);
      return Status();
    case KESTREL_DTYPE_F16:
      v->format = WFormat::kF16;
      v->data = a.mem;
      v->data_off = a.Elems(2);
      return Status();
    case KESTREL_DTYPE_BF16:
      v->format = WFormat::kF32;
      RETURN_IF_ERROR(NewMem(d, elems * 4, "BF16 weight conversion", &v->tmp_data.mem));
      v->data = v->tmp_data.mem;
      return Launch(d, kBf16ToF32).Mem(a.mem).U64(a.Elems(2)).Mem(v->data).U64(elems)
          .Run(q, RoundUp(elems, d.wg), 1, 0);
    case KESTREL_DTYPE_Q8_0:
    case KESTREL_DTYPE_Q4_0: {
      const bool q8 = desc.dtype == KESTREL_DTYPE_Q8_0;
      const uint64_t blocks = elems / 32;
      v->format = q8 ? WFormat::kQ8 : WFormat::kQ4;
      RETURN_IF_ERROR(NewMem(d, blocks * 4, "weight repack (scales)", &v->tmp_scales.mem));
      RETURN_IF_ERROR(NewMem(d, blocks * (q8 ? 32 : 16), "weight repack (quants)",
                             &v->tmp_data.mem));
      v->data = v->tmp_data.mem;
      v->scales = v->tmp_scales.mem;
      return Launch(d, q8 ? kRepackQ8 : kRepackQ4).Mem(a.mem).U64(a.offset).Mem(v->scales)
          .Mem(v->data).U64(blocks).Run(q, RoundUp(blocks, d.wg), 1, 0);
    }
    default:
      return Unimplemented("weight dtype ", DtypeName(desc.dtype));
  }
}

// ---- ops ------------------------------------------------------------------------------------------
// The kinds this plugin runs (MOE, vendor and unknown kinds are UNSUPPORTED whatever the shared
// validation code knows about them).
bool IsOpenClKind(uint32_t kind) {
  switch (kind) {
    case KESTREL_OP_EMBEDDING_GATHER:
    case KESTREL_OP_RMSNORM:
    case KESTREL_OP_ROPE:
    case KESTREL_OP_MATMUL:
    case KESTREL_OP_SWIGLU:
    case KESTREL_OP_ADD:
    case KESTREL_OP_KV_WRITE:
    case KESTREL_OP_KV_BLOCK_COPY:
    case KESTREL_OP_PAGED_ATTENTION:
    case KESTREL_OP_LOGITS:
    case KESTREL_OP_GEGLU:
      return true;
    default:
      return false;
  }
}

// Why a descriptor that plugin_sdk::CheckOp accepts as supported is still not run here ("" if it is).
constexpr uint64_t Bit(uint32_t dt) { return KESTREL_DTYPE_BIT(dt); }
constexpr uint64_t kWeightDtypes = Bit(KESTREL_DTYPE_F32) | Bit(KESTREL_DTYPE_F16) |
                                   Bit(KESTREL_DTYPE_BF16) | Bit(KESTREL_DTYPE_Q8_0) |
                                   Bit(KESTREL_DTYPE_Q4_0);
constexpr uint64_t kDtypes = kWeightDtypes | Bit(KESTREL_DTYPE_I32);

std::string ExtraUnsupported(const Device& d, const kestrel_op_desc_t& op) {
  std::string large = LargeDimReason(op);
  if (!large.empty()) return large;
  std::string dtype = plugin_sdk::UnsupportedWeightDtypeReason(op, kWeightDtypes);
  if (!dtype.empty()) return dtype;
  if (op.kind == KESTREL_OP_PAGED_ATTENTION) {
    const kestrel_op_attention_params_t p = plugin_sdk::AttentionParamsOf(op);
    if (p.tree_mask) return "tree masks are not implemented";
    if (p.head_dim > kAttentionMaxDimsPerItem * d.wg) {
      return StrCat("head_dim=", p.head_dim, " > ", kAttentionMaxDimsPerItem * d.wg);
    }
  }
  return "";
}

Status RunEmbedding(const Device& d, cl_command_queue q, const kestrel_op_desc_t& op,
                    const std::vector<Arg>& in, const Arg& out) {
  const kestrel_tensor_desc_t& table = op.inputs[0].desc;
  const int64_t vocab = table.dims[0], dim = table.dims[1];
  const int64_t n = op.inputs[1].desc.dims[0];
  std::vector<int32_t> ids;
  RETURN_IF_ERROR(ReadInts(q, in[1], n, "EMBEDDING_GATHER ids", &ids));
  for (int64_t t = 0; t < n; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return OutOfRange("EMBEDDING_GATHER: ids[", t, "]=", ids[t], " is outside [0, ", vocab, ")");
    }
  }
  if (n == 0 || dim == 0) return Status();
  WeightView w;
  RETURN_IF_ERROR(MakeWeightView(d, q, table, in[0], &w));
  Launch* l = nullptr;
  Launch f32(d, kEmbedF32), f16(d, kEmbedF16), q8(d, kEmbedQ8), q4(d, kEmbedQ4);
  switch (w.format) {
    case WFormat::kF32: l = &f32.Mem(w.data).U64(w.data_off); break;
    case WFormat::kF16: l = &f16.Mem(w.data).U64(w.data_off); break;
    case WFormat::kQ8: l = &q8.Mem(w.scales).Mem(w.data); break;
    case WFormat::kQ4: l = &q4.Mem(w.scales).Mem(w.data); break;
  }
  return l->Mem(in[1].mem).U64(in[1].Elems(4)).Mem(out.mem).U64(out.Elems(4)).U32(dim)
      .F32(plugin_sdk::EmbeddingScaleOf(op))
      .Run(q, RoundUp(dim, d.wg), n, d.wg);
}

// x [T, K] (rows: which x rows, for LOGITS) times w [N, K]^T -> out [T', N].
Status RunMatmul(const Device& d, cl_command_queue q, const kestrel_tensor_desc_t& x_desc,
                 const Arg& x_in, const kestrel_tensor_desc_t& w_desc, const Arg& w_arg,
                 const Arg* rows, int64_t n_out_rows, const kestrel_tensor_desc_t& out_desc,
                 const Arg& out) {
  const int64_t k = x_desc.dims[1], n = w_desc.dims[0];
  if (n_out_rows == 0 || n == 0) return Status();
  // out may overlap x (the contract does not forbid it): read x from a copy then.
  Arg x = x_in;
  TempMem x_copy;
  const uint64_t x_bytes = TensorBytes(x_desc), out_bytes = TensorBytes(out_desc);
  if (x.mem == out.mem && x.offset < out.offset + out_bytes && out.offset < x.offset + x_bytes) {
    RETURN_IF_ERROR(NewMem(d, x_bytes, "MATMUL x copy", &x_copy.mem));
    KESTREL_CL_RETURN_IF_ERROR(
        clEnqueueCopyBuffer(q, x.mem, x_copy.mem, x.offset, 0, x_bytes, 0, nullptr, nullptr),
        "clEnqueueCopyBuffer(MATMUL x)");
    x.mem = x_copy.mem;
    x.offset = 0;
  }
  if (k == 0) {  // an empty dot product: zeros
    const cl_float zero = 0.0f;
    KESTREL_CL_RETURN_IF_ERROR(clEnqueueFillBuffer(q, out.mem, &zero, sizeof zero, out.offset,
                                                   out_bytes, 0, nullptr, nullptr),
                               "clEnqueueFillBuffer(MATMUL out)");
    return Status();
  }
  WeightView w;
  RETURN_IF_ERROR(MakeWeightView(d, q, w_desc, w_arg, &w));
  // Small K: one work-item per output (a work-group per row block would idle most of its
  // work-items); otherwise the tiled kernel with the K split across the work-group.
  const bool small = static_cast<uint64_t>(k) <= 2 * d.wg;
  static const KernelId kTiled[] = {kMatmulF32, kMatmulF16, kMatmulQ8, kMatmulQ4};
  static const KernelId kSmall[] = {kMatmulSmallF32, kMatmulSmallF16, kMatmulSmallQ8,
                                    kMatmulSmallQ4};
  Launch l(d, (small ? kSmall : kTiled)[static_cast<int>(w.format)]);
  l.Mem(x.mem).U64(x.Elems(4));
  if (rows != nullptr) {
    l.Mem(rows->mem).U64(rows->Elems(4)).I32(1);
  } else {
    l.Mem(x.mem).U64(0).I32(0);
  }
  l.Mem(out.mem).U64(out.Elems(4)).U32(n_out_rows).U32(k).U32(n);
  if (w.format == WFormat::kF32 || w.format == WFormat::kF16) {
    l.Mem(w.data).U64(w.data_off);
  } else {
    l.Mem(w.scales).Mem(w.data);
  }
  if (small) return l.Run(q, RoundUp(n, d.wg), n_out_rows, 0);
  return l.Run(q, CeilDiv(n, kMatmulRows) * d.wg, CeilDiv(n_out_rows, kMatmulTokens), d.wg);
}

Status RunKvWrite(const Device& d, cl_command_queue q, const kestrel_op_desc_t& op,
                  const std::vector<Arg>& in, const std::vector<Arg>& out) {
  const kestrel_tensor_desc_t& kc = op.outputs[0].desc;
  const int64_t n = op.inputs[0].desc.dims[0];
  const int64_t n_slots = kc.dims[0] * kc.dims[1];
  std::vector<int32_t> slots;
  RETURN_IF_ERROR(ReadInts(q, in[2], n, "KV_WRITE slots", &slots));
  for (int64_t t = 0; t < n; ++t) {
    if (slots[t] < 0 || slots[t] >= n_slots) {
      return OutOfRange("KV_WRITE: slots[", t, "]=", slots[t], " is outside [0, ", n_slots, ") (",
                        kc.dims[0], " blocks of ", kc.dims[1], ")");
    }
  }
  const uint64_t row = static_cast<uint64_t>(kc.dims[2] * kc.dims[3]);
  if (n == 0 || row == 0) return Status();
  for (int c = 0; c < 2; ++c) {
    const bool f16 = op.outputs[c].desc.dtype == KESTREL_DTYPE_F16;
    RETURN_IF_ERROR(Launch(d, f16 ? kKvWriteF16 : kKvWriteF32)
                        .Mem(in[c].mem).U64(in[c].Elems(4))
                        .Mem(in[2].mem).U64(in[2].Elems(4))
                        .Mem(out[c].mem).U64(out[c].Elems(f16 ? 2 : 4))
                        .U32(row)
                        .Run(q, RoundUp(row, d.wg), n, 0));
  }
  return Status();
}

Status RunKvBlockCopy(cl_command_queue q, const kestrel_op_desc_t& op, const std::vector<Arg>& in,
                      const std::vector<Arg>& out) {
  const kestrel_tensor_desc_t& kc = op.outputs[0].desc;
  const int64_t n_pairs = op.inputs[0].desc.dims[0];
  std::vector<int32_t> pairs;
  RETURN_IF_ERROR(ReadInts(q, in[0], 2 * n_pairs, "KV_BLOCK_COPY pairs", &pairs));
  for (int64_t p = 0; p < 2 * n_pairs; ++p) {
    if (pairs[p] < 0 || pairs[p] >= kc.dims[0]) {
      return OutOfRange("KV_BLOCK_COPY: pairs[", p / 2, "][", p % 2, "]=", pairs[p],
                        " is outside [0, ", kc.dims[0], ")");
    }
  }
  // One copy per pair and cache, in order on the in-order queue (pairs may chain).
  for (int c = 0; c < 2; ++c) {
    const kestrel_tensor_desc_t& cd = op.outputs[c].desc;
    const uint64_t block_bytes = TensorBytes(cd) / static_cast<uint64_t>(std::max<int64_t>(cd.dims[0], 1));
    if (block_bytes == 0) continue;
    for (int64_t p = 0; p < n_pairs; ++p) {
      if (pairs[2 * p] == pairs[2 * p + 1]) continue;
      KESTREL_CL_RETURN_IF_ERROR(
          clEnqueueCopyBuffer(q, out[c].mem, out[c].mem, out[c].offset + pairs[2 * p] * block_bytes,
                              out[c].offset + pairs[2 * p + 1] * block_bytes, block_bytes, 0,
                              nullptr, nullptr),
          "clEnqueueCopyBuffer(KV_BLOCK_COPY)");
    }
  }
  return Status();
}

Status RunAttention(const Device& d, cl_command_queue q, const kestrel_op_desc_t& op,
                    const std::vector<Arg>& in, const Arg& out) {
  const kestrel_op_attention_params_t p = plugin_sdk::AttentionParamsOf(op);
  const int64_t n_tokens = op.inputs[0].desc.dims[0];
  const kestrel_tensor_desc_t& kc = op.inputs[1].desc;
  const kestrel_tensor_desc_t& tables_desc = op.inputs[3].desc;
  const int64_t n_seqs = tables_desc.dims[0], max_blocks = tables_desc.dims[1];
  const int64_t block = kc.dims[1];
  std::vector<int32_t> tables, starts, lens;
  RETURN_IF_ERROR(ReadInts(q, in[3], n_seqs * max_blocks, "block_tables", &tables));
  RETURN_IF_ERROR(ReadInts(q, in[4], n_seqs + 1, "query_start", &starts));
  RETURN_IF_ERROR(ReadInts(q, in[5], n_seqs, "kv_lens", &lens));
  // The reference plugin's checks, in its order.
  if (starts[0] != 0) {
    return InvalidArgument("PAGED_ATTENTION: query_start[0]=", starts[0], " != 0");
  }
  if (starts[n_seqs] != n_tokens) {
    return InvalidArgument("PAGED_ATTENTION: query_start[", n_seqs, "]=", starts[n_seqs],
                           " != T=", n_tokens);
  }
  for (int64_t s = 0; s < n_seqs; ++s) {
    if (starts[s + 1] < starts[s]) {
      return InvalidArgument("PAGED_ATTENTION: query_start is not non-decreasing: query_start[",
                             s + 1, "]=", starts[s + 1], " < query_start[", s, "]=", starts[s]);
    }
    const int64_t q_len = starts[s + 1] - starts[s];
    if (lens[s] < q_len || lens[s] > max_blocks * block) {
      return OutOfRange("PAGED_ATTENTION: kv_lens[", s, "]=", lens[s], " is outside [q_len=",
                        q_len, ", MB*B=", max_blocks * block, "]");
    }
    const int64_t used = (lens[s] + block - 1) / block;
    // With a window the blocks wholly before the first visible position are not read.
    const int64_t first = p.window > 0 ? std::max<int64_t>(0, lens[s] - q_len - p.window + 1) : 0;
    for (int64_t b = first / block; b < used; ++b) {
      const int32_t id = tables[s * max_blocks + b];
      if (id < 0 || id >= kc.dims[0]) {
        return OutOfRange("PAGED_ATTENTION: block_tables[", s, "][", b, "]=", id,
                          " is outside [0, ", kc.dims[0], ")");
      }
    }
  }
  if (n_tokens == 0 || p.head_dim == 0) return Status();
  const bool k16 = kc.dtype == KESTREL_DTYPE_F16;
  const bool v16 = op.inputs[2].desc.dtype == KESTREL_DTYPE_F16;
  const KernelId id = k16 ? (v16 ? kAttnK16V16 : kAttnK16V32) : (v16 ? kAttnK32V16 : kAttnK32V32);
  const uint32_t nparts = p.head_dim < d.wg ? static_cast<uint32_t>(d.wg / p.head_dim) : 1;
  return Launch(d, id)
      .Mem(in[0].mem).U64(in[0].Elems(4))
      .Mem(in[1].mem).U64(in[1].Elems(k16 ? 2 : 4))
      .Mem(in[2].mem).U64(in[2].Elems(v16 ? 2 : 4))
      .Mem(in[3].mem).U64(in[3].Elems(4))
      .Mem(in[4].mem).U64(in[4].Elems(4))
      .Mem(in[5].mem).U64(in[5].Elems(4))
      .Mem(out.mem).U64(out.Elems(4))
      .U32(n_seqs).U32(max_blocks).U32(p.n_heads).U32(p.n_kv_heads).U32(p.head_dim)
      .U32(p.block_size).I32(p.causal ? 1 : 0).F32(p.scale).U32(nparts).U32(p.window)
      .Run(q, static_cast<size_t>(n_tokens) * p.n_heads * d.wg, 1, d.wg);
}

Status RunOp(const Device& d, cl_command_queue q, const kestrel_op_desc_t& op,
             const std::vector<Arg>& in, const std::vector<Arg>& out) {
  const kestrel_tensor_desc_t& d0 = op.inputs[0].desc;
  switch (op.kind) {
    case KESTREL_OP_EMBEDDING_GATHER:
      return RunEmbedding(d, q, op, in, out[0]);
    case KESTREL_OP_RMSNORM: {
      kestrel_op_rmsnorm_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      if (d0.dims[1] == 0) return Status();
      return Launch(d, kRmsNorm)
          .Mem(in[0].mem).U64(in[0].Elems(4)).Mem(in[1].mem).U64(in[1].Elems(4))
          .Mem(out[0].mem).U64(out[0].Elems(4)).U32(d0.dims[1]).F32(p.eps)
          .Run(q, static_cast<size_t>(d0.dims[0]) * d.wg, 1, d.wg);
    }
    case KESTREL_OP_ROPE: {
      kestrel_op_rope_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      // The reference's expression (float pow through double, rounded to float).
      const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
      const uint64_t per_head = p.n_rot / 2 + (d0.dims[2] - p.n_rot);
      return Launch(d, kRope)
          .Mem(in[0].mem).U64(in[0].Elems(4)).Mem(in[1].mem).U64(in[1].Elems(4))
          .Mem(out[0].mem).U64(out[0].Elems(4)).U32(d0.dims[0]).U32(d0.dims[1]).U32(d0.dims[2])
          .U32(p.n_rot).U32(p.style == KESTREL_ROPE_STYLE_NEOX ? 1 : 0).F32(theta_scale)
          .F32(p.freq_scale)
          // Without factors the kernel never reads its ff argument; x stands in for it.
          .Mem(op.n_inputs > 2 ? in[2].mem : in[0].mem).U64(op.n_inputs > 2 ? in[2].Elems(4) : 0)
          .U32(op.n_inputs > 2 ? 1 : 0)
          .Run(q, RoundUp(d0.dims[0] * d0.dims[1] * per_head, d.wg), 1, 0);
    }
    case KESTREL_OP_MATMUL: {
      RETURN_IF_ERROR(RunMatmul(d, q, d0, in[0], op.inputs[1].desc, in[1], nullptr, d0.dims[0],
                                op.outputs[0].desc, out[0]));
      const uint64_t n = static_cast<uint64_t>(op.inputs[1].desc.dims[0]);
      const uint64_t total = n * static_cast<uint64_t>(d0.dims[0]);
      if (op.n_inputs < 3 || total == 0) return Status();
      return Launch(d, kAddBias)
          .Mem(out[0].mem).U64(out[0].Elems(4)).Mem(in[2].mem).U64(in[2].Elems(4))
          .U32(static_cast<uint32_t>(n)).U64(total)
          .Run(q, RoundUp(total, d.wg), 1, 0);
    }
    case KESTREL_OP_LOGITS: {
      const int64_t n_rows = op.inputs[2].desc.dims[0];
      std::vector<int32_t> rows;
      RETURN_IF_ERROR(ReadInts(q, in[2], n_rows, "LOGITS rows", &rows));
      for (int64_t r = 0; r < n_rows; ++r) {
        if (rows[r] < 0 || rows[r] >= d0.dims[0]) {
          return OutOfRange("LOGITS: rows[", r, "]=", rows[r], " is outside [0, T=", d0.dims[0],
                            ")");
        }
      }
      return RunMatmul(d, q, d0, in[0], op.inputs[1].desc, in[1], &in[2], n_rows,
                       op.outputs[0].desc, out[0]);
    }
    case KESTREL_OP_SWIGLU:
    case KESTREL_OP_GEGLU:
    case KESTREL_OP_ADD: {
      const uint64_t n = static_cast<uint64_t>(d0.dims[0] * d0.dims[1]);
      const KernelId id = op.kind == KESTREL_OP_ADD ? kAdd
                          : op.kind == KESTREL_OP_SWIGLU ? kSwiglu : kGeglu;
      return Launch(d, id)
          .Mem(in[0].mem).U64(in[0].Elems(4)).Mem(in[1].mem).U64(in[1].Elems(4))
          .Mem(out[0].mem).U64(out[0].Elems(4)).U64(n)
          .Run(q, CeilDiv(n, 4), 1, 0);
    }
    case KESTREL_OP_KV_WRITE:
      return RunKvWrite(d, q, op, in, out);
    case KESTREL_OP_KV_BLOCK_COPY:
      return RunKvBlockCopy(q, op, in, out);
    case KESTREL_OP_PAGED_ATTENTION:
      return RunAttention(d, q, op, in, out[0]);
    default:
      return Unimplemented(plugin_sdk::OpKindName(op.kind), ": not implemented by plugin 'opencl'");
  }
}

// ---- slots --------------------------------------------------------------------------------------
std::string KernelSourceText() {
  std::string s;
  for (const KernelSource& k : kKernelSources) {
    s += StrCat("// ---- ", k.file, "\n", k.text, "\n");
  }
  return s;
}


Status GetDeviceInfo(uint32_t index, const char* slot, ClDeviceInfo* out) {
  return plugin_sdk::GetDeviceInfo<ClDeviceInfo>(G(), index, slot, &DiscoverLocked, out);
}


Status CheckEvent(kestrel_plugin_device_t* d, kestrel_plugin_event_t* e, const char* slot) {
  return plugin_sdk::CheckEvent(AsEvent(e), kEventMagic, AsDevice(d), slot);
}

// The plugin's slots, with the ABI's signatures; MakeDeviceTable wraps the fallible ones in Guard.
struct OpenClDevice {
  static const HostRef& Host() { return G().host; }
  static Status Init(const kestrel_plugin_option_t* options, size_t n_options) {
    if (n_options > 0 && options == nullptr) return InvalidArgument("init: options is NULL");
    Global& g = G();
    std::lock_guard<std::mutex> lock(g.mu);
    g.cache_dir.clear();  // the latest init's options apply (to devices opened afterwards)
    for (size_t i = 0; i < n_options; ++i) {
      const char* key = options[i].key ? options[i].key : "";
      const char* value = options[i].value ? options[i].value : "";
      if (std::strcmp(key, "cache_dir") == 0) {
        g.cache_dir = value;
      } else {
        Log(KESTREL_PLUGIN_LOG_DEBUG, StrCat("opencl: ignoring option '", key, "'"));
      }
    }
    ++g.init_count;
    return Status();
  }

  static void Shutdown() {
    Global& g = G();
    std::lock_guard<std::mutex> lock(g.mu);
    if (g.ShutdownLocked()) g.cache_dir.clear();
  }

  static uint32_t DeviceCount(char* reason, size_t capacity) {
    return G().Count(reason, capacity, "opencl: device discovery failed", &DiscoverLocked);
  }

  static Status DeviceGetCaps(uint32_t index, kestrel_device_caps_t* caps) {
    if (caps == nullptr) return InvalidArgument("device_get_caps: caps is NULL");
    ClDeviceInfo info;
    RETURN_IF_ERROR(GetDeviceInfo(index, "device_get_caps", &info));
    DeviceCapsValues v;
    v.kind = (info.type & CL_DEVICE_TYPE_GPU)   ? KESTREL_DEVICE_KIND_GPU
             : (info.type & CL_DEVICE_TYPE_CPU) ? KESTREL_DEVICE_KIND_CPU
                                                : KESTREL_DEVICE_KIND_ACCELERATOR;
    v.name = StrCat("opencl:", index);
    v.description =
        StrCat(info.name, " (", info.platform_name, ", driver ", info.driver_version, ")");
    v.memory_bytes = info.global_mem;
    v.async = true;
    v.dtype_mask = kDtypes;
    v.weight_dtype_mask = kWeightDtypes;
    WriteDeviceCaps(v, caps);
    return Status();
  }

  static Status DeviceOpen(uint32_t index, kestrel_plugin_device_t** out) {
    if (out == nullptr) return InvalidArgument("device_open: out_device is NULL");
    auto dev = std::make_unique<Device>();
    dev->index = index;
    RETURN_IF_ERROR(GetDeviceInfo(index, "device_open", &dev->info));
    const ClDeviceInfo& info = dev->info;
    // The largest power of two <= min(64, CL_DEVICE_MAX_WORK_GROUP_SIZE).
    size_t wg = kPreferredWorkGroup;
    while (wg > 1 && wg > info.max_work_group) wg /= 2;
    dev->wg = wg;
    cl_int err = CL_SUCCESS;
    const cl_context_properties props[] = {
        CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(info.platform), 0};
    dev->context = clCreateContext(props, 1, &info.device, nullptr, nullptr, &err);
    KESTREL_CL_RETURN_IF_ERROR(err, StrCat("device_open: clCreateContext('", info.name, "')"));
    dev->queue = clCreateCommandQueue(dev->context, info.device, 0, &err);
    KESTREL_CL_RETURN_IF_ERROR(err, "device_open: clCreateCommandQueue");

    std::string options = StrCat("-cl-std=CL1.2 -DWG=", wg);
    if (info.correctly_rounded_sqrt) options += " -cl-fp32-correctly-rounded-divide-sqrt";
    std::string cache_dir;
    {
      std::lock_guard<std::mutex> lock(G().mu);
      cache_dir = G().cache_dir;
    }
    if (cache_dir.empty()) cache_dir = DefaultCacheDir();
    bool from_cache = false;
    RETURN_IF_ERROR(BuildProgram(
        dev->context, info, KernelSourceText(), options, cache_dir,
        [](bool warning, const std::string& m) {
          Log(warning ? KESTREL_PLUGIN_LOG_WARNING : KESTREL_PLUGIN_LOG_DEBUG, m);
        },
        &dev->program, &from_cache));
    for (int k = 0; k < kNumKernels; ++k) {
      dev->kernels[k] = clCreateKernel(dev->program, kKernelNames[k], &err);
      KESTREL_CL_RETURN_IF_ERROR(err, StrCat("device_open: clCreateKernel(", kKernelNames[k], ")"));
      size_t max_wg = 0;
      clGetKernelWorkGroupInfo(dev->kernels[k], info.device, CL_KERNEL_WORK_GROUP_SIZE,
                               sizeof max_wg, &max_wg, nullptr);
      if (max_wg != 0 && max_wg < wg) {
        return FailedPrecondition("device_open: kernel ", kKernelNames[k], " runs at most ", max_wg,
                                  " work-items per group on '", info.name, "', the plugin needs ",
                                  wg);
      }
    }
    Log(KESTREL_PLUGIN_LOG_INFO,
        StrCat("opencl: opened opencl:", index, " '", info.name, "' (", info.version,
               "), work-group ", wg, ", kernels ", from_cache ? "from the cache" : "compiled"));
    *out = reinterpret_cast<kestrel_plugin_device_t*>(dev.release());
    return Status();
  }

  static Status BufferAlloc(kestrel_plugin_device_t* d, uint64_t size, uint32_t /*flags*/,
                            kestrel_plugin_buffer_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_alloc"));
    if (out == nullptr) return InvalidArgument("buffer_alloc: out_buffer is NULL");
    auto b = std::make_unique<Buffer>();
    b->device = AsDevice(d);
    b->size = size;
    RETURN_IF_ERROR(NewMem(*b->device, size, "buffer_alloc", &b->mem));
    *out = reinterpret_cast<kestrel_plugin_buffer_t*>(b.release());
    return Status();
  }

  static Status BufferWrite(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                            kestrel_plugin_buffer_t* dst, uint64_t off, const void* src,
                            uint64_t size) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_write"));
    RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_write: dst"));
    cl_command_queue q;
    RETURN_IF_ERROR(QueueOf(d, s, "buffer_write", &q));
    const Buffer* b = AsBuffer(dst);
    RETURN_IF_ERROR(CheckTransfer("buffer_write", off, size, b->size, src, "src"));
    if (size == 0) return Status();
    // With a stream: non-blocking (the host keeps src alive until it synchronises).
    KESTREL_CL_RETURN_IF_ERROR(clEnqueueWriteBuffer(q, b->mem, s == nullptr ? CL_TRUE : CL_FALSE,
                                                    off, size, src, 0, nullptr, nullptr),
                               "buffer_write: clEnqueueWriteBuffer");
    return Status();
  }

  static Status BufferRead(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                           kestrel_plugin_buffer_t* src, uint64_t off, void* dst, uint64_t size) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_read"));
    RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_read: src"));
    cl_command_queue q;
    RETURN_IF_ERROR(QueueOf(d, s, "buffer_read", &q));
    const Buffer* b = AsBuffer(src);
    RETURN_IF_ERROR(CheckTransfer("buffer_read", off, size, b->size, dst, "dst"));
    if (size == 0) return Status();
    KESTREL_CL_RETURN_IF_ERROR(clEnqueueReadBuffer(q, b->mem, s == nullptr ? CL_TRUE : CL_FALSE,
                                                   off, size, dst, 0, nullptr, nullptr),
                               "buffer_read: clEnqueueReadBuffer");
    return Status();
  }

  static Status BufferCopy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                           kestrel_plugin_buffer_t* src, uint64_t src_off,
                           kestrel_plugin_buffer_t* dst, uint64_t dst_off, uint64_t size) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_copy"));
    RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_copy: src"));
    RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_copy: dst"));
    cl_command_queue q;
    RETURN_IF_ERROR(QueueOf(d, s, "buffer_copy", &q));
    const Buffer* a = AsBuffer(src);
    const Buffer* b = AsBuffer(dst);
    RETURN_IF_ERROR(CheckCopy(size, src_off, a->size, dst_off, b->size));
    if (size == 0) return Status();
    KESTREL_CL_RETURN_IF_ERROR(
        clEnqueueCopyBuffer(q, a->mem, b->mem, src_off, dst_off, size, 0, nullptr, nullptr),
        "buffer_copy: clEnqueueCopyBuffer");
    if (s == nullptr) KESTREL_CL_RETURN_IF_ERROR(clFinish(q), "buffer_copy: clFinish");
    return Status();
  }

  static Status StreamCreate(kestrel_plugin_device_t* d, kestrel_plugin_stream_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "stream_create"));
    if (out == nullptr) return InvalidArgument("stream_create: out_stream is NULL");
    Device* dev = AsDevice(d);
    auto s = std::make_unique<Stream>();
    s->device = dev;
    cl_int err = CL_SUCCESS;
    s->queue = clCreateCommandQueue(dev->context, dev->info.device, 0, &err);  // in-order
    KESTREL_CL_RETURN_IF_ERROR(err, "stream_create: clCreateCommandQueue");
    *out = reinterpret_cast<kestrel_plugin_stream_t*>(s.release());
    return Status();
  }

  static Status StreamSynchronize(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s) {
    RETURN_IF_ERROR(CheckDevice(d, "stream_synchronize"));
    cl_command_queue q;
    RETURN_IF_ERROR(QueueOf(d, s, "stream_synchronize", &q));
    KESTREL_CL_RETURN_IF_ERROR(clFinish(q), "stream_synchronize: clFinish");
    return Status();
  }

  static Status EventRecord(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                            kestrel_plugin_event_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "event_record"));
    if (out == nullptr) return InvalidArgument("event_record: out_event is NULL");
    cl_command_queue q;
    RETURN_IF_ERROR(QueueOf(d, s, "event_record", &q));
    auto e = std::make_unique<Event>();
    e->device = AsDevice(d);
    KESTREL_CL_RETURN_IF_ERROR(clEnqueueMarkerWithWaitList(q, 0, nullptr, &e->event),
                               "event_record: clEnqueueMarkerWithWaitList");
    clFlush(q);  // so that another queue waiting on the marker cannot wait forever
    *out = reinterpret_cast<kestrel_plugin_event_t*>(e.release());
    return Status();
  }

  static Status StreamWaitEvent(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                kestrel_plugin_event_t* e) {
    RETURN_IF_ERROR(CheckDevice(d, "stream_wait_event"));
    RETURN_IF_ERROR(CheckEvent(d, e, "stream_wait_event"));
    cl_command_queue q;
    RETURN_IF_ERROR(QueueOf(d, s, "stream_wait_event", &q));
    KESTREL_CL_RETURN_IF_ERROR(clEnqueueBarrierWithWaitList(q, 1, &AsEvent(e)->event, nullptr),
                               "stream_wait_event: clEnqueueBarrierWithWaitList");
    if (s == nullptr) KESTREL_CL_RETURN_IF_ERROR(clFinish(q), "stream_wait_event: clFinish");
    return Status();
  }

  static Status EventSynchronize(kestrel_plugin_device_t* d, kestrel_plugin_event_t* e) {
    RETURN_IF_ERROR(CheckDevice(d, "event_synchronize"));
    RETURN_IF_ERROR(CheckEvent(d, e, "event_synchronize"));
    KESTREL_CL_RETURN_IF_ERROR(clWaitForEvents(1, &AsEvent(e)->event),
                               "event_synchronize: clWaitForEvents");
    return Status();
  }

  static Status WeightPrepare(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* desc,
                              const void* host_data, uint64_t size, kestrel_plugin_weight_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "weight_prepare"));
    uint64_t needed = 0;
    RETURN_IF_ERROR(CheckWeightPrepare(desc, host_data, size, out, &needed));
    Device* dev = AsDevice(d);
    auto w = std::make_unique<Weight>();
    w->device = dev;
    w->desc = *desc;
    w->desc.struct_size = sizeof(kestrel_tensor_desc_t);
    std::memset(w->desc.strides, 0, sizeof w->desc.strides);
    const uint8_t* src = static_cast<const uint8_t*>(host_data);
    const uint64_t elems = needed / plugin_sdk::DtypeBlockBytes(desc->dtype) *
                           static_cast<uint64_t>(plugin_sdk::DtypeBlockElements(desc->dtype));
    // Host-side repack into the kernel layout, then one blocking upload per array.
    std::vector<uint8_t> data;
    std::vector<float> scales;
    switch (desc->dtype) {
      case KESTREL_DTYPE_F32:
      case KESTREL_DTYPE_F16:
        w->format = desc->dtype == KESTREL_DTYPE_F32 ? WFormat::kF32 : WFormat::kF16;
        data.assign(src, src + needed);
        break;
      case KESTREL_DTYPE_BF16: {
        w->format = WFormat::kF32;
        data.resize(elems * 4);
        for (uint64_t i = 0; i < elems; ++i) {
          uint16_t h;
          std::memcpy(&h, src + 2 * i, 2);
          const float f = plugin_sdk::Bf16ToFloat(h);
          std::memcpy(data.data() + 4 * i, &f, 4);
        }
        break;
      }
      case KESTREL_DTYPE_Q8_0:
      case KESTREL_DTYPE_Q4_0: {
        const bool q8 = desc->dtype == KESTREL_DTYPE_Q8_0;
        const uint64_t blocks = elems / 32, block_bytes = q8 ? 34 : 18, qbytes = q8 ? 32 : 16;
        w->format = q8 ? WFormat::kQ8 : WFormat::kQ4;
        scales.resize(blocks);
        data.resize(blocks * qbytes);
        for (uint64_t b = 0; b < blocks; ++b) {
          uint16_t h;
          std::memcpy(&h, src + b * block_bytes, 2);
          scales[b] = plugin_sdk::HalfToFloat(h);
          std::memcpy(data.data() + b * qbytes, src + b * block_bytes + 2, qbytes);
        }
        break;
      }
      default:
        return Unimplemented("weight_prepare: dtype ", DtypeName(desc->dtype));
    }
    RETURN_IF_ERROR(NewMem(*dev, data.size(), "weight_prepare", &w->data));
    if (!data.empty()) {
      KESTREL_CL_RETURN_IF_ERROR(clEnqueueWriteBuffer(dev->queue, w->data, CL_TRUE, 0, data.size(),
                                                      data.data(), 0, nullptr, nullptr),
                                 "weight_prepare: clEnqueueWriteBuffer");
    }
    if (w->format == WFormat::kQ8 || w->format == WFormat::kQ4) {
      RETURN_IF_ERROR(NewMem(*dev, scales.size() * 4, "weight_prepare (scales)", &w->scales));
      if (!scales.empty()) {
        KESTREL_CL_RETURN_IF_ERROR(
            clEnqueueWriteBuffer(dev->queue, w->scales, CL_TRUE, 0, scales.size() * 4,
                                 scales.data(), 0, nullptr, nullptr),
            "weight_prepare: clEnqueueWriteBuffer(scales)");
      }
    }
    *out = reinterpret_cast<kestrel_plugin_weight_t*>(w.release());
    return Status();
  }

  static Status OpQuery(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
                        kestrel_op_support_t* out) {
    RETURN_IF_ERROR(CheckDevice(d, "op_query"));
    return QueryOp(Host(), "opencl", op, out, &IsOpenClKind,
                   [&] { return ExtraUnsupported(*AsDevice(d), *op); });
  }

  static Status OpExecute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                          const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* /*workspace*/) {
    RETURN_IF_ERROR(CheckDevice(d, "op_execute"));
    if (op == nullptr) return InvalidArgument("op_execute: op is NULL");
    cl_command_queue q;
    RETURN_IF_ERROR(QueueOf(d, s, "op_execute", &q));
    const Device& dev = *AsDevice(d);
    std::string name;
    std::vector<Arg> in, out;
    RETURN_IF_ERROR(PrepareOp(
        "opencl", *op, &IsOpenClKind, [&] { return ExtraUnsupported(dev, *op); },
        [&](const kestrel_tensor_arg_t& a, const std::string& label, bool writable, Arg* arg) {
          return ResolveArg(d, a, label, writable, arg);
        },
        &name, &in, &out));
    RETURN_IF_ERROR(RunOp(dev, q, *op, in, out));
    if (s == nullptr) KESTREL_CL_RETURN_IF_ERROR(clFinish(q), StrCat(name, ": clFinish"));
    return Status();
  }

  // Frees an object the host hands back (accepts NULL).
  static void DeviceClose(kestrel_plugin_device_t* d) { delete AsDevice(d); }
  static void BufferFree(kestrel_plugin_device_t*, kestrel_plugin_buffer_t* b) {
    delete AsBuffer(b);
  }
  static void StreamDestroy(kestrel_plugin_device_t*, kestrel_plugin_stream_t* s) {
    Stream* stream = AsStream(s);
    if (stream != nullptr && stream->magic == kStreamMagic) delete stream;
  }
  static void EventDestroy(kestrel_plugin_device_t*, kestrel_plugin_event_t* e) {
    Event* event = AsEvent(e);
    if (event != nullptr && event->magic == kEventMagic) delete event;
  }
  static void WeightRelease(kestrel_plugin_device_t*, kestrel_plugin_weight_t* w) {
    delete AsWeight(w);
  }
};
// ---- the table ---------------------------------------------------------------------------------
const kestrel_plugin_api_t kTable = MakeDeviceTable<OpenClDevice>("opencl", "0.1.0");

}  // namespace
}  // namespace kestrel::plugins::opencl

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  using namespace kestrel::plugins::opencl;
  return kestrel::plugin_sdk::GetApi("opencl", &kTable, host, host_major, host_minor, out,
                                  [](const kestrel_host_api_t* h) { G().PushHost(h); });
}
