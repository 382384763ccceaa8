// The stub NPU plugin ("npu_stub", device "npu"; see npu_stub.h for what it simulates and its
// options). One device per instance; ABI 1.4 instances (each with its own options and host), and
// the 1.1 slots on a default instance for older hosts.
//
// Objects: an Instance (host, config); a Device (its instance's config, the memory budget, the
// simulated clock, the queue that runs stream-NULL work); Buffers and Weights whose bytes count
// against the budget and are never handed to the host (no buffer_map); Streams (a CommandQueue
// each) and Events (a point in a stream's queue). Ops are validated with the SDK's op contract
// (the same descriptors ref accepts), resolved to pointers at submission, and run on the stream's
// queue thread; stream NULL runs them to completion before returning.
// Exports only kestrel_plugin_get_api (hal/plugin.map).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "command_queue.h"
#include "int8_matmul.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/device_checks.h"
#include "kestrel/plugin_sdk/device_table.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/plugin_glue.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/status.h"
#include "kestrel/plugin_sdk/weight_dtype_support.h"
#include "npu_config.h"
#include "npu_stub.h"

namespace kestrel::plugins::npu {
namespace {

using plugin_sdk::CheckTransfer;
using plugin_sdk::CheckWeightPrepare;
using plugin_sdk::DeviceCapsValues;
using plugin_sdk::HostRef;
using plugin_sdk::InvalidArgument;
using plugin_sdk::OutOfRange;
using plugin_sdk::ResourceExhausted;
using plugin_sdk::Status;
using plugin_sdk::StrCat;
using plugin_sdk::Unimplemented;

#define RETURN_IF_ERROR(expr) KESTREL_SDK_RETURN_IF_ERROR(expr)

constexpr const char* kPluginName = "npu_stub";
constexpr const char* kDeviceName = "npu";

constexpr uint32_t kInstanceMagic = 0x4E494E53;  // "NINS"
constexpr uint32_t kDeviceMagic = 0x4E444556;    // "NDEV"
constexpr uint32_t kBufferMagic = 0x4E425546;    // "NBUF"
constexpr uint32_t kWeightMagic = 0x4E575454;    // "NWTT"
constexpr uint32_t kStreamMagic = 0x4E535452;    // "NSTR"
constexpr uint32_t kEventMagic = 0x4E45564E;     // "NEVN"

struct Instance {
  uint32_t magic = kInstanceMagic;
  HostRef host;
  NpuConfig config;
};

struct Device {
  uint32_t magic = kDeviceMagic;
  Instance* instance = nullptr;
  NpuConfig config;
  std::mutex memory_mu;
  uint64_t memory_used = 0;
  std::atomic<uint64_t> clock_ns{0};
  std::atomic<uint64_t> launches{0};

  // Charges `bytes` of device memory to `what`, or RESOURCE_EXHAUSTED naming the numbers.
  Status Reserve(uint64_t bytes, const char* slot) {
    std::lock_guard<std::mutex> lock(memory_mu);
    if (bytes > config.memory_bytes - memory_used) {
      return ResourceExhausted(slot, ": npu: out of device memory: ", bytes, " bytes requested, ",
                               config.memory_bytes - memory_used, " of ", config.memory_bytes,
                               " bytes free");
    }
    memory_used += bytes;
    return Status();
  }
  void Release(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(memory_mu);
    memory_used -= std::min(bytes, memory_used);
  }
  void Charge(uint64_t ns) {
    clock_ns.fetch_add(ns);
    launches.fetch_add(1);
  }
};

// Device memory: bytes that only the plugin touches.
struct Memory {
  std::unique_ptr<uint8_t[]> data;
  uint64_t size = 0;
};

Status AllocateMemory(Device* device, uint64_t size, const char* slot, Memory* out) {
  RETURN_IF_ERROR(device->Reserve(size, slot));
  out->data.reset(new (std::nothrow) uint8_t[std::max<uint64_t>(size, 1)]);
  if (out->data == nullptr) {
    device->Release(size);
    return ResourceExhausted(slot, ": npu: cannot back ", size, " bytes of device memory");
  }
  out->size = size;
  return Status();
}

struct Buffer {
  uint32_t magic = kBufferMagic;
  Device* device = nullptr;
  uint64_t size = 0;
  Memory memory;
};

// A prepared weight: rank 1 as f32 values (RMSNorm weights), rank 2 and 3 compiled to int8 tiles
// (rank 3, expert stacks, as [dims[0] * dims[1], dims[2]]).
struct Weight {
  uint32_t magic = kWeightMagic;
  Device* device = nullptr;
  kestrel_tensor_desc_t desc{};
  bool compiled = false;
  int64_t rows = 0, cols = 0;
  Memory memory;
};

struct Stream {
  uint32_t magic = kStreamMagic;
  Device* device = nullptr;
  std::shared_ptr<CommandQueue> queue;
};

struct Event {
  uint32_t magic = kEventMagic;
  Device* device = nullptr;
  std::shared_ptr<CommandQueue> queue;
  uint64_t seq = 0;
};

Device* AsDevice(kestrel_plugin_device_t* d) { return reinterpret_cast<Device*>(d); }
Buffer* AsBuffer(kestrel_plugin_buffer_t* b) { return reinterpret_cast<Buffer*>(b); }
Weight* AsWeight(kestrel_plugin_weight_t* w) { return reinterpret_cast<Weight*>(w); }
Stream* AsStream(kestrel_plugin_stream_t* s) { return reinterpret_cast<Stream*>(s); }
Event* AsEvent(kestrel_plugin_event_t* e) { return reinterpret_cast<Event*>(e); }
Instance* AsInstance(kestrel_plugin_instance_t* i) {
  Instance* inst = reinterpret_cast<Instance*>(i);
  return inst != nullptr && inst->magic == kInstanceMagic ? inst : nullptr;
}

// ---- process-wide state: the get_api host and the 1.1 slots' default instance ------------------
HostRef g_host;
std::mutex g_default_mu;
Instance* g_default = nullptr;  // made by the first init, freed by the last shutdown
int g_init_count = 0;

Status CheckDevice(kestrel_plugin_device_t* d, const char* slot) {
  return plugin_sdk::CheckDevice(AsDevice(d), kDeviceMagic, kPluginName, slot);
}
Status CheckBuffer(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b, const std::string& what) {
  return plugin_sdk::CheckBuffer(AsBuffer(b), kBufferMagic, AsDevice(d), what);
}
// NULL is the synchronous path; anything else must be a stream of `d`.
Status CheckStream(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s, const char* slot) {
  if (s == nullptr) return Status();
  return plugin_sdk::CheckStream(AsStream(s), kStreamMagic, AsDevice(d), slot);
}

// Runs `command` now (stream NULL) or queues it on the stream.
Status Launch(kestrel_plugin_stream_t* s, CommandQueue::Command command) {
  if (s == nullptr) return command();
  AsStream(s)->queue->Submit(std::move(command));
  return Status();
}

// ---- ops ---------------------------------------------------------------------------------------
// The weight dtypes weight_prepare compiles into int8 tiles (caps.weight_dtype_mask).
constexpr uint64_t kWeightDtypeMask =
    KESTREL_DTYPE_BIT(KESTREL_DTYPE_F32) | KESTREL_DTYPE_BIT(KESTREL_DTYPE_F16) |
    KESTREL_DTYPE_BIT(KESTREL_DTYPE_BF16) | KESTREL_DTYPE_BIT(KESTREL_DTYPE_Q8_0) |
    KESTREL_DTYPE_BIT(KESTREL_DTYPE_Q4_0);

bool KindOk(uint32_t kind) {
  return kind == KESTREL_OP_MATMUL || kind == KESTREL_OP_RMSNORM || kind == KESTREL_OP_ADD ||
         kind == KESTREL_OP_SWIGLU;
}

// The read-clock vendor op's one valid shape: no inputs, one output I32 [4].
Status CheckReadClock(const kestrel_op_desc_t& op) {
  if (op.n_inputs != 0 || op.n_outputs != 1 || op.outputs == nullptr) {
    return InvalidArgument("NPU_READ_CLOCK: expects no inputs and one output");
  }
  const kestrel_tensor_desc_t& d = op.outputs[0].desc;
  if (d.struct_size != sizeof(kestrel_tensor_desc_t) || d.dtype != KESTREL_DTYPE_I32 ||
      d.rank != 1 || d.dims[0] != 4) {
    return InvalidArgument("NPU_READ_CLOCK: output must be I32 [4]");
  }
  return Status();
}

// One argument resolved to device memory: the bytes at offset, or a prepared weight.
struct Arg {
  uint8_t* data = nullptr;
  const Weight* weight = nullptr;
};

Status ResolveArg(kestrel_plugin_device_t* d, const kestrel_tensor_arg_t& a,
                  const std::string& label, bool writable, Arg* out) {
  const Weight* w = nullptr;
  const Buffer* b = nullptr;
  RETURN_IF_ERROR(plugin_sdk::CheckTensorArg(AsDevice(d), a, label, writable, kWeightMagic,
                                             kBufferMagic, &w, &b));
  if (w != nullptr) {
    out->weight = w;
    out->data = w->memory.data.get();
  } else {
    out->data = b->memory.data.get() + a.offset;
  }
  return Status();
}

uint64_t Elements(const kestrel_tensor_desc_t& d) {
  uint64_t n = 1;
  for (uint32_t i = 0; i < d.rank; ++i) n *= static_cast<uint64_t>(d.dims[i]);
  return n;
}

// The MATMUL command: W8A8 on the compiled weight (a weight passed in a buffer is compiled first,
// and that costs a launch of its own).
Status RunMatmul(Device* dev, const kestrel_op_desc_t& op, const Arg& x, const Arg& w,
                 const Arg& out, CommandQueue::Command* command) {
  const int64_t t = op.inputs[0].desc.dims[0], k = op.inputs[0].desc.dims[1];
  const int64_t n = op.inputs[1].desc.dims[0];
  const uint32_t w_dtype = op.inputs[1].desc.dtype;
  const float* xp = reinterpret_cast<const float*>(x.data);
  float* yp = reinterpret_cast<float*>(out.data);
  const uint8_t* compiled = w.weight != nullptr ? w.data : nullptr;
  const uint8_t* raw = w.weight != nullptr ? nullptr : w.data;
  const NpuConfig cfg = dev->config;
  *command = [=]() -> Status {
    std::vector<uint8_t> scratch;
    const uint8_t* cw = compiled;
    if (cw == nullptr) {
      scratch.resize(CompiledWeightBytes(n, k));
      CompileWeight(w_dtype, raw, n, k, scratch.data());
      dev->Charge(VectorCostNs(cfg, static_cast<uint64_t>(n * k) * 2,
                               plugin_sdk::RowBytes(w_dtype, k) * n + scratch.size()));
      cw = scratch.data();
    }
    // y must not overlap x: the contract does not promise it, so copy x if it does.
    std::vector<float> x_copy;
    const float* xs = xp;
    const uint64_t xb = static_cast<uint64_t>(t * k) * 4, yb = static_cast<uint64_t>(t * n) * 4;
    const uintptr_t x0 = reinterpret_cast<uintptr_t>(xp), y0 = reinterpret_cast<uintptr_t>(yp);
    if (x0 < y0 + yb && y0 < x0 + xb) {
      x_copy.assign(xp, xp + t * k);
      xs = x_copy.data();
    }
    MatmulW8A8(cw, n, k, xs, t, yp);
    const uint64_t bytes = CompiledWeightBytes(n, k) + static_cast<uint64_t>(t * k) +
                           static_cast<uint64_t>(t * n) * 4;
    dev->Charge(MatmulCostNs(cfg, t, n, k, bytes));
    return Status();
  };
  return Status();
}

// RMSNORM, ADD, SWIGLU: f32 on the vector unit (RMSNorm in llama.cpp's float order, from the
// SDK's reference kernels, so the f32 ops match ref bit for bit).
Status RunVector(Device* dev, const kestrel_op_desc_t& op, const std::vector<Arg>& in,
                 const Arg& out, CommandQueue::Command* command) {
  const uint32_t kind = op.kind;
  const uint64_t elems = Elements(op.outputs[0].desc);
  const float* a = reinterpret_cast<const float*>(in[0].data);
  const float* b = reinterpret_cast<const float*>(in[1].data);
  float* y = reinterpret_cast<float*>(out.data);
  const int64_t rows = op.inputs[0].desc.dims[0];
  const int64_t dim = op.inputs[0].desc.rank > 1 ? op.inputs[0].desc.dims[1] : 0;
  float eps = 0.0f;
  if (kind == KESTREL_OP_RMSNORM) {
    kestrel_op_rmsnorm_params_t p;
    std::memcpy(&p, op.params, sizeof p);
    eps = p.eps;
  }
  const NpuConfig cfg = dev->config;
  *command = [=]() -> Status {
    uint64_t flops = elems;
    if (kind == KESTREL_OP_RMSNORM) {
      plugin_sdk::RmsNorm(a, b, rows, dim, eps, y);
      flops = 4 * elems;
    } else if (kind == KESTREL_OP_ADD) {
      plugin_sdk::Add(a, b, static_cast<int64_t>(elems), y);
    } else {
      plugin_sdk::Swiglu(a, b, static_cast<int64_t>(elems), y);
      flops = 6 * elems;
    }
    dev->Charge(VectorCostNs(cfg, flops, 3 * elems * sizeof(float)));
    return Status();
  };
  return Status();
}

// ---- the plugin's slots --------------------------------------------------------------------------
struct NpuDevice {
  static const HostRef& Host() { return g_host; }
  static const HostRef& HostOf(kestrel_plugin_device_t* d) {
    Device* dev = AsDevice(d);
    return dev != nullptr && dev->magic == kDeviceMagic ? dev->instance->host : g_host;
  }
  static const HostRef& HostOfInstance(kestrel_plugin_instance_t* i) {
    Instance* inst = AsInstance(i);
    return inst != nullptr ? inst->host : g_host;
  }

  // ---- 1.1 slots: the default instance ----
  // init/shutdown pairs nest (a process may load the library twice): the first init makes the
  // default instance with its options, the last shutdown frees it.
  static Status Init(const kestrel_plugin_option_t* options, size_t n) {
    auto inst = std::make_unique<Instance>();
    RETURN_IF_ERROR(ParseNpuConfig(options, n, "init", &inst->config));
    std::lock_guard<std::mutex> lock(g_default_mu);
    if (g_init_count++ > 0) return Status();
    inst->host.Set(g_host.Get());
    g_default = inst.release();
    return Status();
  }
  static void Shutdown() {
    std::lock_guard<std::mutex> lock(g_default_mu);
    if (g_init_count == 0 || --g_init_count > 0) return;
    delete g_default;
    g_default = nullptr;
  }
  static uint32_t DeviceCount(char* reason, size_t capacity) {
    std::lock_guard<std::mutex> lock(g_default_mu);
    if (g_default == nullptr) {
      static const char kNoInit[] = "npu_stub: init was not called";
      plugin_sdk::WriteReason(kNoInit, sizeof kNoInit - 1, reason, capacity);
      return 0;
    }
    return 1;
  }
  static Status DeviceGetCaps(uint32_t index, kestrel_device_caps_t* caps) {
    return InstanceDeviceGetCaps(DefaultInstance(), index, caps);
  }
  static Status DeviceOpen(uint32_t index, kestrel_plugin_device_t** out) {
    return InstanceDeviceOpen(DefaultInstance(), index, out);
  }

  // ---- 1.4 instances ----
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
    RETURN_IF_ERROR(ParseNpuConfig(options, n, "instance_create", &inst->config));
    inst->host.Set(host);
    *out = reinterpret_cast<kestrel_plugin_instance_t*>(inst.release());
    return Status();
  }
  static void InstanceDestroy(kestrel_plugin_instance_t* i) { delete AsInstance(i); }
  static uint32_t InstanceDeviceCount(kestrel_plugin_instance_t* i, char* reason, size_t cap) {
    if (AsInstance(i) != nullptr) return 1;
    static const char kBad[] = "npu_stub: not an instance of this plugin";
    plugin_sdk::WriteReason(kBad, sizeof kBad - 1, reason, cap);
    return 0;
  }
  static Status InstanceDeviceGetCaps(kestrel_plugin_instance_t* i, uint32_t index,
                                      kestrel_device_caps_t* caps) {
    Instance* inst = AsInstance(i);
    if (inst == nullptr) return InvalidArgument("device_get_caps: no instance (init not called?)");
    if (caps == nullptr) return InvalidArgument("device_get_caps: caps is NULL");
    if (index != 0) return OutOfRange("device_get_caps: index ", index, " >= device count 1");
    DeviceCapsValues v;
    v.kind = KESTREL_DEVICE_KIND_NPU;
    v.name = kDeviceName;
    v.description = StrCat("Kestrel stub NPU (simulated edge NPU: ", inst->config.memory_bytes >> 20,
                           " MiB device memory, W8A8 int8 matmul, ", inst->config.int8_tops,
                           " int8 TOPS simulated)");
    v.memory_bytes = inst->config.memory_bytes;
    v.host_visible = false;
    v.async = true;
    v.dtype_mask = KESTREL_DTYPE_BIT(KESTREL_DTYPE_F32) | KESTREL_DTYPE_BIT(KESTREL_DTYPE_I32) |
                   KESTREL_DTYPE_BIT(KESTREL_DTYPE_I8);
    v.weight_dtype_mask = kWeightDtypeMask;
    v.accuracy_tier = KESTREL_ACCURACY_INT8;
    plugin_sdk::WriteDeviceCaps(v, caps);
    return Status();
  }
  static Status InstanceDeviceOpen(kestrel_plugin_instance_t* i, uint32_t index,
                                   kestrel_plugin_device_t** out) {
    Instance* inst = AsInstance(i);
    if (inst == nullptr) return InvalidArgument("device_open: no instance (init not called?)");
    if (out == nullptr) return InvalidArgument("device_open: out_device is NULL");
    if (index != 0) return OutOfRange("device_open: index ", index, " >= device count 1");
    auto dev = std::make_unique<Device>();
    dev->instance = inst;
    dev->config = inst->config;
    *out = reinterpret_cast<kestrel_plugin_device_t*>(dev.release());
    return Status();
  }
  static void DeviceClose(kestrel_plugin_device_t* d) {
    Device* dev = AsDevice(d);
    if (dev == nullptr || dev->magic != kDeviceMagic) return;
    dev->instance->host.Log(
        KESTREL_PLUGIN_LOG_INFO,
        StrCat("npu: simulated device time ", dev->clock_ns.load() / 1000, " us over ",
               dev->launches.load(), " launches; ", dev->memory_used, " bytes still allocated"));
    dev->magic = 0;
    delete dev;
  }

  // ---- memory ----
  static Status BufferAlloc(kestrel_plugin_device_t* d, uint64_t size, uint32_t /*flags*/,
                            kestrel_plugin_buffer_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_alloc"));
    if (out == nullptr) return InvalidArgument("buffer_alloc: out_buffer is NULL");
    auto b = std::make_unique<Buffer>();
    b->device = AsDevice(d);
    b->size = size;
    RETURN_IF_ERROR(AllocateMemory(b->device, size, "buffer_alloc", &b->memory));
    *out = reinterpret_cast<kestrel_plugin_buffer_t*>(b.release());
    return Status();
  }
  static void BufferFree(kestrel_plugin_device_t*, kestrel_plugin_buffer_t* buffer) {
    Buffer* b = AsBuffer(buffer);
    if (b == nullptr || b->magic != kBufferMagic) return;
    b->device->Release(b->memory.size);
    b->magic = 0;
    delete b;
  }
  static Status BufferWrite(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                            kestrel_plugin_buffer_t* dst, uint64_t off, const void* src,
                            uint64_t size) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_write"));
    RETURN_IF_ERROR(CheckStream(d, s, "buffer_write"));
    RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_write: dst"));
    Buffer* b = AsBuffer(dst);
    RETURN_IF_ERROR(CheckTransfer("buffer_write", off, size, b->size, src, "src"));
    if (size == 0) return Status();
    Device* dev = AsDevice(d);
    uint8_t* to = b->memory.data.get() + off;
    return Launch(s, [=]() -> Status {
      std::memcpy(to, src, size);
      dev->Charge(HostCopyCostNs(dev->config, size));
      return Status();
    });
  }
  static Status BufferRead(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                           kestrel_plugin_buffer_t* src, uint64_t off, void* dst, uint64_t size) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_read"));
    RETURN_IF_ERROR(CheckStream(d, s, "buffer_read"));
    RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_read: src"));
    Buffer* b = AsBuffer(src);
    RETURN_IF_ERROR(CheckTransfer("buffer_read", off, size, b->size, dst, "dst"));
    if (size == 0) return Status();
    Device* dev = AsDevice(d);
    const uint8_t* from = b->memory.data.get() + off;
    return Launch(s, [=]() -> Status {
      std::memcpy(dst, from, size);
      dev->Charge(HostCopyCostNs(dev->config, size));
      return Status();
    });
  }
  static Status BufferCopy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                           kestrel_plugin_buffer_t* src, uint64_t src_off,
                           kestrel_plugin_buffer_t* dst, uint64_t dst_off, uint64_t size) {
    RETURN_IF_ERROR(CheckDevice(d, "buffer_copy"));
    RETURN_IF_ERROR(CheckStream(d, s, "buffer_copy"));
    RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_copy: src"));
    RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_copy: dst"));
    Buffer* a = AsBuffer(src);
    Buffer* b = AsBuffer(dst);
    RETURN_IF_ERROR(plugin_sdk::CheckCopy(size, src_off, a->size, dst_off, b->size));
    if (size == 0) return Status();
    Device* dev = AsDevice(d);
    const uint8_t* from = a->memory.data.get() + src_off;
    uint8_t* to = b->memory.data.get() + dst_off;
    return Launch(s, [=]() -> Status {
      std::memmove(to, from, size);
      dev->Charge(DeviceCopyCostNs(dev->config, size));
      return Status();
    });
  }

  // ---- streams and events ----
  static Status StreamCreate(kestrel_plugin_device_t* d, kestrel_plugin_stream_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "stream_create"));
    if (out == nullptr) return InvalidArgument("stream_create: out_stream is NULL");
    auto s = std::make_unique<Stream>();
    s->device = AsDevice(d);
    s->queue = std::make_shared<CommandQueue>();
    *out = reinterpret_cast<kestrel_plugin_stream_t*>(s.release());
    return Status();
  }
  static void StreamDestroy(kestrel_plugin_device_t*, kestrel_plugin_stream_t* stream) {
    Stream* s = AsStream(stream);
    if (s == nullptr || s->magic != kStreamMagic) return;
    s->magic = 0;
    delete s;  // the queue drains its work before its thread stops
  }
  static Status StreamSynchronize(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s) {
    RETURN_IF_ERROR(CheckDevice(d, "stream_synchronize"));
    if (s == nullptr) return Status();  // nothing runs asynchronously without a stream
    RETURN_IF_ERROR(CheckStream(d, s, "stream_synchronize"));
    return AsStream(s)->queue->Synchronize();
  }
  static Status EventRecord(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                            kestrel_plugin_event_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "event_record"));
    if (s == nullptr) return InvalidArgument("event_record: stream is NULL");
    RETURN_IF_ERROR(CheckStream(d, s, "event_record"));
    if (out == nullptr) return InvalidArgument("event_record: out_event is NULL");
    auto e = std::make_unique<Event>();
    e->device = AsDevice(d);
    e->queue = AsStream(s)->queue;
    e->seq = e->queue->Mark();
    *out = reinterpret_cast<kestrel_plugin_event_t*>(e.release());
    return Status();
  }
  static Status StreamWaitEvent(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                kestrel_plugin_event_t* e) {
    RETURN_IF_ERROR(CheckDevice(d, "stream_wait_event"));
    if (s == nullptr) return InvalidArgument("stream_wait_event: stream is NULL");
    RETURN_IF_ERROR(CheckStream(d, s, "stream_wait_event"));
    RETURN_IF_ERROR(plugin_sdk::CheckEvent(AsEvent(e), kEventMagic, AsDevice(d),
                                           "stream_wait_event"));
    std::shared_ptr<CommandQueue> other = AsEvent(e)->queue;
    const uint64_t seq = AsEvent(e)->seq;
    AsStream(s)->queue->Submit([other, seq]() -> Status {
      other->WaitFor(seq);
      return Status();
    });
    return Status();
  }
  static Status EventSynchronize(kestrel_plugin_device_t* d, kestrel_plugin_event_t* e) {
    RETURN_IF_ERROR(CheckDevice(d, "event_synchronize"));
    RETURN_IF_ERROR(plugin_sdk::CheckEvent(AsEvent(e), kEventMagic, AsDevice(d),
                                           "event_synchronize"));
    AsEvent(e)->queue->WaitFor(AsEvent(e)->seq);
    return Status();
  }
  static void EventDestroy(kestrel_plugin_device_t*, kestrel_plugin_event_t* event) {
    Event* e = AsEvent(event);
    if (e == nullptr || e->magic != kEventMagic) return;
    e->magic = 0;
    delete e;
  }

  // ---- weights: compiled at prepare time ----
  static Status WeightPrepare(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* desc,
                              const void* host_data, uint64_t size,
                              kestrel_plugin_weight_t** out) {
    RETURN_IF_ERROR(CheckDevice(d, "weight_prepare"));
    uint64_t needed = 0;
    RETURN_IF_ERROR(CheckWeightPrepare(desc, host_data, size, out, &needed));
    auto w = std::make_unique<Weight>();
    w->device = AsDevice(d);
    w->desc = *desc;
    w->desc.struct_size = sizeof(kestrel_tensor_desc_t);
    std::memset(w->desc.strides, 0, sizeof w->desc.strides);
    const kestrel_tensor_desc_t& t = w->desc;
    w->cols = t.dims[t.rank - 1];
    w->rows = 1;
    for (uint32_t i = 0; i + 1 < t.rank; ++i) w->rows *= t.dims[i];
    w->compiled = t.rank >= 2;
    const uint64_t bytes = w->compiled ? CompiledWeightBytes(w->rows, w->cols)
                                       : static_cast<uint64_t>(w->cols) * sizeof(float);
    RETURN_IF_ERROR(AllocateMemory(w->device, bytes, "weight_prepare", &w->memory));
    if (w->compiled) {
      CompileWeight(t.dtype, host_data, w->rows, w->cols, w->memory.data.get());
    } else {
      plugin_sdk::DequantizeRow(t.dtype, host_data, w->cols,
                                reinterpret_cast<float*>(w->memory.data.get()));
    }
    *out = reinterpret_cast<kestrel_plugin_weight_t*>(w.release());
    return Status();
  }
  static void WeightRelease(kestrel_plugin_device_t*, kestrel_plugin_weight_t* weight) {
    Weight* w = AsWeight(weight);
    if (w == nullptr || w->magic != kWeightMagic) return;
    w->device->Release(w->memory.size);
    w->magic = 0;
    delete w;
  }

  // ---- ops ----
  static Status OpQuery(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
                        kestrel_op_support_t* out) {
    RETURN_IF_ERROR(CheckDevice(d, "op_query"));
    if (op != nullptr && op->kind == KESTREL_NPU_OP_READ_CLOCK && out != nullptr) {
      RETURN_IF_ERROR(CheckReadClock(*op));
      out->level = KESTREL_OP_SUPPORTED;
      out->workspace_bytes = 0;
      return Status();
    }
    return plugin_sdk::QueryOp(HostOf(d), kPluginName, op, out, &KindOk, [&] { return Extra(*op); });
  }
  static Status OpExecute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                          const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* /*workspace*/) {
    RETURN_IF_ERROR(CheckDevice(d, "op_execute"));
    RETURN_IF_ERROR(CheckStream(d, s, "op_execute"));
    if (op == nullptr) return InvalidArgument("op_execute: op is NULL");
    Device* dev = AsDevice(d);
    if (op->kind == KESTREL_NPU_OP_READ_CLOCK) return ReadClock(d, s, *op);
    std::string name;
    std::vector<Arg> in, out;
    auto resolve = [&](const kestrel_tensor_arg_t& a, const std::string& label, bool writable,
                       Arg* r) { return ResolveArg(d, a, label, writable, r); };
    RETURN_IF_ERROR(plugin_sdk::PrepareOp(kPluginName, *op, &KindOk, [&] { return Extra(*op); },
                                          resolve, &name, &in, &out));
    CommandQueue::Command command;
    if (op->kind == KESTREL_OP_MATMUL) {
      RETURN_IF_ERROR(RunMatmul(dev, *op, in[0], in[1], out[0], &command));
    } else {
      if (op->kind == KESTREL_OP_RMSNORM && in[1].weight != nullptr && in[1].weight->compiled) {
        return InvalidArgument(name, ": input 1 (weight) is a compiled matrix, not a vector");
      }
      RETURN_IF_ERROR(RunVector(dev, *op, in, out[0], &command));
    }
    return Launch(s, std::move(command));
  }

 private:
  static kestrel_plugin_instance_t* DefaultInstance() {
    std::lock_guard<std::mutex> lock(g_default_mu);
    return reinterpret_cast<kestrel_plugin_instance_t*>(g_default);
  }

  // What the stub does not run among the descriptors the contract accepts: nothing beyond the
  // contract's own limits, except that MATMUL's x must be rank 2.
  // What CheckOp accepts but the stub declines (the runtime runs it on its fallback device).
  static std::string Extra(const kestrel_op_desc_t& op) {
    if (op.kind == KESTREL_OP_MATMUL && op.inputs[0].desc.rank != 2) return "x must be rank 2";
    if (op.kind == KESTREL_OP_MATMUL && op.n_inputs > 2) {
      return "no bias input (plugin ABI 1.2's optional MATMUL input) on the int8 array";
    }
    // The GGUF formats of ABI 1.2 beyond Q8_0/Q4_0: not compiled by this stub.
    return plugin_sdk::UnsupportedWeightDtypeReason(op, kWeightDtypeMask);
  }

  static Status ReadClock(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                          const kestrel_op_desc_t& op) {
    RETURN_IF_ERROR(CheckReadClock(op));
    Arg out;
    RETURN_IF_ERROR(ResolveArg(d, op.outputs[0], "NPU_READ_CLOCK: output 0", true, &out));
    Device* dev = AsDevice(d);
    uint8_t* to = out.data;
    return Launch(s, [=]() -> Status {
      const uint64_t ns = dev->clock_ns.load(), n = dev->launches.load();
      const uint32_t words[4] = {static_cast<uint32_t>(ns), static_cast<uint32_t>(ns >> 32),
                                 static_cast<uint32_t>(n), static_cast<uint32_t>(n >> 32)};
      std::memcpy(to, words, sizeof words);
      return Status();
    });
  }
};

const kestrel_plugin_api_t& Table() {
  static const kestrel_plugin_api_t table =
      plugin_sdk::MakeDeviceTable<NpuDevice>(kPluginName, "0.1.0");
  return table;
}

}  // namespace
}  // namespace kestrel::plugins::npu

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  using namespace kestrel::plugins::npu;
  return kestrel::plugin_sdk::GetApi(kPluginName, &Table(), host, host_major, host_minor, out,
                                     [](const kestrel_host_api_t* h) { g_host.Set(h); });
}
