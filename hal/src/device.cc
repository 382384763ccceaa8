#include "hal/src/device.h"

#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hal/src/host_api.h"

namespace kestrel::hal {
namespace {

// Prepared-weight export/import and device counters are plugin ABI 1.4 slots: a plugin reporting
// an older minor is never asked, whatever its table length.
constexpr uint16_t kPreparedWeightsMinor = 4;

// The plugin ABI minor version a descriptor needs: optional inputs appended in 1.2; GEGLU and
// the version-2 forms (embedding scale, attention window) in 1.3. A plugin must decline a
// version it does not know, but one that never looked at op_version would run the op without
// its scale or window: the host does not ask it.
uint16_t MinorVersionFor(const kestrel_op_desc_t& op) {
  if (op.kind == KESTREL_OP_GEGLU || op.op_version > 1) return 3;
  if ((op.kind == KESTREL_OP_ROPE || op.kind == KESTREL_OP_MATMUL) && op.n_inputs > 2) return 2;
  return 0;
}

}  // namespace

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Reset();
    device_ = other.device_;
    handle_ = other.handle_;
    size_ = other.size_;
    other.device_ = nullptr;
    other.handle_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void Buffer::Reset() {
  if (handle_ != nullptr && device_ != nullptr) {
    std::lock_guard<std::mutex> lock(device_->mu_);
    if (device_->stream_ != nullptr) {
      // The ABI asks the host to make sure no queued work still uses the buffer.
      TakePluginStatus(device_->api_->stream_synchronize(device_->handle_, device_->stream_), "").IgnoreError();
    }
    device_->api_->buffer_free(device_->handle_, handle_);
    device_->Drop(size_);
  }
  device_ = nullptr;
  handle_ = nullptr;
  size_ = 0;
}

PreparedWeight& PreparedWeight::operator=(PreparedWeight&& other) noexcept {
  if (this != &other) {
    Reset();
    device_ = other.device_;
    handle_ = other.handle_;
    desc_ = other.desc_;
    bytes_ = other.bytes_;
    other.device_ = nullptr;
    other.handle_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

void PreparedWeight::Reset() {
  if (handle_ != nullptr && device_ != nullptr) {
    std::lock_guard<std::mutex> lock(device_->mu_);
    if (device_->stream_ != nullptr) {
      TakePluginStatus(device_->api_->stream_synchronize(device_->handle_, device_->stream_), "").IgnoreError();
    }
    device_->api_->weight_release(device_->handle_, handle_);
    device_->Drop(bytes_);
  }
  device_ = nullptr;
  handle_ = nullptr;
  bytes_ = 0;
}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this == &other) return *this;
  Reset();
  std::swap(device_, other.device_);  // other is left empty
  std::swap(handle_, other.handle_);
  return *this;
}

void Stream::Reset() {
  if (handle_ != nullptr && device_ != nullptr) {
    std::lock_guard<std::mutex> lock(device_->mu_);
    TakePluginStatus(device_->api_->stream_synchronize(device_->handle_, handle_), "").IgnoreError();
    device_->api_->stream_destroy(device_->handle_, handle_);
  }
  device_ = nullptr;
  handle_ = nullptr;
}

Event& Event::operator=(Event&& other) noexcept {
  if (this == &other) return *this;
  Reset();
  std::swap(device_, other.device_);  // other is left empty
  std::swap(handle_, other.handle_);
  return *this;
}

void Event::Reset() {
  if (handle_ != nullptr && device_ != nullptr) {
    std::lock_guard<std::mutex> lock(device_->mu_);
    device_->api_->event_destroy(device_->handle_, handle_);
  }
  device_ = nullptr;
  handle_ = nullptr;
}

void Device::Hold(uint64_t bytes) {
  const uint64_t now = live_bytes_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  uint64_t peak = peak_bytes_.load(std::memory_order_relaxed);
  while (now > peak && !peak_bytes_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

DeviceMemoryStats Device::memory_stats() const {
  DeviceMemoryStats s;
  s.live_bytes = live_bytes_.load(std::memory_order_relaxed);
  s.peak_bytes = peak_bytes_.load(std::memory_order_relaxed);
  s.host_to_device_bytes = written_bytes_.load(std::memory_order_relaxed);
  s.device_to_host_bytes = read_bytes_.load(std::memory_order_relaxed);
  return s;
}

absl::StatusOr<std::unique_ptr<Device>> Device::Open(std::shared_ptr<PluginInstance> instance,
                                                     uint32_t index) {
  std::unique_ptr<Device> dev(new Device());
  dev->instance_ = std::move(instance);
  const PluginLibrary& lib = dev->instance_->library();
  dev->api_ = &lib.api();
  const std::string ctx = absl::StrCat("plugin '", lib.name(), "' device ", index);
  dev->caps_.struct_size = sizeof(kestrel_device_caps_t);
  absl::Status st = dev->instance_->GetCaps(index, &dev->caps_, ctx);
  if (!st.ok()) return st;
  dev->caps_.name[sizeof(dev->caps_.name) - 1] = '\0';
  dev->caps_.description[sizeof(dev->caps_.description) - 1] = '\0';
  dev->name_ = dev->caps_.name[0] ? dev->caps_.name : absl::StrCat(lib.name(), ":", index);
  st = dev->instance_->Open(index, &dev->handle_, ctx);
  if (!st.ok()) return st;
  if (dev->handle_ == nullptr) {
    return absl::InternalError(ctx + ": device_open returned no device");
  }
  if (KESTREL_HAL_HAS_SLOT(lib, stream_create) && KESTREL_HAL_HAS_SLOT(lib, stream_synchronize) &&
      KESTREL_HAL_HAS_SLOT(lib, stream_destroy)) {
    st = TakePluginStatus(dev->api_->stream_create(dev->handle_, &dev->stream_),
                          ctx + ": stream_create");
    if (!st.ok()) return st;
    dev->has_events_ = KESTREL_HAL_HAS_SLOT(lib, event_record) &&
                       KESTREL_HAL_HAS_SLOT(lib, stream_wait_event) &&
                       KESTREL_HAL_HAS_SLOT(lib, event_synchronize) &&
                       KESTREL_HAL_HAS_SLOT(lib, event_destroy);
  }
  return dev;
}

Device::~Device() {
  if (stream_ != nullptr) {
    TakePluginStatus(api_->stream_synchronize(handle_, stream_), "").IgnoreError();
    api_->stream_destroy(handle_, stream_);
  }
  if (handle_ != nullptr) api_->device_close(handle_);
}

std::string Device::Context(const char* slot) const {
  return absl::StrCat("device '", name_, "' (plugin '", plugin_name(), "') ", slot);
}

absl::StatusOr<Buffer> Device::Allocate(uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  Buffer b;
  kestrel_plugin_buffer_t* h = nullptr;
  absl::Status st = TakePluginStatus(api_->buffer_alloc(handle_, size, KESTREL_BUFFER_FLAG_NONE, &h),
                                     Context("buffer_alloc"));
  if (!st.ok()) return st;
  if (h == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(Context("buffer_alloc"), ": no buffer for ", size, " bytes"));
  }
  b.device_ = this;
  b.handle_ = h;
  b.size_ = size;
  Hold(size);
  return b;
}

absl::Status Device::Write(const Buffer& dst, uint64_t dst_offset, const void* src, uint64_t size) {
  if (dst_offset > dst.size() || size > dst.size() - dst_offset) {
    return absl::OutOfRangeError(absl::StrFormat("%s: write of %u bytes at %u exceeds buffer of %u",
                                                 Context("buffer_write"), size, dst_offset, dst.size()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status st = TakePluginStatus(
      api_->buffer_write(handle_, stream_, dst.handle(), dst_offset, src, size), Context("buffer_write"));
  if (st.ok()) written_bytes_.fetch_add(size, std::memory_order_relaxed);
  if (!st.ok() || stream_ == nullptr) return st;
  return TakePluginStatus(api_->stream_synchronize(handle_, stream_), Context("stream_synchronize"));
}

absl::Status Device::Read(const Buffer& src, uint64_t src_offset, void* dst, uint64_t size) {
  if (src_offset > src.size() || size > src.size() - src_offset) {
    return absl::OutOfRangeError(absl::StrFormat("%s: read of %u bytes at %u exceeds buffer of %u",
                                                 Context("buffer_read"), size, src_offset, src.size()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status st = TakePluginStatus(
      api_->buffer_read(handle_, stream_, src.handle(), src_offset, dst, size), Context("buffer_read"));
  if (st.ok()) read_bytes_.fetch_add(size, std::memory_order_relaxed);
  if (!st.ok() || stream_ == nullptr) return st;
  return TakePluginStatus(api_->stream_synchronize(handle_, stream_), Context("stream_synchronize"));
}

absl::Status Device::Copy(const Buffer& src, uint64_t src_offset, const Buffer& dst,
                          uint64_t dst_offset, uint64_t size) {
  if (src_offset > src.size() || size > src.size() - src_offset || dst_offset > dst.size() ||
      size > dst.size() - dst_offset) {
    return absl::OutOfRangeError(absl::StrCat(Context("buffer_copy"), ": range out of bounds"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return TakePluginStatus(api_->buffer_copy(handle_, stream_, src.handle(), src_offset, dst.handle(),
                                            dst_offset, size),
                          Context("buffer_copy"));
}

absl::StatusOr<PreparedWeight> Device::PrepareWeight(const kestrel_tensor_desc_t& desc,
                                                     const void* host_data, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  kestrel_plugin_weight_t* h = nullptr;
  absl::Status st = TakePluginStatus(api_->weight_prepare(handle_, &desc, host_data, size, &h),
                                     Context("weight_prepare"));
  if (!st.ok()) return st;
  if (h == nullptr) return absl::InternalError(Context("weight_prepare") + ": returned no weight");
  PreparedWeight w;
  w.device_ = this;
  w.handle_ = h;
  w.desc_ = desc;
  w.bytes_ = size;
  Hold(size);
  written_bytes_.fetch_add(size, std::memory_order_relaxed);
  return w;
}

absl::StatusOr<std::string> Device::WeightLayoutId() {
  if (api_->minor < kPreparedWeightsMinor || !KESTREL_HAL_HAS_SLOT(instance_->library(), device_weight_layout) ||
      !KESTREL_HAL_HAS_SLOT(instance_->library(), weight_export) ||
      !KESTREL_HAL_HAS_SLOT(instance_->library(), weight_import)) {
    return std::string();
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::string id(64, '\0');
  for (int attempt = 0; attempt < 2; ++attempt) {
    size_t length = 0;
    absl::Status st = TakePluginStatus(
        api_->device_weight_layout(handle_, &id[0], id.size(), &length),
        Context("device_weight_layout"));
    if (!st.ok()) return st;
    if (length < id.size()) {
      id.resize(length);
      return id;
    }
    id.assign(length + 1, '\0');
  }
  return absl::InternalError(Context("device_weight_layout") + ": the id length keeps changing");
}

absl::StatusOr<std::vector<uint8_t>> Device::ExportWeight(const PreparedWeight& weight) {
  if (api_->minor < kPreparedWeightsMinor || !KESTREL_HAL_HAS_SLOT(instance_->library(), weight_export)) {
    return absl::FailedPreconditionError(Context("weight_export") + ": the plugin cannot export");
  }
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t size = 0;
  absl::Status st = TakePluginStatus(api_->weight_export(handle_, weight.handle(), nullptr, 0, &size),
                                     Context("weight_export"));
  if (!st.ok()) return st;
  std::vector<uint8_t> out(static_cast<size_t>(size));
  uint64_t written = 0;
  st = TakePluginStatus(api_->weight_export(handle_, weight.handle(), out.data(), size, &written),
                        Context("weight_export"));
  if (!st.ok()) return st;
  if (written != size) {
    return absl::InternalError(absl::StrCat(Context("weight_export"), ": sized ", size,
                                            " bytes, then wrote ", written));
  }
  return out;
}

absl::StatusOr<PreparedWeight> Device::ImportWeight(const kestrel_tensor_desc_t& desc,
                                                    const void* data, uint64_t size, bool borrow) {
  if (api_->minor < kPreparedWeightsMinor || !KESTREL_HAL_HAS_SLOT(instance_->library(), weight_import)) {
    return absl::FailedPreconditionError(Context("weight_import") + ": the plugin cannot import");
  }
  std::lock_guard<std::mutex> lock(mu_);
  kestrel_plugin_weight_t* h = nullptr;
  absl::Status st = TakePluginStatus(
      api_->weight_import(handle_, &desc, data, size, borrow ? KESTREL_WEIGHT_IMPORT_BORROW : 0u, &h),
      Context("weight_import"));
  if (!st.ok()) return st;
  if (h == nullptr) return absl::InternalError(Context("weight_import") + ": returned no weight");
  PreparedWeight w;
  w.device_ = this;
  w.handle_ = h;
  w.bytes_ = size;
  Hold(size);
  if (!borrow) written_bytes_.fetch_add(size, std::memory_order_relaxed);
  w.desc_ = desc;
  return w;
}

absl::StatusOr<uint64_t> Device::Counter(const std::string& name) {
  if (api_->minor < kPreparedWeightsMinor || !KESTREL_HAL_HAS_SLOT(instance_->library(), device_get_counter)) {
    return absl::NotFoundError(Context("device_get_counter") + ": the plugin has no counters");
  }
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t value = 0;
  absl::Status st = TakePluginStatus(api_->device_get_counter(handle_, name.c_str(), &value),
                                     Context("device_get_counter"));
  if (!st.ok()) return st;
  return value;
}

absl::StatusOr<kestrel_op_support_t> Device::Query(const kestrel_op_desc_t& op) {
  std::lock_guard<std::mutex> lock(mu_);
  kestrel_op_support_t support{};
  support.struct_size = sizeof(support);
  if (api_->minor < MinorVersionFor(op)) {
    support.level = KESTREL_OP_UNSUPPORTED;
    return support;
  }
  absl::Status st = TakePluginStatus(api_->op_query(handle_, &op, &support),
                                     Context("op_query") + " " + OpKindName(op.kind));
  if (!st.ok()) return st;
  return support;
}

absl::Status Device::Execute(const kestrel_op_desc_t& op, const Buffer* workspace) {
  std::lock_guard<std::mutex> lock(mu_);
  kestrel_plugin_status_t* st =
      api_->op_execute(handle_, stream_, &op, workspace ? workspace->handle() : nullptr);
  if (st == nullptr) return absl::OkStatus();  // the hot path: no context string per op
  return TakePluginStatus(st, Context("op_execute") + " " + OpKindName(op.kind));
}

absl::Status Device::Synchronize() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_ == nullptr) return absl::OkStatus();
  return TakePluginStatus(api_->stream_synchronize(handle_, stream_), Context("stream_synchronize"));
}

absl::StatusOr<Stream> Device::CreateStream() {
  if (!has_streams()) {
    return absl::FailedPreconditionError(
        absl::StrCat(Context("stream_create"), ": the plugin is synchronous (no streams and events)"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  Stream s;
  absl::Status st = TakePluginStatus(api_->stream_create(handle_, &s.handle_), Context("stream_create"));
  if (!st.ok()) return st;
  s.device_ = this;
  return s;
}

absl::Status Device::WriteAsync(const Stream& stream, const Buffer& dst, uint64_t dst_offset,
                                const void* src, uint64_t size) {
  if (dst_offset > dst.size() || size > dst.size() - dst_offset) {
    return absl::OutOfRangeError(absl::StrFormat("%s: write of %u bytes at %u exceeds buffer of %u",
                                                 Context("buffer_write"), size, dst_offset, dst.size()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status st = TakePluginStatus(
      api_->buffer_write(handle_, stream.handle(), dst.handle(), dst_offset, src, size),
      Context("buffer_write"));
  if (st.ok()) written_bytes_.fetch_add(size, std::memory_order_relaxed);
  return st;
}

absl::StatusOr<Event> Device::Record(const Stream* stream) {
  if (!has_streams()) {
    return absl::FailedPreconditionError(
        absl::StrCat(Context("event_record"), ": the plugin is synchronous (no streams and events)"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  Event e;
  absl::Status st = TakePluginStatus(
      api_->event_record(handle_, stream != nullptr ? stream->handle() : stream_, &e.handle_),
      Context("event_record"));
  if (!st.ok()) return st;
  e.device_ = this;
  return e;
}

absl::Status Device::Wait(const Stream* stream, const Event& event) {
  if (!has_streams()) {
    return absl::FailedPreconditionError(absl::StrCat(
        Context("stream_wait_event"), ": the plugin is synchronous (no streams and events)"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return TakePluginStatus(api_->stream_wait_event(
                              handle_, stream != nullptr ? stream->handle() : stream_, event.handle()),
                          Context("stream_wait_event"));
}

absl::Status Device::Synchronize(const Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  return TakePluginStatus(api_->stream_synchronize(handle_, stream.handle()),
                          Context("stream_synchronize"));
}

absl::Status Device::SetOptions(const PluginOptions& options) {
  if (!KESTREL_HAL_HAS_SLOT(instance_->library(), device_set_options)) return absl::OkStatus();
  std::vector<kestrel_plugin_option_t> opts;
  opts.reserve(options.size());
  for (const auto& [k, v] : options) opts.push_back({k.c_str(), v.c_str()});
  std::lock_guard<std::mutex> lock(mu_);
  return TakePluginStatus(api_->device_set_options(handle_, opts.data(), opts.size()),
                          Context("device_set_options"));
}

const char* DtypeName(uint32_t dtype) {
  switch (dtype) {
    case KESTREL_DTYPE_F32: return "F32";
    case KESTREL_DTYPE_F16: return "F16";
    case KESTREL_DTYPE_BF16: return "BF16";
    case KESTREL_DTYPE_I32: return "I32";
    case KESTREL_DTYPE_I8: return "I8";
    case KESTREL_DTYPE_Q8_0: return "Q8_0";
    case KESTREL_DTYPE_Q4_0: return "Q4_0";
    case KESTREL_DTYPE_Q4_1: return "Q4_1";
    case KESTREL_DTYPE_Q5_0: return "Q5_0";
    case KESTREL_DTYPE_Q5_1: return "Q5_1";
    case KESTREL_DTYPE_Q2_K: return "Q2_K";
    case KESTREL_DTYPE_Q3_K: return "Q3_K";
    case KESTREL_DTYPE_Q4_K: return "Q4_K";
    case KESTREL_DTYPE_Q5_K: return "Q5_K";
    case KESTREL_DTYPE_Q6_K: return "Q6_K";
    default: return "?";
  }
}

const char* OpKindName(uint32_t kind) {
  switch (kind) {
    case KESTREL_OP_EMBEDDING_GATHER: return "EMBEDDING_GATHER";
    case KESTREL_OP_RMSNORM: return "RMSNORM";
    case KESTREL_OP_ROPE: return "ROPE";
    case KESTREL_OP_MATMUL: return "MATMUL";
    case KESTREL_OP_SWIGLU: return "SWIGLU";
    case KESTREL_OP_ADD: return "ADD";
    case KESTREL_OP_KV_WRITE: return "KV_WRITE";
    case KESTREL_OP_KV_BLOCK_COPY: return "KV_BLOCK_COPY";
    case KESTREL_OP_PAGED_ATTENTION: return "PAGED_ATTENTION";
    case KESTREL_OP_LOGITS: return "LOGITS";
    case KESTREL_OP_MOE: return "MOE";
    case KESTREL_OP_GEGLU: return "GEGLU";
    default: return kind >= KESTREL_OP_VENDOR_BASE ? "VENDOR_OP" : "UNKNOWN_OP";
  }
}

}  // namespace kestrel::hal
