// The function table of a device plugin, generated from one class of static functions.
//
// A plugin writes its slots once, as static member functions of a class `Impl` with the ABI's
// slot signatures, except that a fallible slot returns the plugin's own status type (anything
// HostRef::ToStatus takes, e.g. Status) instead of a kestrel_plugin_status_t*:
//
//   struct MyDevice {
//     static const HostRef& Host();                                    // the remembered host
//     static Status Init(const kestrel_plugin_option_t*, size_t);      // init
//     static void Shutdown();                                          // shutdown
//     static uint32_t DeviceCount(char* reason, size_t capacity);      // device_count
//     static Status DeviceGetCaps(uint32_t, kestrel_device_caps_t*);   // device_get_caps
//     ...                                                              // one per slot
//   };
//   const kestrel_plugin_api_t kTable = MakeDeviceTable<MyDevice>("name", "0.1.0");
//
// MakeDeviceTable wraps every fallible slot in Host().Guard("<abi slot name>", ...) (so a C++
// exception becomes a status naming the slot, plugin_glue.h) and shutdown in a catch-all, and
// fills the kestrel_plugin_api_t (struct_size, this header's major/minor, name, version). The
// required slots must exist; an optional one (buffer_map, the stream/event slots,
// device_set_options) that Impl does not declare stays NULL in the table.
//
// Plugin instances (ABI 1.4): an Impl that declares all five of
//     static Status InstanceCreate(const kestrel_host_api_t*, const kestrel_plugin_option_t*,
//                                  size_t, kestrel_plugin_instance_t**);
//     static void InstanceDestroy(kestrel_plugin_instance_t*);
//     static uint32_t InstanceDeviceCount(kestrel_plugin_instance_t*, char*, size_t);
//     static Status InstanceDeviceGetCaps(kestrel_plugin_instance_t*, uint32_t,
//                                         kestrel_device_caps_t*);
//     static Status InstanceDeviceOpen(kestrel_plugin_instance_t*, uint32_t,
//                                      kestrel_plugin_device_t**);
// gets the instance slots too. Its statuses and logs should then go through the host of the
// instance concerned: declaring
//     static const HostRef& HostOf(kestrel_plugin_device_t*);       // a device's instance host
//     static const HostRef& HostOfInstance(kestrel_plugin_instance_t*);
// makes the guards of the device-bound and instance slots use them (Host() is used for the rest,
// and for handles that are not the plugin's).
//
// Beside it: CopyCapsString and WriteReason for the string fields a plugin hands out, and
// DiscoveredDevices, the plugin-wide state (hosts, init count, devices) and the device_count /
// shutdown bodies of a plugin that discovers its devices once.
//
// Header-only and internal like plugin_glue.h: it depends only on the plugin ABI header and the
// standard library, and nothing in it is exported. Used by plugins/{cpu,opencl,cuda}.
#ifndef KESTREL_PLUGIN_SDK_DEVICE_TABLE_H_
#define KESTREL_PLUGIN_SDK_DEVICE_TABLE_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/plugin_glue.h"

namespace kestrel::plugin_sdk {

// Writes `src` NUL-terminated into `dst` (truncated to N - 1 bytes) and zeroes the rest of `dst`:
// the string fields of kestrel_device_caps_t.
template <size_t N>
void CopyCapsString(const std::string& src, char (&dst)[N]) {
  const size_t n = std::min(src.size(), N - 1);
  if (n > 0) std::memcpy(dst, src.data(), n);
  std::memset(dst + n, 0, N - n);
}

// What a device_get_caps slot reports. WriteDeviceCaps fills the fields that the caller's
// struct has (its struct_size decides, KESTREL_PLUGIN_HAS_SLOT), strings through
// CopyCapsString, and zeroes `reserved`.
struct DeviceCapsValues {
  uint32_t kind = 0;  // KESTREL_DEVICE_KIND_*
  std::string name, description;
  uint64_t memory_bytes = 0;
  bool host_visible = false;
  bool async = false;
  uint64_t dtype_mask = 0, weight_dtype_mask = 0;
  uint32_t accuracy_tier = KESTREL_ACCURACY_REFERENCE;  // since 1.4
};

inline void WriteDeviceCaps(const DeviceCapsValues& v, kestrel_device_caps_t* caps) {
  using C = kestrel_device_caps_t;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, kind)) caps->kind = v.kind;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, name)) CopyCapsString(v.name, caps->name);
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, description)) CopyCapsString(v.description, caps->description);
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, memory_bytes)) caps->memory_bytes = v.memory_bytes;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, host_visible)) caps->host_visible = v.host_visible ? 1 : 0;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, async)) caps->async = v.async ? 1 : 0;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, reserved)) std::memset(caps->reserved, 0, sizeof caps->reserved);
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, dtype_mask)) caps->dtype_mask = v.dtype_mask;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, weight_dtype_mask)) caps->weight_dtype_mask = v.weight_dtype_mask;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, accuracy_tier)) caps->accuracy_tier = v.accuracy_tier;
  if (KESTREL_PLUGIN_HAS_SLOT(caps, C, reserved2)) caps->reserved2 = 0;
}

// Writes text[0..length) NUL-terminated (truncated to capacity - 1 bytes) into a device_count
// reason buffer, if there is one. Allocates nothing.
inline void WriteReason(const char* text, size_t length, char* reason, size_t capacity) {
  if (reason == nullptr || capacity == 0) return;
  const size_t n = std::min(length, capacity - 1);
  std::memcpy(reason, text, n);
  reason[n] = '\0';
}

// The plugin-wide state of a plugin that discovers its devices once and may be loaded by several
// hosts at once (opencl, cuda): the hosts of the loads still alive (HostStack), the init/shutdown
// count, and the devices found (Info each) or why there is none. Every member is guarded by `mu`.
// A plugin makes one with `new` and never destroys it (slots may run during static destruction);
// it may derive from it to add state of its own.
template <typename Info>
struct DiscoveredDevices {
  std::mutex mu;
  HostStack host;      // the newest host still registered is used
  int init_count = 0;  // init/shutdown pairs (a process may load the library twice)
  bool discovered = false;
  std::vector<Info> devices;
  std::string no_device_reason;

  // Registers a host (from kestrel_plugin_get_api: the GetApi callback). Takes `mu`.
  void PushHost(const kestrel_host_api_t* h) {
    std::lock_guard<std::mutex> lock(mu);
    host.Push(h);
  }

  // The shutdown slot's work, with `mu` held: forgets the newest host; the last shutdown also
  // forgets the devices (the next device_count discovers them again) and returns true.
  bool ShutdownLocked() {
    host.Pop();
    if (--init_count > 0) return false;
    init_count = 0;
    discovered = false;
    devices.clear();
    no_device_reason.clear();
    return true;
  }

  // The device_count slot: runs discover_locked() with `mu` held (it fills devices or
  // no_device_reason; it may return at once when `discovered` is set) and returns the number of
  // devices; with none, writes no_device_reason into `reason`. An exception on the way counts 0
  // devices, with `failure` (NUL-terminated) as the reason.
  template <typename DiscoverLocked>
  uint32_t Count(char* reason, size_t capacity, const char* failure,
                 DiscoverLocked&& discover_locked) {
    try {
      std::lock_guard<std::mutex> lock(mu);
      discover_locked();
      if (devices.empty()) {
        WriteReason(no_device_reason.data(), no_device_reason.size(), reason, capacity);
      }
      return static_cast<uint32_t>(devices.size());
    } catch (...) {
      WriteReason(failure, std::strlen(failure), reason, capacity);
      return 0;
    }
  }

  // Copies device `index` to *out after discover_locked() (as for Count), under `mu`. False, with
  // *count set to the number of devices, when there is no such device.
  template <typename DiscoverLocked>
  bool Get(uint32_t index, DiscoverLocked&& discover_locked, Info* out, size_t* count) {
    std::lock_guard<std::mutex> lock(mu);
    discover_locked();
    *count = devices.size();
    if (index >= devices.size()) return false;
    *out = devices[index];
    return true;
  }
};

namespace device_table_internal {

// Whether Impl declares the slot function Op names.
template <template <typename> class Op, typename Impl, typename = void>
struct Declares : std::false_type {};
template <template <typename> class Op, typename Impl>
struct Declares<Op, Impl, std::void_t<Op<Impl>>> : std::true_type {};

template <typename T>
using BufferMapOf = decltype(&T::BufferMap);
template <typename T>
using StreamCreateOf = decltype(&T::StreamCreate);
template <typename T>
using StreamDestroyOf = decltype(&T::StreamDestroy);
template <typename T>
using StreamSynchronizeOf = decltype(&T::StreamSynchronize);
template <typename T>
using EventRecordOf = decltype(&T::EventRecord);
template <typename T>
using StreamWaitEventOf = decltype(&T::StreamWaitEvent);
template <typename T>
using EventSynchronizeOf = decltype(&T::EventSynchronize);
template <typename T>
using EventDestroyOf = decltype(&T::EventDestroy);
template <typename T>
using DeviceSetOptionsOf = decltype(&T::DeviceSetOptions);
template <typename T>
using InstanceCreateOf = decltype(&T::InstanceCreate);
template <typename T>
using HostOfOf = decltype(&T::HostOf);
template <typename T>
using HostOfInstanceOf = decltype(&T::HostOfInstance);

// The slots as the table holds them: Impl's fallible functions behind Guard.
template <typename Impl>
struct Slots {
  using Dev = kestrel_plugin_device_t;
  using Buf = kestrel_plugin_buffer_t;
  using Str = kestrel_plugin_stream_t;
  using Evt = kestrel_plugin_event_t;
  using Result = kestrel_plugin_status_t*;
  using Inst = kestrel_plugin_instance_t;

  // The host whose statuses a slot of device `d` returns.
  static const HostRef& H(Dev* d) {
    if constexpr (Declares<HostOfOf, Impl>::value) {
      return Impl::HostOf(d);
    } else {
      (void)d;
      return Impl::Host();
    }
  }
  static const HostRef& HI(Inst* i) {
    if constexpr (Declares<HostOfInstanceOf, Impl>::value) {
      return Impl::HostOfInstance(i);
    } else {
      (void)i;
      return Impl::Host();
    }
  }

  static Result Init(const kestrel_plugin_option_t* options, size_t n) {
    return Impl::Host().Guard("init", [&] { return Impl::Init(options, n); });
  }
  // The host has nothing to do with a failure here: nothing may escape into its C frames.
  static void Shutdown() {
    try {
      Impl::Shutdown();
    } catch (...) {
    }
  }
  static Result DeviceGetCaps(uint32_t index, kestrel_device_caps_t* caps) {
    return Impl::Host().Guard("device_get_caps", [&] { return Impl::DeviceGetCaps(index, caps); });
  }
  static Result DeviceOpen(uint32_t index, Dev** out) {
    return Impl::Host().Guard("device_open", [&] { return Impl::DeviceOpen(index, out); });
  }
  static Result BufferAlloc(Dev* d, uint64_t size, uint32_t flags, Buf** out) {
    return H(d).Guard("buffer_alloc",
                              [&] { return Impl::BufferAlloc(d, size, flags, out); });
  }
  static Result BufferWrite(Dev* d, Str* s, Buf* dst, uint64_t off, const void* src,
                            uint64_t size) {
    return H(d).Guard("buffer_write",
                              [&] { return Impl::BufferWrite(d, s, dst, off, src, size); });
  }
  static Result BufferRead(Dev* d, Str* s, Buf* src, uint64_t off, void* dst, uint64_t size) {
    return H(d).Guard("buffer_read",
                              [&] { return Impl::BufferRead(d, s, src, off, dst, size); });
  }
  static Result BufferCopy(Dev* d, Str* s, Buf* src, uint64_t src_off, Buf* dst, uint64_t dst_off,
                           uint64_t size) {
    return H(d).Guard(
        "buffer_copy", [&] { return Impl::BufferCopy(d, s, src, src_off, dst, dst_off, size); });
  }
  static Result BufferMap(Dev* d, Buf* b, void** out) {
    return H(d).Guard("buffer_map", [&] { return Impl::BufferMap(d, b, out); });
  }
  static Result StreamCreate(Dev* d, Str** out) {
    return H(d).Guard("stream_create", [&] { return Impl::StreamCreate(d, out); });
  }
  static Result StreamSynchronize(Dev* d, Str* s) {
    return H(d).Guard("stream_synchronize", [&] { return Impl::StreamSynchronize(d, s); });
  }
  static Result EventRecord(Dev* d, Str* s, Evt** out) {
    return H(d).Guard("event_record", [&] { return Impl::EventRecord(d, s, out); });
  }
  static Result StreamWaitEvent(Dev* d, Str* s, Evt* e) {
    return H(d).Guard("stream_wait_event", [&] { return Impl::StreamWaitEvent(d, s, e); });
  }
  static Result EventSynchronize(Dev* d, Evt* e) {
    return H(d).Guard("event_synchronize", [&] { return Impl::EventSynchronize(d, e); });
  }
  static Result WeightPrepare(Dev* d, const kestrel_tensor_desc_t* desc, const void* data,
                              uint64_t size, kestrel_plugin_weight_t** out) {
    return H(d).Guard("weight_prepare",
                              [&] { return Impl::WeightPrepare(d, desc, data, size, out); });
  }
  static Result OpQuery(Dev* d, const kestrel_op_desc_t* op, kestrel_op_support_t* out) {
    return H(d).Guard("op_query", [&] { return Impl::OpQuery(d, op, out); });
  }
  static Result OpExecute(Dev* d, Str* s, const kestrel_op_desc_t* op, Buf* workspace) {
    return H(d).Guard("op_execute", [&] { return Impl::OpExecute(d, s, op, workspace); });
  }
  static Result InstanceCreate(const kestrel_host_api_t* host,
                               const kestrel_plugin_option_t* options, size_t n, Inst** out) {
    return Impl::Host().Guard("instance_create",
                              [&] { return Impl::InstanceCreate(host, options, n, out); });
  }
  static void InstanceDestroy(Inst* i) {
    try {
      Impl::InstanceDestroy(i);
    } catch (...) {
    }
  }
  static Result InstanceDeviceGetCaps(Inst* i, uint32_t index, kestrel_device_caps_t* caps) {
    return HI(i).Guard("instance_device_get_caps",
                       [&] { return Impl::InstanceDeviceGetCaps(i, index, caps); });
  }
  static Result InstanceDeviceOpen(Inst* i, uint32_t index, Dev** out) {
    return HI(i).Guard("instance_device_open",
                       [&] { return Impl::InstanceDeviceOpen(i, index, out); });
  }
  static Result DeviceSetOptions(Dev* d, const kestrel_plugin_option_t* options, size_t n) {
    return H(d).Guard("device_set_options",
                              [&] { return Impl::DeviceSetOptions(d, options, n); });
  }
};

}  // namespace device_table_internal

// The table of the plugin whose slots are Impl's (see the top of this file). `name` and `version`
// are NUL-terminated and static.
template <typename Impl>
kestrel_plugin_api_t MakeDeviceTable(const char* name, const char* version) {
  namespace dt = device_table_internal;
  using S = dt::Slots<Impl>;
  kestrel_plugin_api_t t{};
  t.struct_size = sizeof(kestrel_plugin_api_t);
  t.major = KESTREL_PLUGIN_API_MAJOR;
  t.minor = KESTREL_PLUGIN_API_MINOR;
  t.name = name;
  t.version = version;
  t.init = &S::Init;
  t.shutdown = &S::Shutdown;
  t.device_count = &Impl::DeviceCount;
  t.device_get_caps = &S::DeviceGetCaps;
  t.device_open = &S::DeviceOpen;
  t.device_close = &Impl::DeviceClose;
  t.buffer_alloc = &S::BufferAlloc;
  t.buffer_free = &Impl::BufferFree;
  t.buffer_write = &S::BufferWrite;
  t.buffer_read = &S::BufferRead;
  t.buffer_copy = &S::BufferCopy;
  if constexpr (dt::Declares<dt::BufferMapOf, Impl>::value) t.buffer_map = &S::BufferMap;
  if constexpr (dt::Declares<dt::StreamCreateOf, Impl>::value) t.stream_create = &S::StreamCreate;
  if constexpr (dt::Declares<dt::StreamDestroyOf, Impl>::value) {
    t.stream_destroy = &Impl::StreamDestroy;
  }
  if constexpr (dt::Declares<dt::StreamSynchronizeOf, Impl>::value) {
    t.stream_synchronize = &S::StreamSynchronize;
  }
  if constexpr (dt::Declares<dt::EventRecordOf, Impl>::value) t.event_record = &S::EventRecord;
  if constexpr (dt::Declares<dt::StreamWaitEventOf, Impl>::value) {
    t.stream_wait_event = &S::StreamWaitEvent;
  }
  if constexpr (dt::Declares<dt::EventSynchronizeOf, Impl>::value) {
    t.event_synchronize = &S::EventSynchronize;
  }
  if constexpr (dt::Declares<dt::EventDestroyOf, Impl>::value) {
    t.event_destroy = &Impl::EventDestroy;
  }
  t.weight_prepare = &S::WeightPrepare;
  t.weight_release = &Impl::WeightRelease;
  t.op_query = &S::OpQuery;
  t.op_execute = &S::OpExecute;
  if constexpr (dt::Declares<dt::DeviceSetOptionsOf, Impl>::value) {
    t.device_set_options = &S::DeviceSetOptions;
  }
  if constexpr (dt::Declares<dt::InstanceCreateOf, Impl>::value) {
    t.instance_create = &S::InstanceCreate;
    t.instance_destroy = &S::InstanceDestroy;
    t.instance_device_count = &Impl::InstanceDeviceCount;
    t.instance_device_get_caps = &S::InstanceDeviceGetCaps;
    t.instance_device_open = &S::InstanceDeviceOpen;
  }
  return t;
}

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_DEVICE_TABLE_H_
