// The fast CPU plugin ("cpu"): host-memory, synchronous device; the runtime's default device.
//
// The plugin table follows the SDK's host-memory plugin (plugin_sdk/src/host_plugin.cc) (64-byte aligned host buffers, buffer_map,
// NULL streams, exceptions caught at every slot), with three differences: weight_prepare repacks
// Q4_0/Q8_0 matrices (and each expert matrix of a rank-3 MOE weight) into the kernels' layout
// (packed_weight.h) and Q4_1/Q5_0/Q5_1/Q2_K..Q6_K matrices into the KQ layout (packed_kquant.h),
// op_execute runs the threaded SIMD kernels of cpu_ops.h (MOE: cpu_moe.h), and init /
// instance_create read the options below. Plugin instances (ABI 1.4): each runtime's instance
// has its own settings, thread pool and host (logs); the 1.1 slots use a default instance.
//
// Options (also environment variables, which the options override):
//   "threads" / KESTREL_CPU_THREADS  worker threads incl. the caller (default: hardware threads)
//   "isa"     / KESTREL_CPU_ISA      portable | avx2 | avx512 | vnni | amx | neon | dotprod |
//                                    best (default best; a level the CPU lacks is lowered to the
//                                    best it has, with a warning; amx = vnni + AMX-INT8 tiles for
//                                    prefill; neon, dotprod: aarch64)
//   "exact"   / KESTREL_CPU_EXACT    1: f32 activations for quantized weights (matches ref to
//                                    ~1e-6); 0 (default): 8-bit activations, like llama.cpp
//   "onednn"  / KESTREL_CPU_ONEDNN   0: never use oneDNN; 1 (default when built with it): F32
//                                    GEMMs of >= 32 tokens go to dnnl_sgemm
// Exports only kestrel_plugin_get_api (hal/plugin.map).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/device_checks.h"
#include "kestrel/plugin_sdk/device_table.h"
#include "kestrel/plugin_sdk/plugin_glue.h"
#include "cpu_features.h"
#include "cpu_ops.h"
#include "kernels.h"
#include "onednn_gemm.h"
#include "packed_kquant.h"
#include "packed_weight.h"
#include "thread_pool.h"
#include "weight_export.h"
#include "kestrel/plugin_sdk/host_plugin.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugins::cpu {
namespace {

using plugin_sdk::DeviceCapsValues;
using plugin_sdk::HostRef;
using plugin_sdk::MakeDeviceTable;
using plugin_sdk::WriteDeviceCaps;

using plugin_sdk::Internal;
using plugin_sdk::InvalidArgument;
using plugin_sdk::OutOfRange;
using plugin_sdk::ResourceExhausted;
using plugin_sdk::StrCat;
using plugin_sdk::Unimplemented;

constexpr const char* kPluginName = "cpu";
constexpr const char* kPluginVersion = "0.1.0";

constexpr uint32_t kDeviceMagic = 0x43444556;  // "CDEV"
constexpr uint32_t kBufferMagic = 0x43425546;  // "CBUF"
constexpr uint32_t kWeightMagic = 0x43575454;  // "CWTT"
constexpr uint32_t kInstanceMagic = 0x43494E53;  // "CINS"

struct Instance;

struct Device {
  uint32_t magic = kDeviceMagic;
  uint32_t index = 0;
  Instance* instance = nullptr;  // whose settings (threads, ISA, pool) and host it uses
  // device_get_counter: Q4_0/Q8_0 weights repacked by weight_prepare, weights taken from
  // exported bytes by weight_import.
  std::atomic<uint64_t> weights_repacked{0};
  std::atomic<uint64_t> weights_imported{0};
};

struct Buffer {
  uint32_t magic = kBufferMagic;
  Device* device = nullptr;
  AlignedBuffer bytes;
};

struct Weight {
  uint32_t magic = kWeightMagic;
  Device* device = nullptr;
  kestrel_tensor_desc_t desc{};  // packed (strides zeroed)
  AlignedBuffer raw;             // GGUF bytes (empty when repacked or borrowed)
  const void* raw_data = nullptr;  // raw.data(), or the borrowed bytes of weight_import
  std::unique_ptr<PackedQ> packed;
  std::unique_ptr<PackedK> kpacked;  // a repacked Q4_1/Q5_0/Q5_1/Q2_K..Q6_K matrix
  // A rank-3 Q4_0/Q8_0 weight (MOE experts): each [dims[1], dims[2]] slice repacked like a
  // matrix, and their views side by side (ArgData::n_packed).
  std::vector<std::unique_ptr<PackedQ>> slices;
  std::vector<QWeightView> slice_views;
};

Device* AsDevice(kestrel_plugin_device_t* d) { return reinterpret_cast<Device*>(d); }
Buffer* AsBuffer(kestrel_plugin_buffer_t* b) { return reinterpret_cast<Buffer*>(b); }
Weight* AsWeight(kestrel_plugin_weight_t* w) { return reinterpret_cast<Weight*>(w); }

// A stack of Q4_0/Q8_0 matrices [n, rows, cols] (MOE expert weights), repacked slice by slice.
bool IsRepackableStack(const kestrel_tensor_desc_t& desc) {
  return desc.rank == 3 && desc.dims[0] > 0 && desc.dims[1] > 0 && desc.dims[2] > 0 &&
         (desc.dtype == KESTREL_DTYPE_Q4_0 || desc.dtype == KESTREL_DTYPE_Q8_0);
}

bool InRange(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

bool SupportsKind(uint32_t kind) {
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
    case KESTREL_OP_MOE:
    case KESTREL_OP_GEGLU:
      return true;
    default:  // vendor kinds
      return false;
  }
}

// ---- global plugin state ---------------------------------------------------------------------
HostRef g_host;

struct State {
  int threads = 1;
  IsaLevel isa = IsaLevel::kPortable;
  bool exact = false;
  bool onednn = false;
  std::unique_ptr<ThreadPool> pool;
  std::string description;
  OpContext ctx() const {
    OpContext c;
    c.kernels = &GetKernels(isa);
    c.pool = pool.get();
    c.exact = exact;
    c.onednn = onednn;
    return c;
  }
};
// One instance of the plugin (ABI 1.4 instance_create; the 1.1 slots use the default one made by
// init): its host (logs, statuses) and its settings with their thread pool. Devices of different
// instances run on different pools with different settings.
struct Instance {
  uint32_t magic = kInstanceMagic;
  HostRef host;
  std::mutex mu;
  std::shared_ptr<State> state;  // replaced whole by device_set_options; ops hold their copy

  std::shared_ptr<State> Current() {
    std::lock_guard<std::mutex> lock(mu);
    return state;
  }
};

std::mutex g_default_mu;
Instance* g_default = nullptr;  // made by the first init, freed by the last shutdown
int g_init_count = 0;

Instance* AsInstance(kestrel_plugin_instance_t* i) {
  Instance* inst = reinterpret_cast<Instance*>(i);
  return inst != nullptr && inst->magic == kInstanceMagic ? inst : nullptr;
}

// The state of the instance that opened `d` (null before init).
std::shared_ptr<State> StateOf(kestrel_plugin_device_t* d) {
  return reinterpret_cast<Device*>(d)->instance->Current();
}



// ---- init ------------------------------------------------------------------------------------
bool ParsePositiveInt(const std::string& s, int* out) {
  if (s.empty() || s.size() > 6) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < 1) return false;
  *out = v;
  return true;
}


// ---- checks ----------------------------------------------------------------------------------
Status CheckDevice(kestrel_plugin_device_t* d, const char* slot) {
  const Device* device = AsDevice(d);
  if (device == nullptr) return InvalidArgument(slot, ": device is NULL");
  if (device->magic != kDeviceMagic) {
    return InvalidArgument(slot, ": device is not a device of plugin 'cpu'");
  }
  return Status();
}

Status CheckBuffer(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b, const char* slot,
                   const char* what) {
  const Buffer* buffer = AsBuffer(b);
  if (buffer == nullptr) return InvalidArgument(slot, ": ", what, " is NULL");
  if (buffer->magic != kBufferMagic || buffer->device != AsDevice(d)) {
    return InvalidArgument(slot, ": ", what, " is not a buffer of this device");
  }
  return Status();
}

Status CheckStream(kestrel_plugin_stream_t* stream, const char* slot) {
  if (stream != nullptr) {
    return InvalidArgument(slot, ": stream must be NULL (plugin 'cpu' is synchronous)");
  }
  return Status();
}

Status ResolveArg(kestrel_plugin_device_t* d, const kestrel_tensor_arg_t& arg, bool writable,
                  ArgData* out_in, void** out_ptr) {
  const kestrel_tensor_desc_t& desc = arg.desc;
  const uint64_t bytes = plugin_sdk::TensorBytes(desc);
  if ((arg.buffer == nullptr) == (arg.weight == nullptr)) {
    return InvalidArgument("exactly one of buffer and weight must be set");
  }
  if (arg.weight != nullptr) {
    if (writable) return InvalidArgument("a prepared weight cannot be an output");
    const Weight* w = AsWeight(arg.weight);
    if (w->magic != kWeightMagic || w->device != AsDevice(d)) {
      return InvalidArgument("weight is not a prepared weight of this device");
    }
    if (arg.offset != 0) return InvalidArgument("offset=", arg.offset, " with a weight");
    if (w->desc.dtype != desc.dtype || w->desc.rank != desc.rank ||
        !std::equal(desc.dims, desc.dims + desc.rank, w->desc.dims)) {
      return InvalidArgument("desc (", plugin_sdk::DtypeName(desc.dtype), ", rank ", desc.rank,
                             ") does not match the prepared weight's desc (",
                             plugin_sdk::DtypeName(w->desc.dtype), ", rank ", w->desc.rank,
                             ") or its dims differ");
    }
    if (w->kpacked) {
      out_in->kpacked = &w->kpacked->view;
      out_in->data = nullptr;
    } else if (w->packed) {
      out_in->packed = &w->packed->view;
      out_in->n_packed = 1;
      out_in->data = nullptr;
    } else if (!w->slice_views.empty()) {
      out_in->packed = w->slice_views.data();
      out_in->n_packed = static_cast<int64_t>(w->slice_views.size());
      out_in->data = nullptr;
    } else {
      out_in->data = w->raw_data;
    }
    return Status();
  }
  if (AsBuffer(arg.buffer)->magic != kBufferMagic || AsBuffer(arg.buffer)->device != AsDevice(d)) {
    return InvalidArgument("buffer is not a buffer of this device");
  }
  const Buffer* b = AsBuffer(arg.buffer);
  if (!InRange(arg.offset, bytes, b->bytes.size())) {
    return OutOfRange("offset ", arg.offset, " + ", bytes, " bytes exceeds the buffer size ",
                      b->bytes.size());
  }
  if (arg.offset % plugin_sdk::DtypeAlignment(desc.dtype) != 0) {
    return InvalidArgument("offset ", arg.offset, " is not a multiple of ",
                           plugin_sdk::DtypeAlignment(desc.dtype), " (", plugin_sdk::DtypeName(desc.dtype), ")");
  }
  uint8_t* base = static_cast<uint8_t*>(b->bytes.data()) + arg.offset;
  if (writable) {
    *out_ptr = base;
  } else {
    out_in->data = base;
  }
  return Status();
}

// `s` (from ResolveArg) prefixed with the argument it is about: "MATMUL: input 1: ...".
Status WithArgLabel(const Status& s, const std::string& op_name, const char* what, uint32_t index) {
  return Status(s.code(), StrCat(op_name, ": ", what, " ", index, ": ", s.message()));
}

// The plugin's slots, with the ABI's signatures; MakeDeviceTable wraps the fallible ones in Guard.
struct CpuDevice {
  static const HostRef& Host() { return g_host; }
  // init (1.1): the default instance, with `options` and get_api's host. init/shutdown pairs
  // nest (direct users of the library beside the host's): the first init makes the instance, the
  // last shutdown frees it.
  static Status Init(const kestrel_plugin_option_t* options, size_t n_options) {
    auto inst = std::make_unique<Instance>();
    inst->host.Set(g_host.Get());
    KESTREL_SDK_RETURN_IF_ERROR(Configure(inst.get(), options, n_options, "init"));
    std::lock_guard<std::mutex> lock(g_default_mu);
    if (g_init_count++ == 0) g_default = inst.release();
    return Status();
  }

  static void Shutdown() {
    std::lock_guard<std::mutex> lock(g_default_mu);
    if (g_init_count == 0 || --g_init_count > 0) return;
    // The pool dies with it unless an op still runs on its State.
    delete g_default;
    g_default = nullptr;
  }

  // ---- ABI 1.4 instances ----
  static const HostRef& HostOf(kestrel_plugin_device_t* d) {
    const Device* device = AsDevice(d);
    return device != nullptr && device->magic == kDeviceMagic ? device->instance->host : g_host;
  }
  static const HostRef& HostOfInstance(kestrel_plugin_instance_t* i) {
    Instance* inst = AsInstance(i);
    return inst != nullptr ? inst->host : g_host;
  }
  static Status InstanceCreate(const kestrel_host_api_t* host,
                               const kestrel_plugin_option_t* options, size_t n,
                               kestrel_plugin_instance_t** out) {
    if (out == nullptr) return InvalidArgument("instance_create: out_instance is NULL");
    *out = nullptr;
    if (host == nullptr || host->struct_size < sizeof(kestrel_host_api_t) ||
        host->status_create == nullptr) {
      return InvalidArgument("instance_create: host table is NULL, smaller than the 1.0 table or "
                             "has no status_create");
    }
    auto inst = std::make_unique<Instance>();
    inst->host.Set(host);
    KESTREL_SDK_RETURN_IF_ERROR(Configure(inst.get(), options, n, "instance_create"));
    *out = reinterpret_cast<kestrel_plugin_instance_t*>(inst.release());
    return Status();
  }
  static void InstanceDestroy(kestrel_plugin_instance_t* i) { delete AsInstance(i); }
  static uint32_t InstanceDeviceCount(kestrel_plugin_instance_t* i, char* reason, size_t cap) {
    if (AsInstance(i) != nullptr) return 1;
    static const char kBad[] = "cpu: not an instance of this plugin";
    plugin_sdk::WriteReason(kBad, sizeof kBad - 1, reason, cap);
    return 0;
  }
  static Status InstanceDeviceGetCaps(kestrel_plugin_instance_t* i, uint32_t index,
                                      kestrel_device_caps_t* caps) {
    Instance* inst = AsInstance(i);
    if (inst == nullptr) return plugin_sdk::FailedPrecondition("device_get_caps: plugin 'cpu' is not initialised");
    return GetCaps(inst, index, caps);
  }
  static Status InstanceDeviceOpen(kestrel_plugin_instance_t* i, uint32_t index,
                                   kestrel_plugin_device_t** out) {
    Instance* inst = AsInstance(i);
    if (inst == nullptr) return plugin_sdk::FailedPrecondition("device_open: plugin 'cpu' is not initialised");
    return Open(inst, index, out);
  }

  // The settings of `inst` from `options` over the environment; logs through its host.
  static Status Configure(Instance* inst, const kestrel_plugin_option_t* options, size_t n_options,
                          const char* slot) {
    if (n_options > 0 && options == nullptr) return InvalidArgument(slot, ": options is NULL");
    const HostRef& host = inst->host;
    std::string threads_s, isa_s, exact_s, onednn_s;
    if (const char* e = std::getenv("KESTREL_CPU_THREADS")) threads_s = e;
    if (const char* e = std::getenv("KESTREL_CPU_ISA")) isa_s = e;
    if (const char* e = std::getenv("KESTREL_CPU_EXACT")) exact_s = e;
    if (const char* e = std::getenv("KESTREL_CPU_ONEDNN")) onednn_s = e;
    for (size_t i = 0; i < n_options; ++i) {
      const std::string key = options[i].key ? options[i].key : "";
      const std::string value = options[i].value ? options[i].value : "";
      if (key == "threads" || key == "n_threads") {
        threads_s = value;
      } else if (key == "isa") {
        isa_s = value;
      } else if (key == "exact") {
        exact_s = value;
      } else if (key == "onednn") {
        onednn_s = value;
      } else {
        host.Log(KESTREL_PLUGIN_LOG_DEBUG, StrCat("cpu: ignoring option '", key, "'"));
      }
    }
    auto state = std::make_shared<State>();
    const unsigned hw = std::thread::hardware_concurrency();
    state->threads = hw == 0 ? 1 : static_cast<int>(std::min(hw, 256u));
    if (!threads_s.empty() && !ParsePositiveInt(threads_s, &state->threads)) {
      host.Log(KESTREL_PLUGIN_LOG_WARNING,
               StrCat("cpu: threads='", threads_s, "' is not a positive integer; using ", state->threads));
    }
    state->isa = BestIsaLevel();
    if (!isa_s.empty()) {
      IsaLevel wanted;
      if (!ParseIsaLevel(isa_s, &wanted)) {
        host.Log(KESTREL_PLUGIN_LOG_WARNING,
                 StrCat("cpu: isa='", isa_s, "' is not portable|avx2|avx512|vnni|amx|neon|dotprod|best; using ",
                        IsaLevelName(state->isa)));
      } else if (!IsaLevelSupported(wanted)) {
        host.Log(KESTREL_PLUGIN_LOG_WARNING, StrCat("cpu: isa='", isa_s, "' is not available on this CPU; using ",
                                                    IsaLevelName(state->isa)));
      } else {
        state->isa = wanted;
      }
    }
    if (!exact_s.empty()) state->exact = exact_s != "0";
    state->onednn = OneDnnAvailable() && (onednn_s.empty() || onednn_s != "0");
    state->pool = std::make_unique<ThreadPool>(state->threads);
    state->description = StrCat("Kestrel CPU (", IsaLevelName(state->isa), ", ", state->threads,
                                " threads, ", state->exact ? "exact f32" : "8-bit",
                                " activations for quantized weights",
                                state->onednn ? ", oneDNN sgemm" : "",
                                !IsX86IsaLevel(state->isa) ? ""
                                : DecodeGemvStyle() == GemvStyle::kRows ? ", decode GEMV rows"
                                                                        : ", decode GEMV tiles",
                                ")");
    host.Log(KESTREL_PLUGIN_LOG_INFO, state->description);
    std::lock_guard<std::mutex> lock(inst->mu);
    inst->state = std::move(state);
    return Status();
  }

  static Instance* DefaultInstance() {
    std::lock_guard<std::mutex> lock(g_default_mu);
    return g_default;
  }

  // ---- slots -----------------------------------------------------------------------------------
  static Status DeviceGetCaps(uint32_t index, kestrel_device_caps_t* caps) {
    Instance* inst = DefaultInstance();
    if (inst == nullptr) return plugin_sdk::FailedPrecondition("device_get_caps: plugin 'cpu' is not initialised");
    return GetCaps(inst, index, caps);
  }

  static Status GetCaps(Instance* inst, uint32_t index, kestrel_device_caps_t* caps) {
    if (caps == nullptr) return InvalidArgument("device_get_caps: caps is NULL");
    if (index != 0) return OutOfRange("device_get_caps: index ", index, " >= device count 1");
    std::shared_ptr<State> state = inst->Current();
    DeviceCapsValues v;
    v.kind = KESTREL_DEVICE_KIND_CPU;
    v.name = "cpu";
    v.description = state ? state->description : std::string("Kestrel CPU");
    v.memory_bytes = plugin_sdk::HostMemoryBytes();
    v.host_visible = true;
    v.dtype_mask = plugin_sdk::HostPluginDtypeMask();
    v.weight_dtype_mask = plugin_sdk::HostPluginWeightDtypeMask();
    WriteDeviceCaps(v, caps);
    return Status();
  }

  static Status DeviceOpen(uint32_t index, kestrel_plugin_device_t** out) {
    Instance* inst = DefaultInstance();
    if (inst == nullptr) return plugin_sdk::FailedPrecondition("device_open: plugin 'cpu' is not initialised");
    return Open(inst, index, out);
  }

  static Status Open(Instance* inst, uint32_t index, kestrel_plugin_device_t** out) {
    if (out == nullptr) return InvalidArgument("device_open: out_device is NULL");
    if (index != 0) return OutOfRange("device_open: index ", index, " >= device count 1");
    Device* device = new Device;
    device->index = index;
    device->instance = inst;
    *out = reinterpret_cast<kestrel_plugin_device_t*>(device);
    return Status();
  }

  static Status BufferAlloc(kestrel_plugin_device_t* d, uint64_t size, uint32_t /*flags*/,
                            kestrel_plugin_buffer_t** out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_alloc"));
    if (out == nullptr) return InvalidArgument("buffer_alloc: out_buffer is NULL");
    KESTREL_SDK_RETURN_IF_ERROR(plugin_sdk::CheckHostAllocation(size, "buffer_alloc"));
    auto buffer = std::make_unique<Buffer>();
    try {
      buffer->bytes = AlignedBuffer(size);
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("buffer_alloc: cannot allocate ", size, " bytes of host memory");
    }
    buffer->device = AsDevice(d);
    *out = reinterpret_cast<kestrel_plugin_buffer_t*>(buffer.release());
    return Status();
  }

  static Status BufferWrite(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                            kestrel_plugin_buffer_t* dst, uint64_t off, const void* src,
                            uint64_t size) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_write"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "buffer_write"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_write", "dst"));
    Buffer* b = AsBuffer(dst);
    if (!InRange(off, size, b->bytes.size())) {
      return OutOfRange("buffer_write: [", off, ", +", size, ") exceeds the buffer size ", b->bytes.size());
    }
    if (size == 0) return Status();
    if (src == nullptr) return InvalidArgument("buffer_write: src is NULL");
    std::memmove(static_cast<uint8_t*>(b->bytes.data()) + off, src, size);
    return Status();
  }

  static Status BufferRead(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                           kestrel_plugin_buffer_t* src, uint64_t off, void* dst, uint64_t size) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_read"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "buffer_read"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_read", "src"));
    Buffer* b = AsBuffer(src);
    if (!InRange(off, size, b->bytes.size())) {
      return OutOfRange("buffer_read: [", off, ", +", size, ") exceeds the buffer size ", b->bytes.size());
    }
    if (size == 0) return Status();
    if (dst == nullptr) return InvalidArgument("buffer_read: dst is NULL");
    std::memmove(dst, static_cast<const uint8_t*>(b->bytes.data()) + off, size);
    return Status();
  }

  static Status BufferCopy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                           kestrel_plugin_buffer_t* src, uint64_t src_off,
                           kestrel_plugin_buffer_t* dst, uint64_t dst_off, uint64_t size) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_copy"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "buffer_copy"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_copy", "src"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_copy", "dst"));
    Buffer* s = AsBuffer(src);
    Buffer* t = AsBuffer(dst);
    if (!InRange(src_off, size, s->bytes.size()) || !InRange(dst_off, size, t->bytes.size())) {
      return OutOfRange("buffer_copy: ", size, " bytes from offset ", src_off, " (size ",
                        s->bytes.size(), ") to offset ", dst_off, " (size ", t->bytes.size(),
                        ") exceed a buffer");
    }
    if (size == 0) return Status();
    std::memmove(static_cast<uint8_t*>(t->bytes.data()) + dst_off,
                 static_cast<const uint8_t*>(s->bytes.data()) + src_off, size);
    return Status();
  }

  static Status BufferMap(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b, void** out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_map"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, b, "buffer_map", "buffer"));
    if (out == nullptr) return InvalidArgument("buffer_map: out_ptr is NULL");
    *out = AsBuffer(b)->bytes.data();
    return Status();
  }

  static Status WeightPrepare(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* desc,
                              const void* host_data, uint64_t size, kestrel_plugin_weight_t** out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "weight_prepare"));
    uint64_t needed = 0;
    KESTREL_SDK_RETURN_IF_ERROR(plugin_sdk::CheckWeightPrepare(desc, host_data, size, out, &needed));
    auto weight = std::make_unique<Weight>();
    weight->device = AsDevice(d);
    weight->desc = *desc;
    weight->desc.struct_size = sizeof(kestrel_tensor_desc_t);
    std::memset(weight->desc.strides, 0, sizeof weight->desc.strides);
    try {
      if (ShouldRepack(*desc)) {
        weight->packed = RepackQ(weight->desc, host_data);
      } else if (ShouldRepackK(*desc)) {
        std::shared_ptr<State> state = StateOf(d);
        weight->kpacked = RepackK(weight->desc, host_data, state ? state->pool.get() : nullptr);
      } else if (IsRepackableStack(*desc)) {
        kestrel_tensor_desc_t slice = weight->desc;
        slice.rank = 2;
        slice.dims[0] = desc->dims[1];
        slice.dims[1] = desc->dims[2];
        slice.dims[2] = 0;
        const uint64_t slice_bytes = plugin_sdk::TensorBytes(slice);
        const uint8_t* src = static_cast<const uint8_t*>(host_data);
        for (int64_t i = 0; i < desc->dims[0]; ++i) {
          weight->slices.push_back(RepackQ(slice, src + static_cast<uint64_t>(i) * slice_bytes));
          weight->slice_views.push_back(weight->slices.back()->view);
        }
      } else {
        weight->raw = AlignedBuffer(needed);
        if (needed > 0) std::memcpy(weight->raw.data(), host_data, needed);
        weight->raw_data = weight->raw.data();
      }
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("weight_prepare: cannot allocate ", needed, " bytes");
    }
    if (weight->packed || weight->kpacked || !weight->slices.empty()) AsDevice(d)->weights_repacked++;
    *out = reinterpret_cast<kestrel_plugin_weight_t*>(weight.release());
    return Status();
  }

  // Plugin ABI 1.4 prepared-weight export / import (weight_export.h has the byte layout).
  static Status DeviceWeightLayout(kestrel_plugin_device_t* d, char* out, size_t capacity,
                                   size_t* length) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "device_weight_layout"));
    if (length == nullptr) return InvalidArgument("device_weight_layout: out_length is NULL");
    const std::string id = ExportedLayoutId();
    *length = id.size();
    if (out != nullptr && capacity > id.size()) std::memcpy(out, id.c_str(), id.size() + 1);
    return Status();
  }

  static Status WeightExport(kestrel_plugin_device_t* d, kestrel_plugin_weight_t* w, void* dst,
                             uint64_t capacity, uint64_t* out_size) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "weight_export"));
    if (out_size == nullptr) return InvalidArgument("weight_export: out_size is NULL");
    const Weight* weight = AsWeight(w);
    if (weight == nullptr || weight->magic != kWeightMagic || weight->device != AsDevice(d)) {
      return InvalidArgument("weight_export: weight is not a prepared weight of this device");
    }
    WeightParts parts;
    parts.desc = weight->desc;
    parts.raw = weight->raw_data;
    parts.raw_bytes = plugin_sdk::TensorBytes(weight->desc);
    parts.packed = weight->packed.get();
    parts.kpacked = weight->kpacked.get();
    for (const auto& s : weight->slices) parts.slices.push_back(s.get());
    *out_size = ExportedSize(parts);
    if (dst == nullptr) return Status();
    if (capacity < *out_size) {
      return ResourceExhausted("weight_export: capacity ", capacity, " < ", *out_size, " bytes");
    }
    ExportWeightBytes(parts, static_cast<uint8_t*>(dst));
    return Status();
  }

  static Status WeightImport(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* desc,
                             const void* data, uint64_t size, uint32_t flags,
                             kestrel_plugin_weight_t** out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "weight_import"));
    if (desc == nullptr) return InvalidArgument("weight_import: desc is NULL");
    if (out == nullptr) return InvalidArgument("weight_import: out_weight is NULL");
    if (data == nullptr) return InvalidArgument("weight_import: data is NULL");
    KESTREL_SDK_RETURN_IF_ERROR(plugin_sdk::ValidateTensorDesc(*desc, "weight_import: desc"));
    if (!plugin_sdk::IsWeightDtype(desc->dtype) || !plugin_sdk::IsPackedLayout(*desc)) {
      return InvalidArgument("weight_import: desc is not a packed weight dtype");
    }
    auto weight = std::make_unique<Weight>();
    weight->device = AsDevice(d);
    weight->desc = *desc;
    weight->desc.struct_size = sizeof(kestrel_tensor_desc_t);
    std::memset(weight->desc.strides, 0, sizeof weight->desc.strides);
    ImportedWeight imported;
    try {
      const std::string why = ImportWeightBytes(
          weight->desc, static_cast<const uint8_t*>(data), size,
          (flags & KESTREL_WEIGHT_IMPORT_BORROW) != 0, ShouldRepack(weight->desc),
          ShouldRepackK(weight->desc),
          IsRepackableStack(weight->desc), plugin_sdk::TensorBytes(weight->desc), &imported);
      if (!why.empty()) return InvalidArgument("weight_import: ", why);
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("weight_import: cannot allocate ", size, " bytes");
    }
    weight->raw = std::move(imported.raw_copy);
    weight->raw_data = imported.raw;
    weight->packed = std::move(imported.packed);
    weight->kpacked = std::move(imported.kpacked);
    weight->slices = std::move(imported.slices);
    for (const auto& s : weight->slices) weight->slice_views.push_back(s->view);
    AsDevice(d)->weights_imported++;
    *out = reinterpret_cast<kestrel_plugin_weight_t*>(weight.release());
    return Status();
  }

  static Status DeviceGetCounter(kestrel_plugin_device_t* d, const char* name, uint64_t* value) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "device_get_counter"));
    if (name == nullptr || value == nullptr) {
      return InvalidArgument("device_get_counter: name or out_value is NULL");
    }
    const std::string key = name;
    if (key == "weights_repacked") {
      *value = AsDevice(d)->weights_repacked.load();
    } else if (key == "weights_imported") {
      *value = AsDevice(d)->weights_imported.load();
    } else {
      return plugin_sdk::Status(KESTREL_PLUGIN_NOT_FOUND, StrCat("device_get_counter: plugin 'cpu' has no counter '", key,
                           "' (it has weights_repacked, weights_imported)"));
    }
    return Status();
  }

  static Status OpQuery(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
                        kestrel_op_support_t* out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "op_query"));
    if (op == nullptr) return InvalidArgument("op_query: op is NULL");
    if (out == nullptr) return InvalidArgument("op_query: out_support is NULL");
    if (out->struct_size < sizeof(kestrel_op_support_t)) {
      return InvalidArgument("op_query: out_support->struct_size=", out->struct_size, " < ",
                             sizeof(kestrel_op_support_t));
    }
    out->level = KESTREL_OP_UNSUPPORTED;
    out->workspace_bytes = 0;
    if (!SupportsKind(op->kind)) return Status();
    plugin_sdk::OpCheck check;
    KESTREL_SDK_RETURN_IF_ERROR(plugin_sdk::CheckOp(*op, &check));
    if (!check.supported) {
      HostOf(d).Log(KESTREL_PLUGIN_LOG_DEBUG, StrCat("cpu: unsupported: ", check.reason));
      return Status();
    }
    out->level = KESTREL_OP_PREFERRED;
    return Status();
  }

  static Status OpExecute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                          const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* /*workspace*/) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "op_execute"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "op_execute"));
    if (op == nullptr) return InvalidArgument("op_execute: op is NULL");
    // The kind's name only for messages (built on an error, not per op).
    auto name = [op] { return plugin_sdk::OpKindName(op->kind); };
    if (!SupportsKind(op->kind)) return Unimplemented(name(), ": not supported by plugin 'cpu'");
    plugin_sdk::OpCheck check;
    KESTREL_SDK_RETURN_IF_ERROR(plugin_sdk::CheckOp(*op, &check));
    if (!check.supported) return Unimplemented(check.reason);
    std::shared_ptr<State> state = StateOf(d);
    if (state == nullptr) return plugin_sdk::FailedPrecondition("op_execute: plugin 'cpu' is not initialised");
    // Small ops dominate a small model's decode step: no heap allocation per op on this path
    // (argument arrays on the stack up to kInlineArgs, labels built only for an error).
    constexpr uint32_t kInlineArgs = 8;
    ArgData inline_inputs[kInlineArgs];
    void* inline_outputs[kInlineArgs] = {};
    std::vector<ArgData> heap_inputs;
    std::vector<void*> heap_outputs;
    ArgData* inputs = inline_inputs;
    void** outputs = inline_outputs;
    if (op->n_inputs > kInlineArgs) {
      heap_inputs.resize(op->n_inputs);
      inputs = heap_inputs.data();
    }
    if (op->n_outputs > kInlineArgs) {
      heap_outputs.resize(op->n_outputs);
      outputs = heap_outputs.data();
    }
    for (uint32_t i = 0; i < op->n_inputs; ++i) {
      Status s = ResolveArg(d, op->inputs[i], /*writable=*/false, &inputs[i], nullptr);
      if (!s.ok()) return WithArgLabel(s, name(), "input", i);
    }
    for (uint32_t i = 0; i < op->n_outputs; ++i) {
      Status s = ResolveArg(d, op->outputs[i], /*writable=*/true, nullptr, &outputs[i]);
      if (!s.ok()) return WithArgLabel(s, name(), "output", i);
    }
    return ExecuteCpuOp(state->ctx(), *op, inputs, outputs);
  }

  // Plugin ABI 1.1: "threads" replaces the thread pool of the device's instance. In-flight ops
  // keep the old state alive through their shared_ptr, so the swap is safe while another device
  // call runs.
  static Status DeviceSetOptions(kestrel_plugin_device_t* d, const kestrel_plugin_option_t* options,
                                 size_t n) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "device_set_options"));
    if (options == nullptr && n > 0) return InvalidArgument("device_set_options: options is NULL");
    for (size_t i = 0; i < n; ++i) {
      if (options[i].key == nullptr || options[i].value == nullptr) {
        return InvalidArgument(StrCat("device_set_options: option ", i, " has a NULL key or value"));
      }
      if (std::string(options[i].key) != "threads") continue;  // unknown keys are ignored
      int threads = 0;
      if (!ParsePositiveInt(options[i].value, &threads) || threads > 4096) {
        return InvalidArgument(StrCat("device_set_options: threads='", options[i].value,
                                      "' is not an integer in [1, 4096]"));
      }
      Instance* inst = AsDevice(d)->instance;
      std::lock_guard<std::mutex> lock(inst->mu);
      std::shared_ptr<State>& current = inst->state;
      if (current == nullptr) return plugin_sdk::FailedPrecondition("device_set_options: plugin 'cpu' is not initialised");
      if (current->threads == threads) continue;
      auto next = std::make_shared<State>();
      next->threads = threads;
      next->isa = current->isa;
      next->exact = current->exact;
      next->onednn = current->onednn;
      next->pool = std::make_unique<ThreadPool>(threads);
      next->description = current->description;
      current = std::move(next);
    }
    return Status();
  }

  static uint32_t DeviceCount(char*, size_t) { return 1; }
  // Frees an object the host hands back (accepts NULL).
  static void DeviceClose(kestrel_plugin_device_t* d) { delete AsDevice(d); }
  static void BufferFree(kestrel_plugin_device_t*, kestrel_plugin_buffer_t* b) {
    delete AsBuffer(b);
  }
  static void WeightRelease(kestrel_plugin_device_t*, kestrel_plugin_weight_t* w) {
    delete AsWeight(w);
  }
};
// ---- the table -------------------------------------------------------------------------------
const kestrel_plugin_api_t* Table() {
  static const kestrel_plugin_api_t table = MakeDeviceTable<CpuDevice>(kPluginName, kPluginVersion);
  return &table;
}

}  // namespace
}  // namespace kestrel::plugins::cpu

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  using namespace kestrel::plugins::cpu;
  return kestrel::plugin_sdk::GetApi(kPluginName, Table(), host, host_major, host_minor, out,
                                  [](const kestrel_host_api_t* h) { g_host.Set(h); });
}
