// C++ wrappers over one opened plugin device: RAII buffers and prepared weights, data movement
// and op execution, all returning absl::Status. The runtime talks to devices only through this.
//
// Thread-safety: a Device serialises every call into the plugin with its own mutex (the ABI lets a
// plugin assume calls for one device are not concurrent).
#ifndef KESTREL_HAL_SRC_DEVICE_H_
#define KESTREL_HAL_SRC_DEVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/include/kestrel/plugin_api.h"
#include "hal/src/plugin_instance.h"
#include "hal/src/plugin_library.h"

namespace kestrel::hal {

class Device;

// A device buffer. Move-only; frees itself.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  ~Buffer() { Reset(); }
  void Reset();
  kestrel_plugin_buffer_t* handle() const { return handle_; }
  uint64_t size() const { return size_; }
  Device* device() const { return device_; }
  explicit operator bool() const { return handle_ != nullptr; }

 private:
  friend class Device;
  Device* device_ = nullptr;
  kestrel_plugin_buffer_t* handle_ = nullptr;
  uint64_t size_ = 0;
};

// A weight the plugin prepared (copied/repacked) once. Move-only; releases itself.
class PreparedWeight {
 public:
  PreparedWeight() = default;
  PreparedWeight(PreparedWeight&& other) noexcept { *this = std::move(other); }
  PreparedWeight& operator=(PreparedWeight&& other) noexcept;
  ~PreparedWeight() { Reset(); }
  void Reset();
  kestrel_plugin_weight_t* handle() const { return handle_; }
  const kestrel_tensor_desc_t& desc() const { return desc_; }
  explicit operator bool() const { return handle_ != nullptr; }

 private:
  friend class Device;
  Device* device_ = nullptr;
  kestrel_plugin_weight_t* handle_ = nullptr;
  kestrel_tensor_desc_t desc_{};
  uint64_t bytes_ = 0;  // the host bytes it was made from (its share of the device's accounting)
};

// A second queue of work on a device (plugin stream): copies queued on it overlap the ops queued
// on the device's own stream; events order the two. Move-only; synchronises and destroys itself.
class Stream {
 public:
  Stream() = default;
  Stream(Stream&& other) noexcept { *this = std::move(other); }
  Stream& operator=(Stream&& other) noexcept;
  ~Stream() { Reset(); }
  void Reset();
  kestrel_plugin_stream_t* handle() const { return handle_; }
  explicit operator bool() const { return handle_ != nullptr; }

 private:
  friend class Device;
  Device* device_ = nullptr;
  kestrel_plugin_stream_t* handle_ = nullptr;
};

// A point in a stream's queued work (event_record). Move-only; destroys itself.
class Event {
 public:
  Event() = default;
  Event(Event&& other) noexcept { *this = std::move(other); }
  Event& operator=(Event&& other) noexcept;
  ~Event() { Reset(); }
  void Reset();
  kestrel_plugin_event_t* handle() const { return handle_; }
  explicit operator bool() const { return handle_ != nullptr; }

 private:
  friend class Device;
  Device* device_ = nullptr;
  kestrel_plugin_event_t* handle_ = nullptr;
};

// What moved through one device since it was opened, and what it holds: the bytes of live
// buffers and prepared weights (prepared weights count the host bytes they were made from; a
// plugin's own repacking may differ), their peak, and the bytes of buffer writes (plus weight
// preparation and import) and reads.
struct DeviceMemoryStats {
  uint64_t live_bytes = 0, peak_bytes = 0;
  uint64_t host_to_device_bytes = 0, device_to_host_bytes = 0;
};

class Device {
 public:
  // Opens device `index` of `instance`. The Device keeps the instance (and its library) alive.
  static absl::StatusOr<std::unique_ptr<Device>> Open(std::shared_ptr<PluginInstance> instance,
                                                      uint32_t index);
  ~Device();

  const std::string& name() const { return name_; }
  const std::string& plugin_name() const { return instance_->library().name(); }
  const PluginInstance& instance() const { return *instance_; }
  const std::string& plugin_version() const { return instance_->library().version(); }
  const kestrel_device_caps_t& caps() const { return caps_; }
  // The minor ABI version the plugin's table declares.
  uint16_t plugin_api_minor() const { return api_->minor; }
  bool host_visible() const { return caps_.host_visible != 0; }

  absl::StatusOr<Buffer> Allocate(uint64_t size);
  // Host -> device and device -> host. Both complete before returning (the default stream is
  // synchronised), so host memory may be reused at once.
  absl::Status Write(const Buffer& dst, uint64_t dst_offset, const void* src, uint64_t size);
  absl::Status Read(const Buffer& src, uint64_t src_offset, void* dst, uint64_t size);
  absl::Status Copy(const Buffer& src, uint64_t src_offset, const Buffer& dst, uint64_t dst_offset,
                    uint64_t size);
  absl::StatusOr<PreparedWeight> PrepareWeight(const kestrel_tensor_desc_t& desc,
                                               const void* host_data, uint64_t size);
  // ---- prepared-weight export / import (plugin ABI 1.4, optional; never on a plugin reporting minor < 4) ----
  // The device's prepared-layout id; "" when the plugin cannot export (no slots, or an empty id).
  absl::StatusOr<std::string> WeightLayoutId();
  // The plugin's prepared bytes of `weight` (a weight of this device).
  absl::StatusOr<std::vector<uint8_t>> ExportWeight(const PreparedWeight& weight);
  // A weight from exported bytes. With `borrow`, `data` must stay valid and unchanged until the
  // weight is released (the plugin may use it in place). FAILED_PRECONDITION when the plugin has
  // no import slot; the plugin's INVALID_ARGUMENT when it cannot use the bytes.
  absl::StatusOr<PreparedWeight> ImportWeight(const kestrel_tensor_desc_t& desc, const void* data,
                                              uint64_t size, bool borrow);
  DeviceMemoryStats memory_stats() const;
  // A named counter of the device (device_get_counter); NOT_FOUND when the plugin has none.
  absl::StatusOr<uint64_t> Counter(const std::string& name);

  // A descriptor that uses an optional input newer than the plugin's minor version (ROPE and
  // MATMUL with a third input need 1.2) is answered UNSUPPORTED here, without asking the plugin,
  // which would reject it as malformed.
  absl::StatusOr<kestrel_op_support_t> Query(const kestrel_op_desc_t& op);
  // Enqueues `op` on the device's stream (or runs it synchronously for a synchronous plugin).
  absl::Status Execute(const kestrel_op_desc_t& op, const Buffer* workspace);
  absl::Status Synchronize();

  // ---- streams and events (the plugin ABI's optional 1.0 slots) ----
  // Whether the device queues work (it has an op stream and every stream and event slot). A
  // synchronous plugin has none: its calls complete before they return.
  bool has_streams() const { return stream_ != nullptr && has_events_; }
  // A stream besides the op stream; FAILED_PRECONDITION without has_streams().
  absl::StatusOr<Stream> CreateStream();
  // Host -> device on `stream` without waiting: `src` must stay valid and unchanged until the
  // stream is synchronised or an event recorded on it after this write has completed.
  absl::Status WriteAsync(const Stream& stream, const Buffer& dst, uint64_t dst_offset,
                          const void* src, uint64_t size);
  // An event after the work queued so far on `stream` (nullptr: the op stream).
  absl::StatusOr<Event> Record(const Stream* stream);
  // Work queued on `stream` (nullptr: the op stream) after this starts once `event` completed.
  absl::Status Wait(const Stream* stream, const Event& event);
  absl::Status Synchronize(const Stream& stream);
  // Per-device settings (plugin ABI 1.1 device_set_options). A plugin without the slot ignores
  // them: OK is returned and nothing changes.
  absl::Status SetOptions(const PluginOptions& options);

 private:
  Device() = default;
  friend class Buffer;
  friend class PreparedWeight;
  friend class Stream;
  friend class Event;
  std::string Context(const char* slot) const;
  void Hold(uint64_t bytes);
  void Drop(uint64_t bytes) { live_bytes_.fetch_sub(bytes, std::memory_order_relaxed); }

  std::shared_ptr<PluginInstance> instance_;
  const kestrel_plugin_api_t* api_ = nullptr;
  kestrel_plugin_device_t* handle_ = nullptr;
  kestrel_plugin_stream_t* stream_ = nullptr;  // NULL for synchronous plugins
  bool has_events_ = false;  // event_record, stream_wait_event, event_synchronize, event_destroy
  kestrel_device_caps_t caps_{};
  std::string name_;
  std::mutex mu_;
  std::atomic<uint64_t> live_bytes_{0}, peak_bytes_{0}, written_bytes_{0}, read_bytes_{0};
};

// Human-readable dtype name ("F32", "Q4_0", ...), "?" for unknown values.
const char* DtypeName(uint32_t dtype);
// Human-readable op kind name ("MATMUL", ...).
const char* OpKindName(uint32_t kind);

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_DEVICE_H_
