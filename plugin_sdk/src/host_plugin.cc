#include "kestrel/plugin_sdk/host_plugin.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "kestrel/plugin_sdk/device_checks.h"
#include "kestrel/plugin_sdk/device_table.h"
#include "kestrel/plugin_sdk/plugin_glue.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/reference_ops.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugin_sdk {
namespace {

constexpr size_t kBufferAlignment = 64;

// Tags that catch a handle of the wrong type or from another plugin table before it is used.
constexpr uint32_t kDeviceMagic = 0x4B444556;  // "KDEV"
constexpr uint32_t kBufferMagic = 0x4B425546;  // "KBUF"
constexpr uint32_t kWeightMagic = 0x4B575454;  // "KWTT"
constexpr uint32_t kInstanceMagic = 0x4B494E53;  // "KINS"

class HostPlugin;

// One instance of the plugin (ABI 1.4): its own host table, so its own log sink. The 1.1 slots
// (init, device_count, ...) use the plugin's default instance, whose host is get_api's.
struct Instance {
  uint32_t magic = kInstanceMagic;
  HostPlugin* plugin = nullptr;
  HostRef host;
};

struct Device {
  uint32_t magic = kDeviceMagic;
  HostPlugin* plugin = nullptr;
  Instance* instance = nullptr;  // the instance that opened it: its host gets the device's logs
  uint32_t index = 0;
};

struct AlignedBytes {
  void* data = nullptr;
  uint64_t size = 0;
  AlignedBytes() = default;
  explicit AlignedBytes(uint64_t n) : size(n) {
    data = ::operator new(static_cast<size_t>(std::max<uint64_t>(n, 1)),
                          std::align_val_t(kBufferAlignment));
  }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  ~AlignedBytes() {
    if (data != nullptr) ::operator delete(data, std::align_val_t(kBufferAlignment));
  }
};

struct Buffer {
  uint32_t magic = kBufferMagic;
  Device* device = nullptr;
  AlignedBytes bytes;
  explicit Buffer(uint64_t size) : bytes(size) {}
};

struct Weight {
  uint32_t magic = kWeightMagic;
  Device* device = nullptr;
  kestrel_tensor_desc_t desc{};  // packed (strides zeroed)
  AlignedBytes bytes;
  explicit Weight(uint64_t size) : bytes(size) {}
};

Device* AsDevice(kestrel_plugin_device_t* d) { return reinterpret_cast<Device*>(d); }
Buffer* AsBuffer(kestrel_plugin_buffer_t* b) { return reinterpret_cast<Buffer*>(b); }
Weight* AsWeight(kestrel_plugin_weight_t* w) { return reinterpret_cast<Weight*>(w); }

class HostPlugin {
 public:
  HostPlugin(const HostPluginConfig* config, kestrel_plugin_api_t table)
      : config_(config), table_(table) {
    table_.name = config->plugin_name;
    table_.version = config->plugin_version != nullptr ? config->plugin_version : "0.1.0";
    default_instance_.plugin = this;
  }

  const HostPluginConfig* config() const { return config_; }
  const kestrel_plugin_api_t* table() const { return &table_; }

  // ---- status and logging --------------------------------------------------------------------
  void set_host(const kestrel_host_api_t* host) {
    host_.Set(host);
    default_instance_.host.Set(host);
  }
  Instance* default_instance() { return &default_instance_; }
  template <typename Body>
  kestrel_plugin_status_t* Guard(const char* slot, Body&& body) const {
    return host_.Guard(slot, std::forward<Body>(body));
  }
  // The host of the instance that opened `d` (get_api's host for a handle that is not a device of
  // this plugin: the slot's own check then reports it).
  const HostRef& HostOf(kestrel_plugin_device_t* d) const {
    const Device* device = AsDevice(d);
    if (device != nullptr && device->magic == kDeviceMagic && device->plugin == this) {
      return device->instance->host;
    }
    return host_;
  }
  template <typename Body>
  kestrel_plugin_status_t* GuardFor(kestrel_plugin_device_t* d, const char* slot,
                                    Body&& body) const {
    return HostOf(d).Guard(slot, std::forward<Body>(body));
  }
  // An instance handle of this plugin, or NULL.
  Instance* AsInstance(kestrel_plugin_instance_t* i) const {
    Instance* instance = reinterpret_cast<Instance*>(i);
    if (instance == nullptr || instance->magic != kInstanceMagic || instance->plugin != this) {
      return nullptr;
    }
    return instance;
  }

  // ---- slots ---------------------------------------------------------------------------------
  // init (1.1) and instance_create (1.4): the options of `instance`.
  Status Init(Instance* instance, const kestrel_plugin_option_t* options, size_t n_options,
              const char* slot) {
    if (n_options > 0 && options == nullptr) return InvalidArgument(slot, ": options is NULL");
    for (size_t i = 0; i < n_options; ++i) {
      instance->host.Log(KESTREL_PLUGIN_LOG_DEBUG,
                         StrCat(config_->plugin_name, ": ignoring option '",
                                options[i].key ? options[i].key : "(null)", "'"));
    }
    return Status();
  }

  // instance_create: `host` must be usable (the 1.0 table or larger, status_create set).
  Status CreateInstance(const kestrel_host_api_t* host, const kestrel_plugin_option_t* options,
                        size_t n_options, kestrel_plugin_instance_t** out) {
    if (out == nullptr) return InvalidArgument("instance_create: out_instance is NULL");
    *out = nullptr;
    if (host == nullptr || host->struct_size < sizeof(kestrel_host_api_t) ||
        host->status_create == nullptr) {
      return InvalidArgument("instance_create: host table is NULL, smaller than the 1.0 table or "
                             "has no status_create");
    }
    auto instance = std::make_unique<Instance>();
    instance->plugin = this;
    instance->host.Set(host);
    KESTREL_SDK_RETURN_IF_ERROR(Init(instance.get(), options, n_options, "instance_create"));
    *out = reinterpret_cast<kestrel_plugin_instance_t*>(instance.release());
    return Status();
  }

  uint32_t DeviceCount(char* /*reason*/, size_t /*reason_capacity*/) const { return 1; }

  Status GetCaps(uint32_t index, kestrel_device_caps_t* caps) const {
    if (caps == nullptr) return InvalidArgument("device_get_caps: caps is NULL");
    if (index != 0) return OutOfRange("device_get_caps: index ", index, " >= device count 1");
    DeviceCapsValues v;
    v.kind = KESTREL_DEVICE_KIND_CPU;
    v.name = config_->device_name != nullptr ? config_->device_name : "";
    v.description = config_->description != nullptr ? config_->description : "";
    v.memory_bytes = HostMemoryBytes();
    v.host_visible = true;
    v.dtype_mask = HostPluginDtypeMask();
    v.weight_dtype_mask = HostPluginWeightDtypeMask();
    WriteDeviceCaps(v, caps);
    return Status();
  }

  Status OpenDevice(Instance* instance, uint32_t index, kestrel_plugin_device_t** out) {
    if (out == nullptr) return InvalidArgument("device_open: out_device is NULL");
    if (index != 0) return OutOfRange("device_open: index ", index, " >= device count 1");
    Device* device = new Device;
    device->plugin = this;
    device->instance = instance;
    device->index = index;
    *out = reinterpret_cast<kestrel_plugin_device_t*>(device);
    return Status();
  }

  Status CheckDevice(kestrel_plugin_device_t* d, const char* slot) const {
    const Device* device = AsDevice(d);
    if (device == nullptr) return InvalidArgument(slot, ": device is NULL");
    if (device->magic != kDeviceMagic || device->plugin != this) {
      return InvalidArgument(slot, ": device is not a device of plugin '", config_->plugin_name,
                             "'");
    }
    return Status();
  }

  Status CheckBuffer(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b, const char* slot,
                     const char* what) const {
    const Buffer* buffer = AsBuffer(b);
    if (buffer == nullptr) return InvalidArgument(slot, ": ", what, " is NULL");
    if (buffer->magic != kBufferMagic || buffer->device != AsDevice(d)) {
      return InvalidArgument(slot, ": ", what, " is not a buffer of this device");
    }
    return Status();
  }

  Status CheckStream(kestrel_plugin_stream_t* stream, const char* slot) const {
    if (stream != nullptr) {
      return InvalidArgument(slot, ": stream must be NULL (plugin '", config_->plugin_name,
                             "' is synchronous and creates no streams)");
    }
    return Status();
  }

  Status BufferAlloc(kestrel_plugin_device_t* d, uint64_t size, uint32_t /*flags*/,
                     kestrel_plugin_buffer_t** out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_alloc"));
    if (out == nullptr) return InvalidArgument("buffer_alloc: out_buffer is NULL");
    KESTREL_SDK_RETURN_IF_ERROR(CheckHostAllocation(size, "buffer_alloc"));
    Buffer* buffer;
    try {
      buffer = new Buffer(size);
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("buffer_alloc: cannot allocate ", size, " bytes of host memory");
    }
    buffer->device = AsDevice(d);
    *out = reinterpret_cast<kestrel_plugin_buffer_t*>(buffer);
    return Status();
  }

  Status BufferWrite(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                     kestrel_plugin_buffer_t* dst, uint64_t dst_offset, const void* src,
                     uint64_t size) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_write"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "buffer_write"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_write", "dst"));
    Buffer* buffer = AsBuffer(dst);
    if (!InRange(dst_offset, size, buffer->bytes.size)) {
      return OutOfRange("buffer_write: [", dst_offset, ", +", size, ") exceeds the buffer size ",
                        buffer->bytes.size);
    }
    if (size == 0) return Status();
    if (src == nullptr) return InvalidArgument("buffer_write: src is NULL");
    std::memmove(static_cast<uint8_t*>(buffer->bytes.data) + dst_offset, src, size);
    return Status();
  }

  Status BufferRead(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                    kestrel_plugin_buffer_t* src, uint64_t src_offset, void* dst, uint64_t size) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_read"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "buffer_read"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_read", "src"));
    Buffer* buffer = AsBuffer(src);
    if (!InRange(src_offset, size, buffer->bytes.size)) {
      return OutOfRange("buffer_read: [", src_offset, ", +", size, ") exceeds the buffer size ",
                        buffer->bytes.size);
    }
    if (size == 0) return Status();
    if (dst == nullptr) return InvalidArgument("buffer_read: dst is NULL");
    std::memmove(dst, static_cast<const uint8_t*>(buffer->bytes.data) + src_offset, size);
    return Status();
  }

  Status BufferCopy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                    kestrel_plugin_buffer_t* src, uint64_t src_offset,
                    kestrel_plugin_buffer_t* dst, uint64_t dst_offset, uint64_t size) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_copy"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "buffer_copy"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, src, "buffer_copy", "src"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, dst, "buffer_copy", "dst"));
    Buffer* s = AsBuffer(src);
    Buffer* t = AsBuffer(dst);
    if (!InRange(src_offset, size, s->bytes.size) || !InRange(dst_offset, size, t->bytes.size)) {
      return OutOfRange("buffer_copy: ", size, " bytes from offset ", src_offset, " (size ",
                        s->bytes.size, ") to offset ", dst_offset, " (size ", t->bytes.size,
                        ") exceed a buffer");
    }
    if (size == 0) return Status();
    // The ABI forbids overlap; memmove makes it harmless anyway.
    std::memmove(static_cast<uint8_t*>(t->bytes.data) + dst_offset,
                 static_cast<const uint8_t*>(s->bytes.data) + src_offset, size);
    return Status();
  }

  Status BufferMap(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b, void** out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "buffer_map"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, b, "buffer_map", "buffer"));
    if (out == nullptr) return InvalidArgument("buffer_map: out_ptr is NULL");
    *out = AsBuffer(b)->bytes.data;
    return Status();
  }

  Status WeightPrepare(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* desc,
                       const void* host_data, uint64_t size, kestrel_plugin_weight_t** out) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "weight_prepare"));
    uint64_t needed = 0;
    KESTREL_SDK_RETURN_IF_ERROR(CheckWeightPrepare(desc, host_data, size, out, &needed));
    Weight* weight;
    try {
      weight = new Weight(needed);
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("weight_prepare: cannot allocate ", needed, " bytes");
    }
    weight->device = AsDevice(d);
    weight->desc = *desc;
    weight->desc.struct_size = sizeof(kestrel_tensor_desc_t);
    std::memset(weight->desc.strides, 0, sizeof weight->desc.strides);
    if (needed > 0) std::memcpy(weight->bytes.data, host_data, needed);
    *out = reinterpret_cast<kestrel_plugin_weight_t*>(weight);
    return Status();
  }

  Status OpQuery(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
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
    if (!KindEnabled(op->kind)) return Status();
    OpCheck check;
    KESTREL_SDK_RETURN_IF_ERROR(CheckOp(*op, &check));
    if (!check.supported) {
      HostOf(d).Log(KESTREL_PLUGIN_LOG_DEBUG, StrCat(config_->plugin_name, ": unsupported: ", check.reason));
      return Status();
    }
    out->level = config_->support_level;
    return Status();
  }

  Status OpExecute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* stream,
                   const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* /*workspace*/) {
    KESTREL_SDK_RETURN_IF_ERROR(CheckDevice(d, "op_execute"));
    KESTREL_SDK_RETURN_IF_ERROR(CheckStream(stream, "op_execute"));
    if (op == nullptr) return InvalidArgument("op_execute: op is NULL");
    const std::string name = OpKindName(op->kind);
    if (!KindEnabled(op->kind)) {
      return Unimplemented(name, ": not supported by plugin '", config_->plugin_name, "'");
    }
    OpCheck check;
    KESTREL_SDK_RETURN_IF_ERROR(CheckOp(*op, &check));
    if (!check.supported) return Unimplemented(check.reason);
    std::vector<const void*> inputs(op->n_inputs);
    std::vector<void*> outputs(op->n_outputs);
    for (uint32_t i = 0; i < op->n_inputs; ++i) {
      void* ptr = nullptr;
      KESTREL_SDK_RETURN_IF_ERROR(
          ResolveArg(d, op->inputs[i], StrCat(name, ": input ", i), /*writable=*/false, &ptr));
      inputs[i] = ptr;
    }
    for (uint32_t i = 0; i < op->n_outputs; ++i) {
      KESTREL_SDK_RETURN_IF_ERROR(
          ResolveArg(d, op->outputs[i], StrCat(name, ": output ", i), /*writable=*/true,
                     &outputs[i]));
    }
    if (config_->execute != nullptr) return config_->execute(*op, inputs.data(), outputs.data());
    return ExecuteOp(*op, inputs.data(), outputs.data());
  }

  static void CloseDevice(kestrel_plugin_device_t* d) { delete AsDevice(d); }
  static void FreeBuffer(kestrel_plugin_buffer_t* b) { delete AsBuffer(b); }
  static void ReleaseWeight(kestrel_plugin_weight_t* w) { delete AsWeight(w); }

 private:
  bool KindEnabled(uint32_t kind) const {
    return config_->supports_kind != nullptr ? config_->supports_kind(kind)
                                          : IsImplementedKind(kind);
  }

  // Resolves one tensor argument to a host pointer holding its packed bytes.
  Status ResolveArg(kestrel_plugin_device_t* d, const kestrel_tensor_arg_t& arg,
                    const std::string& label, bool writable, void** out) const {
    const kestrel_tensor_desc_t& desc = arg.desc;
    const uint64_t bytes = TensorBytes(desc);
    if ((arg.buffer == nullptr) == (arg.weight == nullptr)) {
      return InvalidArgument(label, ": exactly one of buffer and weight must be set");
    }
    uint8_t* base;
    if (arg.weight != nullptr) {
      if (writable) return InvalidArgument(label, ": a prepared weight cannot be an output");
      const Weight* w = AsWeight(arg.weight);
      if (w->magic != kWeightMagic || w->device != AsDevice(d)) {
        return InvalidArgument(label, ": weight is not a prepared weight of this device");
      }
      if (arg.offset != 0) return InvalidArgument(label, ": offset=", arg.offset, " with a weight");
      if (w->desc.dtype != desc.dtype || w->desc.rank != desc.rank ||
          !std::equal(desc.dims, desc.dims + desc.rank, w->desc.dims)) {
        return InvalidArgument(label, ": desc (", DtypeName(desc.dtype), ", rank ", desc.rank,
                               ") does not match the prepared weight's desc (",
                               DtypeName(w->desc.dtype), ", rank ", w->desc.rank,
                               ") or its dims differ");
      }
      base = static_cast<uint8_t*>(w->bytes.data);
    } else {
      KESTREL_SDK_RETURN_IF_ERROR(CheckBuffer(d, arg.buffer, label.c_str(), "buffer"));
      const Buffer* b = AsBuffer(arg.buffer);
      if (!InRange(arg.offset, bytes, b->bytes.size)) {
        return OutOfRange(label, ": offset ", arg.offset, " + ", bytes,
                          " bytes exceeds the buffer size ", b->bytes.size);
      }
      if (arg.offset % DtypeAlignment(desc.dtype) != 0) {
        return InvalidArgument(label, ": offset ", arg.offset, " is not a multiple of ",
                               DtypeAlignment(desc.dtype), " (", DtypeName(desc.dtype), ")");
      }
      base = static_cast<uint8_t*>(b->bytes.data) + arg.offset;
    }
    *out = base;
    return Status();
  }

  const HostPluginConfig* config_;
  kestrel_plugin_api_t table_;
  HostRef host_;               // get_api's host
  Instance default_instance_;  // the 1.1 slots' instance
};

// ---- per-instance slot functions ---------------------------------------------------------------
// Slots without a device argument cannot find their instance, so each of the kMaxHostPlugins
// instances gets its own set of trampolines.

std::mutex g_registry_mutex;
std::array<HostPlugin*, kMaxHostPlugins> g_instances{};  // freed by the shutdown slot

template <int I>
struct Slots {
  static HostPlugin& P() { return *g_instances[I]; }

  static kestrel_plugin_status_t* Init(const kestrel_plugin_option_t* options, size_t n) {
    return P().Guard("init", [&] {
      return P().Init(P().default_instance(), options, n, "init");
    });
  }
  // Frees the instance (the host calls shutdown once, before dlclose, and never uses the table
  // afterwards); a later HostPluginGetApi for the config makes a fresh one.
  static void Shutdown() {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    delete g_instances[I];
    g_instances[I] = nullptr;
  }
  static uint32_t DeviceCount(char* reason, size_t capacity) {
    return P().DeviceCount(reason, capacity);
  }
  static kestrel_plugin_status_t* DeviceGetCaps(uint32_t index, kestrel_device_caps_t* caps) {
    return P().Guard("device_get_caps", [&] { return P().GetCaps(index, caps); });
  }
  static kestrel_plugin_status_t* DeviceOpen(uint32_t index, kestrel_plugin_device_t** out) {
    return P().Guard("device_open",
                     [&] { return P().OpenDevice(P().default_instance(), index, out); });
  }
  static void DeviceClose(kestrel_plugin_device_t* d) { HostPlugin::CloseDevice(d); }
  static kestrel_plugin_status_t* BufferAlloc(kestrel_plugin_device_t* d, uint64_t size,
                                              uint32_t flags, kestrel_plugin_buffer_t** out) {
    return P().GuardFor(d, "buffer_alloc", [&] { return P().BufferAlloc(d, size, flags, out); });
  }
  static void BufferFree(kestrel_plugin_device_t*, kestrel_plugin_buffer_t* b) {
    HostPlugin::FreeBuffer(b);
  }
  static kestrel_plugin_status_t* BufferWrite(kestrel_plugin_device_t* d,
                                              kestrel_plugin_stream_t* s,
                                              kestrel_plugin_buffer_t* dst, uint64_t off,
                                              const void* src, uint64_t size) {
    return P().GuardFor(d, "buffer_write", [&] { return P().BufferWrite(d, s, dst, off, src, size); });
  }
  static kestrel_plugin_status_t* BufferRead(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                             kestrel_plugin_buffer_t* src, uint64_t off, void* dst,
                                             uint64_t size) {
    return P().GuardFor(d, "buffer_read", [&] { return P().BufferRead(d, s, src, off, dst, size); });
  }
  static kestrel_plugin_status_t* BufferCopy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                             kestrel_plugin_buffer_t* src, uint64_t src_off,
                                             kestrel_plugin_buffer_t* dst, uint64_t dst_off,
                                             uint64_t size) {
    return P().GuardFor(d, "buffer_copy",
                     [&] { return P().BufferCopy(d, s, src, src_off, dst, dst_off, size); });
  }
  static kestrel_plugin_status_t* BufferMap(kestrel_plugin_device_t* d,
                                            kestrel_plugin_buffer_t* b, void** out) {
    return P().GuardFor(d, "buffer_map", [&] { return P().BufferMap(d, b, out); });
  }
  static kestrel_plugin_status_t* WeightPrepare(kestrel_plugin_device_t* d,
                                                const kestrel_tensor_desc_t* desc,
                                                const void* data, uint64_t size,
                                                kestrel_plugin_weight_t** out) {
    return P().GuardFor(d, "weight_prepare",
                     [&] { return P().WeightPrepare(d, desc, data, size, out); });
  }
  static void WeightRelease(kestrel_plugin_device_t*, kestrel_plugin_weight_t* w) {
    HostPlugin::ReleaseWeight(w);
  }
  static kestrel_plugin_status_t* OpQuery(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
                                          kestrel_op_support_t* out) {
    return P().GuardFor(d, "op_query", [&] { return P().OpQuery(d, op, out); });
  }
  static kestrel_plugin_status_t* OpExecute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                            const kestrel_op_desc_t* op,
                                            kestrel_plugin_buffer_t* workspace) {
    return P().GuardFor(d, "op_execute", [&] { return P().OpExecute(d, s, op, workspace); });
  }

  // ---- ABI 1.4 instances ----
  static kestrel_plugin_status_t* InstanceCreate(const kestrel_host_api_t* host,
                                                 const kestrel_plugin_option_t* options, size_t n,
                                                 kestrel_plugin_instance_t** out) {
    return P().Guard("instance_create",
                     [&] { return P().CreateInstance(host, options, n, out); });
  }
  static void InstanceDestroy(kestrel_plugin_instance_t* i) { delete P().AsInstance(i); }
  static uint32_t InstanceDeviceCount(kestrel_plugin_instance_t* i, char* reason,
                                      size_t capacity) {
    if (P().AsInstance(i) == nullptr) {
      static const char kNotOurs[] = "instance_device_count: not an instance of this plugin";
      WriteReason(kNotOurs, sizeof kNotOurs - 1, reason, capacity);
      return 0;
    }
    return P().DeviceCount(reason, capacity);
  }
  static kestrel_plugin_status_t* InstanceDeviceGetCaps(kestrel_plugin_instance_t* i,
                                                        uint32_t index,
                                                        kestrel_device_caps_t* caps) {
    Instance* instance = P().AsInstance(i);
    if (instance == nullptr) return InstanceError("instance_device_get_caps");
    return instance->host.Guard("device_get_caps", [&] { return P().GetCaps(index, caps); });
  }
  static kestrel_plugin_status_t* InstanceDeviceOpen(kestrel_plugin_instance_t* i, uint32_t index,
                                                     kestrel_plugin_device_t** out) {
    Instance* instance = P().AsInstance(i);
    if (instance == nullptr) return InstanceError("instance_device_open");
    return instance->host.Guard("device_open",
                                [&] { return P().OpenDevice(instance, index, out); });
  }
  static kestrel_plugin_status_t* InstanceError(const char* slot) {
    return P().Guard(slot, [&] {
      return InvalidArgument(slot, ": instance is NULL or not an instance of plugin '",
                             P().config()->plugin_name, "'");
    });
  }

  static kestrel_plugin_api_t Table() {
    kestrel_plugin_api_t t{};
    t.struct_size = sizeof(kestrel_plugin_api_t);
    t.major = KESTREL_PLUGIN_API_MAJOR;
    t.minor = KESTREL_PLUGIN_API_MINOR;
    t.init = &Init;
    t.shutdown = &Shutdown;
    t.device_count = &DeviceCount;
    t.device_get_caps = &DeviceGetCaps;
    t.device_open = &DeviceOpen;
    t.device_close = &DeviceClose;
    t.buffer_alloc = &BufferAlloc;
    t.buffer_free = &BufferFree;
    t.buffer_write = &BufferWrite;
    t.buffer_read = &BufferRead;
    t.buffer_copy = &BufferCopy;
    t.buffer_map = &BufferMap;
    // Streams and events stay NULL: the device is synchronous.
    t.weight_prepare = &WeightPrepare;
    t.weight_release = &WeightRelease;
    t.op_query = &OpQuery;
    t.op_execute = &OpExecute;
    t.instance_create = &InstanceCreate;
    t.instance_destroy = &InstanceDestroy;
    t.instance_device_count = &InstanceDeviceCount;
    t.instance_device_get_caps = &InstanceDeviceGetCaps;
    t.instance_device_open = &InstanceDeviceOpen;
    return t;
  }
};

template <size_t... I>
constexpr std::array<kestrel_plugin_api_t (*)(), sizeof...(I)> MakeTableFactories(
    std::index_sequence<I...>) {
  return {&Slots<static_cast<int>(I)>::Table...};
}

const auto kTableFactories = MakeTableFactories(std::make_index_sequence<kMaxHostPlugins>());

kestrel_plugin_status_t* HostStatus(const kestrel_host_api_t* host,
                                    kestrel_plugin_status_code_t code, const std::string& msg) {
  return host->status_create(host->host_ctx, code, msg.data(), msg.size());
}

// The part of HostPluginGetApi after the shared checks (plugin_glue.h GetApi): finds or makes the
// instance for `config`, remembers `host` in it and writes its table to *out.
kestrel_plugin_status_t* RegisterHost(const HostPluginConfig* config, const char* name,
                                      const kestrel_host_api_t* host,
                                      const kestrel_plugin_api_t** out) {
  try {
    if (config == nullptr || config->plugin_name == nullptr || config->device_name == nullptr) {
      return HostStatus(host, KESTREL_PLUGIN_INVALID_ARGUMENT,
                        "kestrel_plugin_get_api: incomplete HostPluginConfig");
    }
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    for (size_t i = 0; i < g_instances.size(); ++i) {
      if (g_instances[i] == nullptr) {
        g_instances[i] = new HostPlugin(config, kTableFactories[i]());
      } else if (g_instances[i]->config() != config) {
        continue;
      }
      g_instances[i]->set_host(host);
      *out = g_instances[i]->table();
      return nullptr;
    }
    return HostStatus(host, KESTREL_PLUGIN_RESOURCE_EXHAUSTED,
                      StrCat("kestrel_plugin_get_api(", name, "): more than ", kMaxHostPlugins,
                             " host plugin configurations in one process"));
  } catch (const std::bad_alloc&) {
    return ConcatStatus(host, KESTREL_PLUGIN_RESOURCE_EXHAUSTED,
                        {"kestrel_plugin_get_api: out of host memory"});
  }
}

}  // namespace

uint64_t HostMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

Status CheckHostAllocation(uint64_t size, const char* slot) {
  const uint64_t memory = HostMemoryBytes();
  const uint64_t limit = memory != 0 ? std::min<uint64_t>(memory, uint64_t{1} << 62) : uint64_t{1} << 62;
  if (size > limit) {
    return ResourceExhausted(slot, ": cannot allocate ", size, " bytes: more than the device's ",
                             limit, " bytes of memory");
  }
  return Status();
}

uint64_t HostPluginDtypeMask() {
  return KESTREL_DTYPE_BIT(KESTREL_DTYPE_I32) | HostPluginWeightDtypeMask();
}

uint64_t HostPluginWeightDtypeMask() {
  uint64_t mask = 0;
  for (uint32_t dt = 0; dt < 64; ++dt) {
    if (IsWeightDtype(dt)) mask |= KESTREL_DTYPE_BIT(dt);
  }
  return mask;
}

kestrel_plugin_status_t* HostPluginGetApi(const HostPluginConfig* config,
                                          const kestrel_host_api_t* host, uint16_t host_major,
                                          uint16_t host_minor, const kestrel_plugin_api_t** out) {
  const char* name = config != nullptr && config->plugin_name ? config->plugin_name : "(null)";
  return GetApi(name, host, host_major, host_minor, out,
                [&](const kestrel_host_api_t* h, const kestrel_plugin_api_t** o) {
                  return RegisterHost(config, name, h, o);
                });
}

}  // namespace kestrel::plugin_sdk
