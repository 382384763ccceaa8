// The CUDA plugin ("cuda"): every op of a llama model (MOE excepted) on NVIDIA GPUs of compute
// capability 8.0 or newer, through the CUDA runtime (linked statically) and cuBLAS. Devices are
// named "cuda:0", "cuda:1", ... (the host maps the plugin name "cuda" to the first one).
//
// Owns: device discovery (device_count reports why there is none: no driver, no GPU, only GPUs
// older than sm_80), one internal stream + one cuBLAS handle per opened device, cudaMalloc'd
// buffers, streams (non-blocking cudaStream_t) and events, prepared weights (uploaded once; Q8_0 /
// Q4_0 repacked on the device into f16 scales + bare 16-byte-aligned quants, BF16 widened to F32)
// and the dispatch of op descriptors to the kernels of cuda_kernels.cu / cuda_attention.cu.
// Descriptor validation is the plugin SDK's (op_contract.h CheckOp, which ref uses too), so both plugins accept
// exactly the same descriptors. Index inputs (token ids, slots, block tables, query starts, kv
// lengths, parents, rows, pairs) are read back to the host (in stream order) and range-checked
// before any kernel uses them, so a bad index is a status and never an out-of-bounds access;
// that read is the one host synchronisation of those ops. Op temporaries come from the
// stream-ordered allocator (cudaMallocAsync / cudaFreeAsync). Every kernel launch is checked
// with cudaGetLastError and every C++ exception is caught at the slot boundary.
//
// Numerics (the f32-activation mode, the only one so far): activations f32; matmul weights
// F32/F16/Q8_0/Q4_0 (BF16 as F32); decode GEMV (T <= 8) accumulates in f32 in registers; prefill
// (T > 8) runs cublasSgemm in CUBLAS_PEDANTIC_MATH (no TF32) on the F32 weights, or on F32 tiles
// dequantised from the other formats.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

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
#include "cuda_kernels.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugins::cuda {
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
using plugin_sdk::Status;
using plugin_sdk::StrCat;
using plugin_sdk::TensorBytes;
using plugin_sdk::Unimplemented;

#define RETURN_IF_ERROR(expr) KESTREL_SDK_RETURN_IF_ERROR(expr)

constexpr uint32_t kDeviceMagic = 0x43554444;  // "CUDD"
constexpr uint32_t kBufferMagic = 0x43554442;  // "CUDB"
constexpr uint32_t kStreamMagic = 0x43554453;  // "CUDS"
constexpr uint32_t kEventMagic = 0x43554445;   // "CUDE"
constexpr uint32_t kWeightMagic = 0x43554457;  // "CUDW"
constexpr int kMinComputeMajor = 8;            // the plugin is built for sm_80 and sm_90
// Prefill matmul on non-F32 weights: rows dequantised per cuBLAS call (f32 tile of at most
// this many elements, 64 MiB).
constexpr int64_t kDequantTileElems = int64_t{16} << 20;

// ---- errors -------------------------------------------------------------------------------------
std::string CudaErrorText(cudaError_t err) {
  return StrCat(cudaGetErrorName(err), " (", static_cast<int>(err), "): ", cudaGetErrorString(err));
}

// OK for cudaSuccess, else RESOURCE_EXHAUSTED (allocation failures) or INTERNAL naming `what`.
Status CudaStatus(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return Status();
  const kestrel_plugin_status_code_t code = err == cudaErrorMemoryAllocation
                                                ? KESTREL_PLUGIN_RESOURCE_EXHAUSTED
                                                : KESTREL_PLUGIN_INTERNAL;
  return Status(code, StrCat(what, ": ", CudaErrorText(err)));
}

#define RETURN_IF_CUDA_ERROR(expr, what)                       \
  do {                                                         \
    const cudaError_t kestrel_cuda_err_ = (expr);              \
    if (kestrel_cuda_err_ != cudaSuccess) {                    \
      return CudaStatus(kestrel_cuda_err_, what);              \
    }                                                          \
  } while (0)

Status CublasStatus(cublasStatus_t st, const std::string& what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status();
  const kestrel_plugin_status_code_t code = st == CUBLAS_STATUS_ALLOC_FAILED
                                                ? KESTREL_PLUGIN_RESOURCE_EXHAUSTED
                                                : KESTREL_PLUGIN_INTERNAL;
  return Status(code, StrCat(what, ": ", cublasGetStatusName(st), " (", static_cast<int>(st),
                             "): ", cublasGetStatusString(st)));
}

// ---- plugin-wide state ------------------------------------------------------------------------
struct DeviceInfo {
  int ordinal = 0;  // CUDA device ordinal (devices older than sm_80 are skipped, so it may differ
                    // from the plugin's index)
  std::string name;
  int major = 0, minor = 0;
  int sm_count = 0;
  uint64_t memory = 0;
  bool memory_pools = false;
};

using Global = DiscoveredDevices<DeviceInfo>;  // device_table.h
Global& G() {
  static Global* g = new Global;  // never destroyed: slots may run during static destruction
  return *g;
}

void Log(kestrel_plugin_log_level_t level, const std::string& message) {
  G().host.Log(level, message);
}

// Discovers the devices once (under G().mu). Without a driver cudaGetDeviceCount fails and leaves
// its output untouched, hence the initialised count; the error is cleared so that it does not
// surface from a later, unrelated cudaGetLastError.
void DiscoverLocked() {
  Global& g = G();
  if (g.discovered) return;
  g.discovered = true;
  g.devices.clear();
  g.no_device_reason.clear();
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    g.no_device_reason = StrCat("no usable CUDA driver or GPU: cudaGetDeviceCount returned ",
                                CudaErrorText(err));
    return;
  }
  if (count <= 0) {
    g.no_device_reason = "no CUDA device: cudaGetDeviceCount found 0 devices";
    return;
  }
  std::string skipped;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    std::memset(&prop, 0, sizeof prop);
    const cudaError_t e = cudaGetDeviceProperties(&prop, i);
    if (e != cudaSuccess) {
      cudaGetLastError();
      skipped += StrCat(skipped.empty() ? "" : "; ", "CUDA device ", i,
                        ": cudaGetDeviceProperties returned ", CudaErrorText(e));
      continue;
    }
    if (prop.major < kMinComputeMajor) {
      skipped += StrCat(skipped.empty() ? "" : "; ", "CUDA device ", i, " '", prop.name,
                        "' is sm_", prop.major, prop.minor,
                        ", older than sm_80 (the plugin is built for sm_80 and sm_90)");
      continue;
    }
    DeviceInfo info;
    info.ordinal = i;
    info.name = prop.name;
    info.major = prop.major;
    info.minor = prop.minor;
    info.sm_count = prop.multiProcessorCount;
    info.memory = prop.totalGlobalMem;
    int pools = 0;
    if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, i) != cudaSuccess) {
      cudaGetLastError();
      pools = 0;
    }
    info.memory_pools = pools != 0;
    g.devices.push_back(std::move(info));
  }
  if (g.devices.empty()) {
    g.no_device_reason = StrCat("no usable CUDA device: ", skipped);
  } else if (!skipped.empty()) {
    Log(KESTREL_PLUGIN_LOG_INFO, StrCat("cuda: skipped ", skipped));
  }
}

// ---- objects ------------------------------------------------------------------------------------
struct Device {
  uint32_t magic = kDeviceMagic;
  uint32_t index = 0;
  DeviceInfo info;
  cudaStream_t stream = nullptr;  // used for NULL streams (synchronous calls)
  cublasHandle_t blas = nullptr;
  ~Device() {
    cudaSetDevice(info.ordinal);
    if (stream != nullptr) cudaStreamSynchronize(stream);
    if (blas != nullptr) cublasDestroy(blas);
    if (stream != nullptr) cudaStreamDestroy(stream);
    cudaGetLastError();
  }
};

struct Buffer {
  uint32_t magic = kBufferMagic;
  Device* device = nullptr;
  uint8_t* ptr = nullptr;
  uint64_t size = 0;
  ~Buffer() {
    if (ptr != nullptr) {
      cudaSetDevice(device->info.ordinal);
      cudaFree(ptr);
      cudaGetLastError();
    }
  }
};

struct Stream {
  uint32_t magic = kStreamMagic;
  Device* device = nullptr;
  cudaStream_t stream = nullptr;
  ~Stream() {
    if (stream != nullptr) {
      cudaSetDevice(device->info.ordinal);
      cudaStreamSynchronize(stream);
      cudaStreamDestroy(stream);
      cudaGetLastError();
    }
  }
};

struct Event {
  uint32_t magic = kEventMagic;
  Device* device = nullptr;
  cudaEvent_t event = nullptr;
  ~Event() {
    if (event != nullptr) {
      cudaSetDevice(device->info.ordinal);
      cudaEventDestroy(event);
      cudaGetLastError();
    }
  }
};

struct Weight {
  uint32_t magic = kWeightMagic;
  Device* device = nullptr;
  kestrel_tensor_desc_t desc{};
  WFormat format = WFormat::kF32;
  void* data = nullptr;
  uint16_t* scales = nullptr;  // kQ8 / kQ4
  ~Weight() {
    cudaSetDevice(device->info.ordinal);
    if (data != nullptr) cudaFree(data);
    if (scales != nullptr) cudaFree(scales);
    cudaGetLastError();
  }
};

// A stream-ordered temporary: allocated on `stream`, freed on it when it goes out of scope (after
// the work enqueued before the free has used it).
class TempMem {
 public:
  TempMem() = default;
  TempMem(const TempMem&) = delete;
  TempMem& operator=(const TempMem&) = delete;
  ~TempMem() {
    if (ptr_ != nullptr) {
      cudaFreeAsync(ptr_, stream_);
      cudaGetLastError();
    }
  }
  Status Alloc(uint64_t bytes, cudaStream_t stream, const std::string& what) {
    stream_ = stream;
    RETURN_IF_CUDA_ERROR(cudaMallocAsync(&ptr_, std::max<uint64_t>(bytes, 1), stream),
                         StrCat(what, ": cudaMallocAsync(", bytes, " bytes)"));
    return Status();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

Device* AsDevice(kestrel_plugin_device_t* d) { return reinterpret_cast<Device*>(d); }
Buffer* AsBuffer(kestrel_plugin_buffer_t* b) { return reinterpret_cast<Buffer*>(b); }
Stream* AsStream(kestrel_plugin_stream_t* s) { return reinterpret_cast<Stream*>(s); }
Event* AsEvent(kestrel_plugin_event_t* e) { return reinterpret_cast<Event*>(e); }
Weight* AsWeight(kestrel_plugin_weight_t* w) { return reinterpret_cast<Weight*>(w); }

// Checks the device handle and makes its GPU current on this thread (the current device is
// per host thread, and the host may call from any thread).
Status UseDevice(kestrel_plugin_device_t* d, const char* slot) {
  RETURN_IF_ERROR(plugin_sdk::CheckDevice(AsDevice(d), kDeviceMagic, "cuda", slot));
  RETURN_IF_CUDA_ERROR(cudaSetDevice(AsDevice(d)->info.ordinal), StrCat(slot, ": cudaSetDevice"));
  return Status();
}

Status CheckBuffer(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b, const std::string& what) {
  return plugin_sdk::CheckBuffer(AsBuffer(b), kBufferMagic, AsDevice(d), what);
}

// The CUDA stream of `s`; NULL is the device's internal stream, which the caller synchronises
// before returning (`*sync`).
Status StreamOf(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s, const char* slot,
                cudaStream_t* out, bool* sync) {
  if (s == nullptr) {
    *out = AsDevice(d)->stream;
    *sync = true;
    return Status();
  }
  RETURN_IF_ERROR(plugin_sdk::CheckStream(AsStream(s), kStreamMagic, AsDevice(d), slot));
  *out = AsStream(s)->stream;
  *sync = false;
  return Status();
}

Status SyncIf(bool sync, cudaStream_t stream, const std::string& what) {
  if (sync) RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream), StrCat(what, ": cudaStreamSynchronize"));
  return Status();
}

// ---- tensor arguments ---------------------------------------------------------------------------
struct Arg {
  uint8_t* ptr = nullptr;  // device address of the tensor's first byte
  const Weight* weight = nullptr;
  float* f32() const { return reinterpret_cast<float*>(ptr); }
  const int32_t* i32() const { return reinterpret_cast<const int32_t*>(ptr); }
};

Status ResolveArg(kestrel_plugin_device_t* d, const kestrel_tensor_arg_t& a,
                  const std::string& label, bool writable, Arg* out) {
  const Weight* w = nullptr;
  const Buffer* b = nullptr;
  RETURN_IF_ERROR(plugin_sdk::CheckTensorArg(AsDevice(d), a, label, writable, kWeightMagic,
                                          kBufferMagic, &w, &b));
  // Matmul/embedding read the weight's own layout (MakeWeightView); any other input (an
  // RMSNorm weight) has an F32 desc, so the data is that tensor as it is.
  out->weight = w;
  out->ptr = w != nullptr ? static_cast<uint8_t*>(w->data) : b->ptr + a.offset;
  return Status();
}

// Reads `n` int32 of an index argument to the host (in stream order; blocks until they arrive).
Status ReadInts(cudaStream_t stream, const Arg& a, uint64_t n, const std::string& what,
                std::vector<int32_t>* out) {
  out->assign(static_cast<size_t>(n), 0);
  if (n == 0) return Status();
  RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(out->data(), a.ptr, n * sizeof(int32_t),
                                       cudaMemcpyDeviceToHost, stream),
                       StrCat("cudaMemcpyAsync(", what, " to the host)"));
  RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream),
                       StrCat("cudaStreamSynchronize(", what, " to the host)"));
  return Status();
}

// Checks a kernel launch: `op` and `kernel` name it in the status.
Status Launched(cudaError_t err, const std::string& op, const char* kernel) {
  if (err == cudaSuccess) return Status();
  return CudaStatus(err, StrCat(op, ": kernel ", kernel));
}

// A matmul/embedding weight in one of the kernel layouts: a prepared weight as it is, a buffer
// F32/F16 in place, a buffer BF16/Q8_0/Q4_0 converted on the device into temporaries first.
struct WeightView {
  WeightPtrs ptrs;
  TempMem tmp_data, tmp_scales;
};

Status MakeWeightView(cudaStream_t stream, const std::string& op, const kestrel_tensor_desc_t& desc,
                      const Arg& a, WeightView* v) {
  if (a.weight != nullptr) {
    v->ptrs.format = a.weight->format;
    v->ptrs.data = a.weight->data;
    v->ptrs.scales = a.weight->scales;
    return Status();
  }
  const uint64_t elems = TensorBytes(desc) / plugin_sdk::DtypeBlockBytes(desc.dtype) *
                         static_cast<uint64_t>(plugin_sdk::DtypeBlockElements(desc.dtype));
  switch (desc.dtype) {
    case KESTREL_DTYPE_F32:
      v->ptrs = {WFormat::kF32, a.ptr, nullptr};
      return Status();
    case KESTREL_DTYPE_F16:
      v->ptrs = {WFormat::kF16, a.ptr, nullptr};
      return Status();
    case KESTREL_DTYPE_BF16:
      RETURN_IF_ERROR(v->tmp_data.Alloc(elems * 4, stream, StrCat(op, ": BF16 weight conversion")));
      v->ptrs = {WFormat::kF32, v->tmp_data.as<void>(), nullptr};
      return Launched(LaunchBf16ToF32(reinterpret_cast<const uint16_t*>(a.ptr),
                                      static_cast<int64_t>(elems), v->tmp_data.as<float>(), stream),
                      op, "bf16_to_f32");
    case KESTREL_DTYPE_Q8_0:
    case KESTREL_DTYPE_Q4_0: {
      const bool q8 = desc.dtype == KESTREL_DTYPE_Q8_0;
      const int64_t blocks = static_cast<int64_t>(elems / 32);
      RETURN_IF_ERROR(v->tmp_scales.Alloc(blocks * 2, stream, StrCat(op, ": weight repack")));
      RETURN_IF_ERROR(v->tmp_data.Alloc(blocks * (q8 ? 32 : 16), stream,
                                        StrCat(op, ": weight repack")));
      v->ptrs = {q8 ? WFormat::kQ8 : WFormat::kQ4, v->tmp_data.as<void>(),
                 v->tmp_scales.as<uint16_t>()};
      const cudaError_t err =
          q8 ? LaunchRepackQ8(a.ptr, blocks, v->tmp_scales.as<uint16_t>(),
                              v->tmp_data.as<uint8_t>(), stream)
             : LaunchRepackQ4(a.ptr, blocks, v->tmp_scales.as<uint16_t>(),
                              v->tmp_data.as<uint8_t>(), stream);
      return Launched(err, op, q8 ? "repack_q8" : "repack_q4");
    }
    default:
      return Unimplemented(op, ": weight dtype ", DtypeName(desc.dtype));
  }
}

// ---- ops ------------------------------------------------------------------------------------------
bool IsCudaKind(uint32_t kind) {
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

std::string ExtraUnsupported(const kestrel_op_desc_t& op) {
  // cuBLAS takes int dimensions; grids take at most 2^31 - 1 blocks.
  std::string large = LargeDimReason(op);
  if (!large.empty()) return large;
  // The version-2 forms (embedding scale, attention window) have no kernels tested on a GPU yet:
  // they run on the reference plugin.
  if (op.op_version > 1) return StrCat("op_version ", op.op_version, " is not implemented");
  // The 1.2 optional inputs have no CUDA kernels yet (untested without a GPU): the reference
  // plugin runs those ops.
  if (op.kind == KESTREL_OP_ROPE && op.n_inputs > 2) return "ROPE freq_factors input";
  if (op.kind == KESTREL_OP_MATMUL && op.n_inputs > 2) return "MATMUL bias input";
  std::string dtype = plugin_sdk::UnsupportedWeightDtypeReason(op, kWeightDtypes);
  if (!dtype.empty()) return dtype;
  if (op.kind == KESTREL_OP_PAGED_ATTENTION) {
    const kestrel_op_attention_params_t p = plugin_sdk::AttentionParamsOf(op);
    if (p.head_dim > kAttentionMaxHeadDim) {
      return StrCat("head_dim=", p.head_dim, " > ", kAttentionMaxHeadDim);
    }
    if (p.n_heads > 65535) return StrCat("n_heads=", p.n_heads, " > 65535");
  }
  return "";
}

Status RunEmbedding(cudaStream_t stream, const kestrel_op_desc_t& op, const std::vector<Arg>& in,
                    const Arg& out) {
  const kestrel_tensor_desc_t& table = op.inputs[0].desc;
  const int64_t vocab = table.dims[0], dim = table.dims[1];
  const int64_t n = op.inputs[1].desc.dims[0];
  std::vector<int32_t> ids;
  RETURN_IF_ERROR(ReadInts(stream, in[1], n, "EMBEDDING_GATHER ids", &ids));
  for (int64_t t = 0; t < n; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return OutOfRange("EMBEDDING_GATHER: ids[", t, "]=", ids[t], " is outside [0, ", vocab, ")");
    }
  }
  if (n == 0 || dim == 0) return Status();
  WeightView w;
  RETURN_IF_ERROR(MakeWeightView(stream, "EMBEDDING_GATHER", table, in[0], &w));
  return Launched(LaunchEmbedding(w.ptrs, dim, in[1].i32(), n, out.f32(), stream),
                  "EMBEDDING_GATHER", "embedding");
}

// out [T, N] = x [T, K] w [N, K]^T. Decode-sized T: the GEMV kernel; otherwise cuBLAS SGEMM (in
// column-major terms out^T = w^T' x^T: op(A) = A^T with A = w as K x N, B = x as K x T).
Status Matmul(const Device& d, cudaStream_t stream, const std::string& op, const float* x,
              int64_t t, int64_t k, const WeightPtrs& w, int64_t n, float* out) {
  if (t == 0 || n == 0) return Status();
  if (k == 0) {  // an empty dot product: zeros
    RETURN_IF_CUDA_ERROR(cudaMemsetAsync(out, 0, static_cast<size_t>(t * n) * sizeof(float), stream),
                         StrCat(op, ": cudaMemsetAsync"));
    return Status();
  }
  if (t <= kGemvMaxTokens) {
    return Launched(LaunchGemv(x, t, k, w, n, out, stream), op, "gemv");
  }
  const float alpha = 1.0f, beta = 0.0f;
  RETURN_IF_ERROR(CublasStatus(cublasSetStream(d.blas, stream), StrCat(op, ": cublasSetStream")));
  if (w.format == WFormat::kF32) {
    return CublasStatus(
        cublasSgemm(d.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(t),
                    static_cast<int>(k), &alpha, static_cast<const float*>(w.data),
                    static_cast<int>(k), x, static_cast<int>(k), &beta, out, static_cast<int>(n)),
        StrCat(op, ": cublasSgemm"));
  }
  // Other formats: dequantise row chunks of w to an f32 tile, one SGEMM per chunk writing the
  // chunk's columns of out (ldc = N).
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, kDequantTileElems / k));
  TempMem tile;
  RETURN_IF_ERROR(tile.Alloc(static_cast<uint64_t>(chunk * k) * sizeof(float), stream,
                             StrCat(op, ": dequantised weight tile")));
  for (int64_t n0 = 0; n0 < n; n0 += chunk) {
    const int64_t rows = std::min(chunk, n - n0);
    RETURN_IF_ERROR(Launched(LaunchDequantRows(w, k, n0, rows, tile.as<float>(), stream), op,
                             "dequant_rows"));
    RETURN_IF_ERROR(CublasStatus(
        cublasSgemm(d.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(t),
                    static_cast<int>(k), &alpha, tile.as<float>(), static_cast<int>(k), x,
                    static_cast<int>(k), &beta, out + n0, static_cast<int>(n)),
        StrCat(op, ": cublasSgemm")));
  }
  return Status();
}

Status RunMatmul(const Device& d, cudaStream_t stream, const kestrel_op_desc_t& op,
                 const std::vector<Arg>& in, const Arg& out) {
  const kestrel_tensor_desc_t &x = op.inputs[0].desc, &w = op.inputs[1].desc;
  const int64_t t = x.dims[0], k = x.dims[1], n = w.dims[0];
  if (t == 0 || n == 0) return Status();
  // out may overlap x (the contract does not forbid it): read x from a copy then.
  const float* xp = in[0].f32();
  TempMem x_copy;
  const uint64_t x_bytes = TensorBytes(x), out_bytes = TensorBytes(op.outputs[0].desc);
  if (in[0].ptr < out.ptr + out_bytes && out.ptr < in[0].ptr + x_bytes) {
    RETURN_IF_ERROR(x_copy.Alloc(x_bytes, stream, "MATMUL: x copy"));
    RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(x_copy.as<void>(), in[0].ptr, x_bytes,
                                         cudaMemcpyDeviceToDevice, stream),
                         "MATMUL: cudaMemcpyAsync(x copy)");
    xp = x_copy.as<float>();
  }
  WeightView wv;
  RETURN_IF_ERROR(MakeWeightView(stream, "MATMUL", w, in[1], &wv));
  return Matmul(d, stream, "MATMUL", xp, t, k, wv.ptrs, n, out.f32());
}

Status RunLogits(const Device& d, cudaStream_t stream, const kestrel_op_desc_t& op,
                 const std::vector<Arg>& in, const Arg& out) {
  const kestrel_tensor_desc_t &x = op.inputs[0].desc, &w = op.inputs[1].desc;
  const int64_t t = x.dims[0], k = x.dims[1], n = w.dims[0];
  const int64_t n_rows = op.inputs[2].desc.dims[0];
  std::vector<int32_t> rows;
  RETURN_IF_ERROR(ReadInts(stream, in[2], n_rows, "LOGITS rows", &rows));
  for (int64_t r = 0; r < n_rows; ++r) {
    if (rows[r] < 0 || rows[r] >= t) {
      return OutOfRange("LOGITS: rows[", r, "]=", rows[r], " is outside [0, T=", t, ")");
    }
  }
  if (n_rows == 0 || n == 0) return Status();
  // The picked rows go to a temporary first (which also makes an overlap of x and out harmless).
  TempMem gathered;
  RETURN_IF_ERROR(gathered.Alloc(static_cast<uint64_t>(n_rows * k) * sizeof(float), stream,
                                 "LOGITS: gathered rows"));
  RETURN_IF_ERROR(Launched(LaunchGatherRows(in[0].f32(), k, in[2].i32(), n_rows,
                                            gathered.as<float>(), stream),
                           "LOGITS", "gather_rows"));
  WeightView wv;
  RETURN_IF_ERROR(MakeWeightView(stream, "LOGITS", w, in[1], &wv));
  return Matmul(d, stream, "LOGITS", gathered.as<float>(), n_rows, k, wv.ptrs, n, out.f32());
}

Status RunKvWrite(cudaStream_t stream, const kestrel_op_desc_t& op, const std::vector<Arg>& in,
                  const std::vector<Arg>& out) {
  const kestrel_tensor_desc_t& kc = op.outputs[0].desc;
  const int64_t n = op.inputs[0].desc.dims[0];
  const int64_t n_slots = kc.dims[0] * kc.dims[1];
  std::vector<int32_t> slots;
  RETURN_IF_ERROR(ReadInts(stream, in[2], n, "KV_WRITE slots", &slots));
  for (int64_t t = 0; t < n; ++t) {
    if (slots[t] < 0 || slots[t] >= n_slots) {
      return OutOfRange("KV_WRITE: slots[", t, "]=", slots[t], " is outside [0, ", n_slots, ") (",
                        kc.dims[0], " blocks of ", kc.dims[1], ")");
    }
  }
  const int64_t row = kc.dims[2] * kc.dims[3];
  for (int c = 0; c < 2; ++c) {
    const bool f16 = op.outputs[c].desc.dtype == KESTREL_DTYPE_F16;
    RETURN_IF_ERROR(Launched(LaunchKvWrite(in[c].f32(), in[2].i32(), n, row, out[c].ptr, f16,
                                           stream),
                             "KV_WRITE", "kv_write"));
  }
  return Status();
}

Status RunKvBlockCopy(cudaStream_t stream, const kestrel_op_desc_t& op, const std::vector<Arg>& in,
                      const std::vector<Arg>& out) {
  const kestrel_tensor_desc_t& kc = op.outputs[0].desc;
  const int64_t n_pairs = op.inputs[0].desc.dims[0];
  std::vector<int32_t> pairs;
  RETURN_IF_ERROR(ReadInts(stream, in[0], 2 * n_pairs, "KV_BLOCK_COPY pairs", &pairs));
  for (int64_t p = 0; p < 2 * n_pairs; ++p) {
    if (pairs[p] < 0 || pairs[p] >= kc.dims[0]) {
      return OutOfRange("KV_BLOCK_COPY: pairs[", p / 2, "][", p % 2, "]=", pairs[p],
                        " is outside [0, ", kc.dims[0], ")");
    }
  }
  // One copy per pair and cache, in order on the stream (pairs may chain).
  for (int c = 0; c < 2; ++c) {
    const kestrel_tensor_desc_t& cd = op.outputs[c].desc;
    const uint64_t block_bytes =
        TensorBytes(cd) / static_cast<uint64_t>(std::max<int64_t>(cd.dims[0], 1));
    if (block_bytes == 0) continue;
    for (int64_t p = 0; p < n_pairs; ++p) {
      if (pairs[2 * p] == pairs[2 * p + 1]) continue;
      RETURN_IF_CUDA_ERROR(
          cudaMemcpyAsync(out[c].ptr + pairs[2 * p + 1] * block_bytes,
                          out[c].ptr + pairs[2 * p] * block_bytes, block_bytes,
                          cudaMemcpyDeviceToDevice, stream),
          "KV_BLOCK_COPY: cudaMemcpyAsync");
    }
  }
  return Status();
}

Status RunAttention(cudaStream_t stream, const kestrel_op_desc_t& op, const std::vector<Arg>& in,
                    const Arg& out) {
  const kestrel_op_attention_params_t p = plugin_sdk::AttentionParamsOf(op);
  const int64_t n_tokens = op.inputs[0].desc.dims[0];
  const kestrel_tensor_desc_t& kc = op.inputs[1].desc;
  const kestrel_tensor_desc_t& tables_desc = op.inputs[3].desc;
  const int64_t n_seqs = tables_desc.dims[0], max_blocks = tables_desc.dims[1];
  const int64_t block = kc.dims[1];
  const bool tree = p.tree_mask != 0;
  std::vector<int32_t> tables, starts, lens, parents;
  RETURN_IF_ERROR(ReadInts(stream, in[3], n_seqs * max_blocks, "block_tables", &tables));
  RETURN_IF_ERROR(ReadInts(stream, in[4], n_seqs + 1, "query_start", &starts));
  RETURN_IF_ERROR(ReadInts(stream, in[5], n_seqs, "kv_lens", &lens));
  if (tree) RETURN_IF_ERROR(ReadInts(stream, in[6], n_tokens, "parents", &parents));
  // The reference plugin's checks, in its order.
  if (starts[0] != 0) {
    return InvalidArgument("PAGED_ATTENTION: query_start[0]=", starts[0], " != 0");
  }
  if (starts[n_seqs] != n_tokens) {
    return InvalidArgument("PAGED_ATTENTION: query_start[", n_seqs, "]=", starts[n_seqs],
                           " != T=", n_tokens);
  }
  int64_t max_kv = 0, max_q = 0;
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
    for (int64_t b = 0; b < used; ++b) {
      const int32_t id = tables[s * max_blocks + b];
      if (id < 0 || id >= kc.dims[0]) {
        return OutOfRange("PAGED_ATTENTION: block_tables[", s, "][", b, "]=", id,
                          " is outside [0, ", kc.dims[0], ")");
      }
    }
    if (tree) {
      for (int64_t j = 0; j < q_len; ++j) {
        const int32_t parent = parents[starts[s] + j];
        if (parent < -1 || parent >= q_len || parent == j) {
          return OutOfRange("PAGED_ATTENTION: parents[", starts[s] + j, "]=", parent,
                            " is not -1 or another query of sequence ", s, " (q_len=", q_len, ")");
        }
      }
      for (int64_t j = 0; j < q_len; ++j) {  // every ancestor chain must reach a root
        int64_t node = j;
        for (int64_t steps = 0; node >= 0; ++steps) {
          if (steps > q_len) {
            return InvalidArgument("PAGED_ATTENTION: parents of sequence ", s,
                                   " contain a cycle through query ", j);
          }
          node = parents[starts[s] + node];
        }
      }
    }
    // Only sequences with queries are computed (and only their blocks are read).
    if (q_len > 0) {
      max_kv = std::max<int64_t>(max_kv, lens[s]);
      max_q = std::max(max_q, q_len);
    }
  }
  if (n_tokens == 0 || p.head_dim == 0 || p.n_heads == 0) return Status();

  AttentionArgs a;
  a.q = in[0].f32();
  a.k_cache = in[1].ptr;
  a.v_cache = in[2].ptr;
  a.k_f16 = kc.dtype == KESTREL_DTYPE_F16;
  a.v_f16 = op.inputs[2].desc.dtype == KESTREL_DTYPE_F16;
  a.block_tables = in[3].i32();
  a.query_start = in[4].i32();
  a.kv_lens = in[5].i32();
  a.parents = tree ? in[6].i32() : nullptr;
  a.out = out.f32();
  a.n_seqs = n_seqs;
  a.max_blocks = max_blocks;
  a.n_heads = p.n_heads;
  a.n_kv_heads = p.n_kv_heads;
  a.head_dim = p.head_dim;
  a.block_size = block;
  a.causal = p.causal != 0;
  a.scale = p.scale;

  // q and out may not alias (the contract says outputs never alias inputs unless stated).
  if (!tree && max_q <= 1 && DecodeFits(a)) {
    const DecodePlan plan = PlanDecode(a, max_kv);
    TempMem workspace;
    RETURN_IF_ERROR(workspace.Alloc(
        static_cast<uint64_t>(DecodeWorkspaceFloats(a, plan)) * sizeof(float), stream,
        "PAGED_ATTENTION: split-K workspace"));
    return Launched(LaunchAttentionDecode(a, plan, workspace.as<float>(), stream),
                    "PAGED_ATTENTION", "attention_decode");
  }
  // General path: tiles of up to bq queries of one sequence.
  const int64_t bq = PrefillTileQueries(p.head_dim);
  std::vector<int32_t> tiles;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t q_len = starts[s + 1] - starts[s];
    for (int64_t j0 = 0; j0 < q_len; j0 += bq) {
      tiles.push_back(static_cast<int32_t>(s));
      tiles.push_back(static_cast<int32_t>(j0));
    }
  }
  const int64_t n_tiles = static_cast<int64_t>(tiles.size() / 2);
  TempMem tiles_dev;
  RETURN_IF_ERROR(tiles_dev.Alloc(tiles.size() * sizeof(int32_t), stream,
                                  "PAGED_ATTENTION: tile list"));
  // From pageable memory: returns once `tiles` has been staged, so it may go out of scope.
  RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(tiles_dev.as<void>(), tiles.data(),
                                       tiles.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                                       stream),
                       "PAGED_ATTENTION: cudaMemcpyAsync(tile list)");
  return Launched(LaunchAttentionPrefill(a, tiles_dev.as<int32_t>(), n_tiles, stream),
                  "PAGED_ATTENTION", "attention_prefill");
}

Status RunOp(const Device& d, cudaStream_t stream, const kestrel_op_desc_t& op,
             const std::vector<Arg>& in, const std::vector<Arg>& out) {
  const kestrel_tensor_desc_t& d0 = op.inputs[0].desc;
  switch (op.kind) {
    case KESTREL_OP_EMBEDDING_GATHER:
      return RunEmbedding(stream, op, in, out[0]);
    case KESTREL_OP_RMSNORM: {
      kestrel_op_rmsnorm_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      return Launched(LaunchRmsNorm(in[0].f32(), in[1].f32(), out[0].f32(), d0.dims[0], d0.dims[1],
                                    p.eps, stream),
                      "RMSNORM", "rmsnorm");
    }
    case KESTREL_OP_ROPE: {
      kestrel_op_rope_params_t p;
      std::memcpy(&p, op.params, sizeof p);
      // The reference's expression, evaluated on the host the same way.
      const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
      return Launched(LaunchRope(in[0].f32(), in[1].i32(), out[0].f32(), d0.dims[0], d0.dims[1],
                                 d0.dims[2], p.n_rot, p.style == KESTREL_ROPE_STYLE_NEOX,
                                 theta_scale, p.freq_scale, stream),
                      "ROPE", "rope");
    }
    case KESTREL_OP_MATMUL:
      return RunMatmul(d, stream, op, in, out[0]);
    case KESTREL_OP_LOGITS:
      return RunLogits(d, stream, op, in, out[0]);
    case KESTREL_OP_SWIGLU:
      return Launched(LaunchSwiglu(in[0].f32(), in[1].f32(), out[0].f32(), d0.dims[0] * d0.dims[1],
                                   stream),
                      "SWIGLU", "swiglu");
    case KESTREL_OP_ADD:
      return Launched(LaunchAdd(in[0].f32(), in[1].f32(), out[0].f32(), d0.dims[0] * d0.dims[1],
                                stream),
                      "ADD", "add");
    case KESTREL_OP_KV_WRITE:
      return RunKvWrite(stream, op, in, out);
    case KESTREL_OP_KV_BLOCK_COPY:
      return RunKvBlockCopy(stream, op, in, out);
    case KESTREL_OP_PAGED_ATTENTION:
      return RunAttention(stream, op, in, out[0]);
    default:
      return Unimplemented(plugin_sdk::OpKindName(op.kind), ": not implemented by plugin 'cuda'");
  }
}

// ---- slots: the plugin table is MakeDeviceTable<CudaDevice> (kestrel/plugin_sdk/device_table.h) -----

Status GetDeviceInfo(uint32_t index, const char* slot, DeviceInfo* out) {
  return plugin_sdk::GetDeviceInfo(G(), index, slot, &DiscoverLocked, out);
}


Status CheckEvent(kestrel_plugin_device_t* d, kestrel_plugin_event_t* e, const char* slot) {
  return plugin_sdk::CheckEvent(AsEvent(e), kEventMagic, AsDevice(d), slot);
}

// Uploads a host tensor to a fresh device allocation (on the device's internal stream).
Status Upload(Device* dev, const void* src, uint64_t bytes, void** out, const char* what) {
  RETURN_IF_CUDA_ERROR(cudaMalloc(out, std::max<uint64_t>(bytes, 1)),
                       StrCat("weight_prepare: cudaMalloc(", bytes, " bytes, ", what, ")"));
  if (bytes > 0) {
    RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(*out, src, bytes, cudaMemcpyHostToDevice, dev->stream),
                         StrCat("weight_prepare: cudaMemcpyAsync(", what, ")"));
  }
  return Status();
}

// The plugin's slots, with the ABI's signatures; MakeDeviceTable wraps the fallible ones in Guard.
struct CudaDevice {
  static const HostRef& Host() { return G().host; }
  static Status Init(const kestrel_plugin_option_t* options, size_t n_options) {
    if (n_options > 0 && options == nullptr) return InvalidArgument("init: options is NULL");
    Global& g = G();
    std::lock_guard<std::mutex> lock(g.mu);
    for (size_t i = 0; i < n_options; ++i) {
      Log(KESTREL_PLUGIN_LOG_DEBUG,
          StrCat("cuda: ignoring option '", options[i].key ? options[i].key : "", "'"));
    }
    ++g.init_count;
    return Status();
  }

  static void Shutdown() {
    Global& g = G();
    std::lock_guard<std::mutex> lock(g.mu);
    g.ShutdownLocked();
  }

  static uint32_t DeviceCount(char* reason, size_t capacity) {
    return G().Count(reason, capacity, "cuda: CUDA device discovery failed", &DiscoverLocked);
  }

  static Status DeviceGetCaps(uint32_t index, kestrel_device_caps_t* caps) {
    if (caps == nullptr) return InvalidArgument("device_get_caps: caps is NULL");
    DeviceInfo info;
    RETURN_IF_ERROR(GetDeviceInfo(index, "device_get_caps", &info));
    DeviceCapsValues v;
    v.kind = KESTREL_DEVICE_KIND_GPU;
    v.name = StrCat("cuda:", index);
    v.description = StrCat(info.name, " (sm_", info.major, info.minor, ", ", info.sm_count,
                           " SMs, CUDA device ", info.ordinal, ")");
    v.memory_bytes = info.memory;
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
    const DeviceInfo& info = dev->info;
    if (!info.memory_pools) {
      return FailedPrecondition("device_open: CUDA device ", info.ordinal, " '", info.name,
                                "' does not support stream-ordered memory pools (cudaMallocAsync)");
    }
    RETURN_IF_CUDA_ERROR(cudaSetDevice(info.ordinal), "device_open: cudaSetDevice");
    RETURN_IF_CUDA_ERROR(cudaStreamCreateWithFlags(&dev->stream, cudaStreamNonBlocking),
                         "device_open: cudaStreamCreateWithFlags");
    RETURN_IF_ERROR(CublasStatus(cublasCreate(&dev->blas), "device_open: cublasCreate"));
    // The conformance (f32) mode: no TF32 or other reduced-precision shortcuts in SGEMM.
    RETURN_IF_ERROR(CublasStatus(cublasSetMathMode(dev->blas, CUBLAS_PEDANTIC_MATH),
                                 "device_open: cublasSetMathMode"));
    // Keep freed op temporaries in the pool instead of returning them to the driver at every
    // synchronisation.
    cudaMemPool_t pool = nullptr;
    RETURN_IF_CUDA_ERROR(cudaDeviceGetDefaultMemPool(&pool, info.ordinal),
                         "device_open: cudaDeviceGetDefaultMemPool");
    uint64_t threshold = UINT64_MAX;
    RETURN_IF_CUDA_ERROR(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
                         "device_open: cudaMemPoolSetAttribute");
    Log(KESTREL_PLUGIN_LOG_INFO, StrCat("cuda: opened cuda:", index, " '", info.name, "' (sm_",
                                        info.major, info.minor, ", ", info.memory >> 20, " MiB)"));
    *out = reinterpret_cast<kestrel_plugin_device_t*>(dev.release());
    return Status();
  }

  static Status BufferAlloc(kestrel_plugin_device_t* d, uint64_t size, uint32_t /*flags*/,
                            kestrel_plugin_buffer_t** out) {
    RETURN_IF_ERROR(UseDevice(d, "buffer_alloc"));
    if (out == nullptr) return InvalidArgument("buffer_alloc: out_buffer is NULL");
    auto b = std::make_unique<Buffer>();
    b->device = AsDevice(d);
    b->size = size;
    void* ptr = nullptr;
    RETURN_IF_CUDA_ERROR(cudaMalloc(&ptr, std::max<uint64_t>(size, 1)),
                         StrCat("buffer_alloc: cudaMalloc(", size, " bytes)"));
    b->ptr = static_cast<uint8_t*>(ptr);
    *out = reinterpret_cast<kestrel_plugin_buffer_t*>(b.release());
    return Status();
  }

  static Status BufferWrite(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                            kestrel_plugin_buffer_t* dst, uint64_t off, const void* src,
                            uint64_t size) {
    RETURN_IF_ERROR(UseDevice(d, "buffer_write"));
    RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_write: dst"));
    cudaStream_t stream;
    bool sync;
    RETURN_IF_ERROR(StreamOf(d, s, "buffer_write", &stream, &sync));
    const Buffer* b = AsBuffer(dst);
    RETURN_IF_ERROR(CheckTransfer("buffer_write", off, size, b->size, src, "src"));
    if (size == 0) return Status();
    RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(b->ptr + off, src, size, cudaMemcpyHostToDevice, stream),
                         "buffer_write: cudaMemcpyAsync");
    return SyncIf(sync, stream, "buffer_write");
  }

  static Status BufferRead(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                           kestrel_plugin_buffer_t* src, uint64_t off, void* dst, uint64_t size) {
    RETURN_IF_ERROR(UseDevice(d, "buffer_read"));
    RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_read: src"));
    cudaStream_t stream;
    bool sync;
    RETURN_IF_ERROR(StreamOf(d, s, "buffer_read", &stream, &sync));
    const Buffer* b = AsBuffer(src);
    RETURN_IF_ERROR(CheckTransfer("buffer_read", off, size, b->size, dst, "dst"));
    if (size == 0) return Status();
    RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(dst, b->ptr + off, size, cudaMemcpyDeviceToHost, stream),
                         "buffer_read: cudaMemcpyAsync");
    return SyncIf(sync, stream, "buffer_read");
  }

  static Status BufferCopy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                           kestrel_plugin_buffer_t* src, uint64_t src_off,
                           kestrel_plugin_buffer_t* dst, uint64_t dst_off, uint64_t size) {
    RETURN_IF_ERROR(UseDevice(d, "buffer_copy"));
    RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_copy: src"));
    RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_copy: dst"));
    cudaStream_t stream;
    bool sync;
    RETURN_IF_ERROR(StreamOf(d, s, "buffer_copy", &stream, &sync));
    const Buffer* a = AsBuffer(src);
    const Buffer* b = AsBuffer(dst);
    RETURN_IF_ERROR(CheckCopy(size, src_off, a->size, dst_off, b->size));
    if (size == 0) return Status();
    RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(b->ptr + dst_off, a->ptr + src_off, size,
                                         cudaMemcpyDeviceToDevice, stream),
                         "buffer_copy: cudaMemcpyAsync");
    return SyncIf(sync, stream, "buffer_copy");
  }

  static Status StreamCreate(kestrel_plugin_device_t* d, kestrel_plugin_stream_t** out) {
    RETURN_IF_ERROR(UseDevice(d, "stream_create"));
    if (out == nullptr) return InvalidArgument("stream_create: out_stream is NULL");
    auto s = std::make_unique<Stream>();
    s->device = AsDevice(d);
    RETURN_IF_CUDA_ERROR(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking),
                         "stream_create: cudaStreamCreateWithFlags");
    *out = reinterpret_cast<kestrel_plugin_stream_t*>(s.release());
    return Status();
  }

  static Status StreamSynchronize(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s) {
    RETURN_IF_ERROR(UseDevice(d, "stream_synchronize"));
    cudaStream_t stream;
    bool sync;
    RETURN_IF_ERROR(StreamOf(d, s, "stream_synchronize", &stream, &sync));
    RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream),
                         "stream_synchronize: cudaStreamSynchronize");
    return Status();
  }

  static Status EventRecord(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                            kestrel_plugin_event_t** out) {
    RETURN_IF_ERROR(UseDevice(d, "event_record"));
    if (out == nullptr) return InvalidArgument("event_record: out_event is NULL");
    cudaStream_t stream;
    bool sync;
    RETURN_IF_ERROR(StreamOf(d, s, "event_record", &stream, &sync));
    auto e = std::make_unique<Event>();
    e->device = AsDevice(d);
    RETURN_IF_CUDA_ERROR(cudaEventCreateWithFlags(&e->event, cudaEventDisableTiming),
                         "event_record: cudaEventCreateWithFlags");
    RETURN_IF_CUDA_ERROR(cudaEventRecord(e->event, stream), "event_record: cudaEventRecord");
    *out = reinterpret_cast<kestrel_plugin_event_t*>(e.release());
    return Status();
  }

  static Status StreamWaitEvent(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                kestrel_plugin_event_t* e) {
    RETURN_IF_ERROR(UseDevice(d, "stream_wait_event"));
    RETURN_IF_ERROR(CheckEvent(d, e, "stream_wait_event"));
    cudaStream_t stream;
    bool sync;
    RETURN_IF_ERROR(StreamOf(d, s, "stream_wait_event", &stream, &sync));
    RETURN_IF_CUDA_ERROR(cudaStreamWaitEvent(stream, AsEvent(e)->event, 0),
                         "stream_wait_event: cudaStreamWaitEvent");
    return SyncIf(sync, stream, "stream_wait_event");
  }

  static Status EventSynchronize(kestrel_plugin_device_t* d, kestrel_plugin_event_t* e) {
    RETURN_IF_ERROR(UseDevice(d, "event_synchronize"));
    RETURN_IF_ERROR(CheckEvent(d, e, "event_synchronize"));
    RETURN_IF_CUDA_ERROR(cudaEventSynchronize(AsEvent(e)->event),
                         "event_synchronize: cudaEventSynchronize");
    return Status();
  }

  static Status WeightPrepare(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* desc,
                              const void* host_data, uint64_t size, kestrel_plugin_weight_t** out) {
    RETURN_IF_ERROR(UseDevice(d, "weight_prepare"));
    uint64_t needed = 0;
    RETURN_IF_ERROR(CheckWeightPrepare(desc, host_data, size, out, &needed));
    Device* dev = AsDevice(d);
    auto w = std::make_unique<Weight>();
    w->device = dev;
    w->desc = *desc;
    w->desc.struct_size = sizeof(kestrel_tensor_desc_t);
    std::memset(w->desc.strides, 0, sizeof w->desc.strides);
    const uint64_t elems = needed / plugin_sdk::DtypeBlockBytes(desc->dtype) *
                           static_cast<uint64_t>(plugin_sdk::DtypeBlockElements(desc->dtype));
    // The GGUF bytes go up as they are; conversions run on the device (the same kernels as for a
    // weight passed in a plain buffer).
    void* raw = nullptr;
    switch (desc->dtype) {
      case KESTREL_DTYPE_F32:
      case KESTREL_DTYPE_F16:
        w->format = desc->dtype == KESTREL_DTYPE_F32 ? WFormat::kF32 : WFormat::kF16;
        RETURN_IF_ERROR(Upload(dev, host_data, needed, &w->data, "weights"));
        break;
      case KESTREL_DTYPE_BF16: {
        w->format = WFormat::kF32;
        RETURN_IF_ERROR(Upload(dev, host_data, needed, &raw, "BF16 weights"));
        Status st = CudaStatus(cudaMalloc(&w->data, std::max<uint64_t>(elems * 4, 1)),
                               "weight_prepare: cudaMalloc(F32 weights)");
        if (st.ok()) {
          st = Launched(LaunchBf16ToF32(static_cast<const uint16_t*>(raw),
                                        static_cast<int64_t>(elems), static_cast<float*>(w->data),
                                        dev->stream),
                        "weight_prepare", "bf16_to_f32");
        }
        if (st.ok()) st = CudaStatus(cudaStreamSynchronize(dev->stream), "weight_prepare: sync");
        cudaFree(raw);
        RETURN_IF_ERROR(st);
        break;
      }
      case KESTREL_DTYPE_Q8_0:
      case KESTREL_DTYPE_Q4_0: {
        const bool q8 = desc->dtype == KESTREL_DTYPE_Q8_0;
        const int64_t blocks = static_cast<int64_t>(elems / 32);
        w->format = q8 ? WFormat::kQ8 : WFormat::kQ4;
        RETURN_IF_ERROR(Upload(dev, host_data, needed, &raw, "GGUF blocks"));
        void* scales = nullptr;
        Status st = CudaStatus(cudaMalloc(&scales, std::max<int64_t>(blocks * 2, 1)),
                               "weight_prepare: cudaMalloc(scales)");
        w->scales = static_cast<uint16_t*>(scales);
        if (st.ok()) {
          st = CudaStatus(cudaMalloc(&w->data, std::max<int64_t>(blocks * (q8 ? 32 : 16), 1)),
                          "weight_prepare: cudaMalloc(quants)");
        }
        if (st.ok()) {
          const cudaError_t err =
              q8 ? LaunchRepackQ8(static_cast<const uint8_t*>(raw), blocks, w->scales,
                                  static_cast<uint8_t*>(w->data), dev->stream)
                 : LaunchRepackQ4(static_cast<const uint8_t*>(raw), blocks, w->scales,
                                  static_cast<uint8_t*>(w->data), dev->stream);
          st = Launched(err, "weight_prepare", q8 ? "repack_q8" : "repack_q4");
        }
        if (st.ok()) st = CudaStatus(cudaStreamSynchronize(dev->stream), "weight_prepare: sync");
        cudaFree(raw);
        RETURN_IF_ERROR(st);
        break;
      }
      default:
        return Unimplemented("weight_prepare: dtype ", DtypeName(desc->dtype));
    }
    RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(dev->stream),
                         "weight_prepare: cudaStreamSynchronize");
    *out = reinterpret_cast<kestrel_plugin_weight_t*>(w.release());
    return Status();
  }

  static Status OpQuery(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
                        kestrel_op_support_t* out) {
    const Device* device = AsDevice(d);
    if (device == nullptr || device->magic != kDeviceMagic) {
      return InvalidArgument("op_query: device is not a device of plugin 'cuda'");
    }
    return QueryOp(Host(), "cuda", op, out, &IsCudaKind, [&] { return ExtraUnsupported(*op); });
  }

  static Status OpExecute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                          const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* /*workspace*/) {
    RETURN_IF_ERROR(UseDevice(d, "op_execute"));
    if (op == nullptr) return InvalidArgument("op_execute: op is NULL");
    cudaStream_t stream;
    bool sync;
    RETURN_IF_ERROR(StreamOf(d, s, "op_execute", &stream, &sync));
    const Device& dev = *AsDevice(d);
    std::string name;
    std::vector<Arg> in, out;
    RETURN_IF_ERROR(PrepareOp(
        "cuda", *op, &IsCudaKind, [&] { return ExtraUnsupported(*op); },
        [&](const kestrel_tensor_arg_t& a, const std::string& label, bool writable, Arg* arg) {
          return ResolveArg(d, a, label, writable, arg);
        },
        &name, &in, &out));
    RETURN_IF_ERROR(RunOp(dev, stream, *op, in, out));
    // Synchronous call: wait, so that an asynchronous kernel fault is reported by this op.
    return SyncIf(sync, stream, name);
  }

  // Frees an object the host hands back (accepts NULL, ignores a handle that is not one of ours).
  static void DeviceClose(kestrel_plugin_device_t* d) {
    Device* device = AsDevice(d);
    if (device != nullptr && device->magic == kDeviceMagic) delete device;
  }
  static void BufferFree(kestrel_plugin_device_t*, kestrel_plugin_buffer_t* b) {
    Buffer* buffer = AsBuffer(b);
    if (buffer != nullptr && buffer->magic == kBufferMagic) delete buffer;
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
    Weight* weight = AsWeight(w);
    if (weight != nullptr && weight->magic == kWeightMagic) delete weight;
  }
};
// ---- the table ---------------------------------------------------------------------------------
const kestrel_plugin_api_t kTable = MakeDeviceTable<CudaDevice>("cuda", "0.1.0");

}  // namespace
}  // namespace kestrel::plugins::cuda

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  using namespace kestrel::plugins::cuda;
  return kestrel::plugin_sdk::GetApi("cuda", &kTable, host, host_major, host_minor, out,
                                  [](const kestrel_host_api_t* h) { G().PushHost(h); });
}
