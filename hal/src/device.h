// C++ wrappers over one opened plugin device: RAII buffers and prepared weights, data movement
// and op execution, all returning absl::Status. The runtime talks to devices only through this.
//
// Thread-safety: a Device serialises every call into the plugin with its own mutex (the ABI lets a
// plugin assume calls for one device are not concurrent).
#ifndef KESTREL_HAL_SRC_DEVICE_H_
#define KESTREL_HAL_SRC_DEVICE_H_

#include <memory>
#include <mutex>
#include <string>

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
  // A descriptor that uses an optional input newer than the plugin's minor version (ROPE and
  // MATMUL with a third input need 1.2) is answered UNSUPPORTED here, without asking the plugin,
  // which would reject it as malformed.
  absl::StatusOr<kestrel_op_support_t> Query(const kestrel_op_desc_t& op);
  // Enqueues `op` on the device's stream (or runs it synchronously for a synchronous plugin).
  absl::Status Execute(const kestrel_op_desc_t& op, const Buffer* workspace);
  absl::Status Synchronize();
  // Per-device settings (plugin ABI 1.1 device_set_options). A plugin without the slot ignores
  // them: OK is returned and nothing changes.
  absl::Status SetOptions(const PluginOptions& options);

 private:
  Device() = default;
  friend class Buffer;
  friend class PreparedWeight;
  std::string Context(const char* slot) const;

  std::shared_ptr<PluginInstance> instance_;
  const kestrel_plugin_api_t* api_ = nullptr;
  kestrel_plugin_device_t* handle_ = nullptr;
  kestrel_plugin_stream_t* stream_ = nullptr;  // NULL for synchronous plugins
  kestrel_device_caps_t caps_{};
  std::string name_;
  std::mutex mu_;
};

// Human-readable dtype name ("F32", "Q4_0", ...), "?" for unknown values.
const char* DtypeName(uint32_t dtype);
// Human-readable op kind name ("MATMUL", ...).
const char* OpKindName(uint32_t kind);

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_DEVICE_H_
