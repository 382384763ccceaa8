#include "hal/src/host_api.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

// The concrete type behind kestrel_plugin_status_t: the host owns its layout.
struct kestrel_plugin_status {
  absl::Status status;
};

namespace kestrel::hal {
namespace {

struct SinkList {
  std::mutex mu;
  int next = 1;
  std::vector<std::pair<int, LogSink>> sinks;
};

SinkList& Sinks() {
  static SinkList* list = new SinkList();  // never destroyed: plugins may log during exit
  return *list;
}

void HostLog(void*, kestrel_plugin_log_level_t level, const char* message, size_t length) {
  if (message == nullptr) return;
  try {
    const std::string line(message, length);
    SinkList& list = Sinks();
    std::lock_guard<std::mutex> lock(list.mu);
    for (const auto& [handle, sink] : list.sinks) {
      if (sink) sink(level, line);
    }
  } catch (...) {
    // A log line is never worth a crash.
  }
}

void* HostAlloc(void*, size_t size, size_t alignment) {
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  if ((alignment & (alignment - 1)) != 0) return nullptr;
  void* p = nullptr;
  if (posix_memalign(&p, alignment, size == 0 ? 1 : size) != 0) return nullptr;
  return p;
}

void HostFree(void*, void* ptr) { std::free(ptr); }

kestrel_plugin_status_t* HostStatusCreate(void*, kestrel_plugin_status_code_t code,
                                          const char* message, size_t length) {
  auto* s = new (std::nothrow) kestrel_plugin_status;
  if (s == nullptr) return nullptr;  // cannot report; caller treats NULL as OK only for code 0
  int c = static_cast<int>(code);
  if (c <= 0 || c > 16) c = static_cast<int>(absl::StatusCode::kUnknown);
  s->status = absl::Status(static_cast<absl::StatusCode>(c),
                           message ? std::string(message, length) : std::string());
  return s;
}

}  // namespace

const kestrel_host_api_t* ProcessHostApi() {
  static const kestrel_host_api_t table = [] {
    kestrel_host_api_t t{};
    t.struct_size = sizeof(kestrel_host_api_t);
    t.major = KESTREL_PLUGIN_API_MAJOR;
    t.minor = KESTREL_PLUGIN_API_MINOR;
    t.host_ctx = nullptr;
    t.log = &HostLog;
    t.alloc = &HostAlloc;
    t.free = &HostFree;
    t.status_create = &HostStatusCreate;
    return t;
  }();
  return &table;
}

InstanceHost::InstanceHost(LogSink sink) : sink_(std::move(sink)) {
  api_ = *ProcessHostApi();
  api_.host_ctx = this;
  api_.log = &InstanceHost::Log;
}

void InstanceHost::Log(void* ctx, kestrel_plugin_log_level_t level, const char* message,
                       size_t length) {
  auto* self = static_cast<InstanceHost*>(ctx);
  if (self == nullptr || message == nullptr || !self->sink_) return;
  try {
    self->sink_(level, std::string(message, length));
  } catch (...) {
    // A log line is never worth a crash.
  }
}

int AddLogSink(LogSink sink) {
  SinkList& list = Sinks();
  std::lock_guard<std::mutex> lock(list.mu);
  const int handle = list.next++;
  list.sinks.emplace_back(handle, std::move(sink));
  return handle;
}

void RemoveLogSink(int handle) {
  SinkList& list = Sinks();
  std::lock_guard<std::mutex> lock(list.mu);
  for (auto it = list.sinks.begin(); it != list.sinks.end(); ++it) {
    if (it->first == handle) {
      list.sinks.erase(it);
      return;
    }
  }
}

absl::Status TakePluginStatus(kestrel_plugin_status_t* status, const std::string& context) {
  if (status == nullptr) return absl::OkStatus();
  absl::Status s = std::move(status->status);
  delete status;
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

}  // namespace kestrel::hal
