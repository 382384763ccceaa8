// A fault-injection test plugin ("faulty"): the plugin SDK's host-memory body with the reference
// kernels (kestrel/plugin_sdk/host_plugin.h) behind a wrapper table that fails one kind of call at
// its Nth call, and that adds streams and events (trivial: the body is synchronous) so that stream
// waits can fail too. Kept out of the default plugin folder (tests/plugins/).
//
// The fault schedule is one per process, so the plugin serves the one process-wide instance of
// the 1.1 contract (init, options of the first runtime): its table leaves the five ABI 1.4
// instance slots NULL, and the host then drives it through init / device_open like opencl and
// cuda.
//
// Options (init options, re-armed by device_set_options; KESTREL_FAULTY env as "fail:at[:count]"
// when init gets none):
//   fail   none (default) | alloc (buffer_alloc) | copy (buffer_write, buffer_read, buffer_copy)
//          | op (op_execute) | wait (stream_synchronize, stream_wait_event, event_synchronize);
//          and three silent misbehaviours of op_execute that report success: overrun / underrun
//          (one byte past the end / before the start of output 0 changed, inside its buffer),
//          skip (the op does not run)
//   at     N >= 1: the Nth call of that kind (counted from init or the last re-arm) fails
//   count  how many calls from the Nth on fail (default 1)
// An injected failure is a status naming the slot, the call number and (for ops) the op kind:
// RESOURCE_EXHAUSTED for alloc, UNAVAILABLE otherwise. Nothing else changes: the body's results
// are exact (ref kernels), so a run without a fault equals the reference plugin's.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/host_plugin.h"
#include "kestrel/plugin_sdk/op_contract.h"

namespace {

enum class Fault { kNone, kAlloc, kCopy, kOp, kWait, kOverrun, kUnderrun, kSkip };

const char* FaultName(Fault f) {
  switch (f) {
    case Fault::kAlloc: return "alloc";
    case Fault::kCopy: return "copy";
    case Fault::kOp: return "op";
    case Fault::kWait: return "wait";
    case Fault::kOverrun: return "overrun";
    case Fault::kUnderrun: return "underrun";
    case Fault::kSkip: return "skip";
    default: return "none";
  }
}

struct State {
  std::mutex mu;
  const kestrel_host_api_t* host = nullptr;
  const kestrel_plugin_api_t* inner = nullptr;
  kestrel_plugin_api_t table{};
  Fault fault = Fault::kNone;
  uint64_t at = 0, count = 1;
  uint64_t calls = 0;  // calls of the armed kind since arming
};

State& S() {
  static State* s = new State;  // lives for the process, like the library
  return *s;
}

kestrel_plugin_status_t* MakeStatus(kestrel_plugin_status_code_t code, const std::string& msg) {
  return S().host->status_create(S().host->host_ctx, code, msg.data(), msg.size());
}

// Parses fail/at/count from `options`; returns a status for a bad value, NULL otherwise. Other
// keys ("threads") are ignored, as the ABI asks.
kestrel_plugin_status_t* Arm(const kestrel_plugin_option_t* options, size_t n) {
  bool touched = false;
  Fault fault = S().fault;
  uint64_t at = S().at, count = 1;
  for (size_t i = 0; i < n; ++i) {
    if (options[i].key == nullptr || options[i].value == nullptr) continue;
    const std::string key = options[i].key, value = options[i].value;
    if (key == "fail") {
      touched = true;
      if (value == "none") fault = Fault::kNone;
      else if (value == "alloc") fault = Fault::kAlloc;
      else if (value == "copy") fault = Fault::kCopy;
      else if (value == "op") fault = Fault::kOp;
      else if (value == "wait") fault = Fault::kWait;
      else if (value == "overrun") fault = Fault::kOverrun;
      else if (value == "underrun") fault = Fault::kUnderrun;
      else if (value == "skip") fault = Fault::kSkip;
      else return MakeStatus(KESTREL_PLUGIN_INVALID_ARGUMENT,
                             "faulty: option fail='" + value +
                                 "' is not none|alloc|copy|op|wait|overrun|underrun|skip");
    } else if (key == "at" || key == "count") {
      touched = true;
      char* end = nullptr;
      const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || v == 0) {
        return MakeStatus(KESTREL_PLUGIN_INVALID_ARGUMENT,
                          "faulty: option " + key + "='" + value + "' is not a positive integer");
      }
      (key == "at" ? at : count) = v;
    }
  }
  if (!touched) return nullptr;
  std::lock_guard<std::mutex> lock(S().mu);
  S().fault = fault;
  S().at = at;
  S().count = count;
  S().calls = 0;
  return nullptr;
}

// Counts a call of kind `kind`; true when it is one of the armed calls (*call, *at: which).
bool Armed(Fault kind, uint64_t* call, uint64_t* at) {
  std::lock_guard<std::mutex> lock(S().mu);
  if (S().fault != kind) return false;
  *call = ++S().calls;
  *at = S().at;
  return *call >= *at && *call < *at + S().count;
}

// Counts a call of kind `kind`; a status when it is one of the armed failing calls.
kestrel_plugin_status_t* Inject(Fault kind, const char* slot, const std::string& detail = "") {
  uint64_t call, at;
  if (!Armed(kind, &call, &at)) return nullptr;
  const std::string msg = std::string("injected failure (fail=") + FaultName(kind) + " at=" +
                          std::to_string(at) + "): " + slot + " call #" +
                          std::to_string(call) + detail;
  S().host->log(S().host->host_ctx, KESTREL_PLUGIN_LOG_WARNING, msg.data(), msg.size());
  return MakeStatus(kind == Fault::kAlloc ? KESTREL_PLUGIN_RESOURCE_EXHAUSTED
                                          : KESTREL_PLUGIN_UNAVAILABLE,
                    msg);
}

// ---- slots: count and maybe fail, else the body (which is synchronous: streams become NULL) ----
kestrel_plugin_status_t* Init(const kestrel_plugin_option_t* options, size_t n) {
  {
    std::lock_guard<std::mutex> lock(S().mu);
    S().fault = Fault::kNone;
    S().at = 0;
    S().count = 1;
    S().calls = 0;
  }
  if (kestrel_plugin_status_t* s = Arm(options, n)) return s;
  if (n == 0) {
    if (const char* env = std::getenv("KESTREL_FAULTY")) {
      // "fail:at[:count]"
      std::string e = env, parts[3];
      int k = 0;
      for (char c : e) {
        if (c == ':' && k < 2) {
          ++k;
        } else {
          parts[k] += c;
        }
      }
      std::string count = parts[2].empty() ? "1" : parts[2];
      const kestrel_plugin_option_t o[3] = {
          {"fail", parts[0].c_str()}, {"at", parts[1].c_str()}, {"count", count.c_str()}};
      if (kestrel_plugin_status_t* s = Arm(o, 3)) return s;
    }
  }
  return S().inner->init(nullptr, 0);
}

kestrel_plugin_status_t* BufferAlloc(kestrel_plugin_device_t* d, uint64_t size, uint32_t flags,
                                     kestrel_plugin_buffer_t** out) {
  if (auto* s = Inject(Fault::kAlloc, "buffer_alloc", " (" + std::to_string(size) + " bytes)")) {
    return s;
  }
  return S().inner->buffer_alloc(d, size, flags, out);
}

kestrel_plugin_status_t* BufferWrite(kestrel_plugin_device_t* d, kestrel_plugin_stream_t*,
                                     kestrel_plugin_buffer_t* dst, uint64_t off, const void* src,
                                     uint64_t size) {
  if (auto* s = Inject(Fault::kCopy, "buffer_write")) return s;
  return S().inner->buffer_write(d, nullptr, dst, off, src, size);
}

kestrel_plugin_status_t* BufferRead(kestrel_plugin_device_t* d, kestrel_plugin_stream_t*,
                                    kestrel_plugin_buffer_t* src, uint64_t off, void* dst,
                                    uint64_t size) {
  if (auto* s = Inject(Fault::kCopy, "buffer_read")) return s;
  return S().inner->buffer_read(d, nullptr, src, off, dst, size);
}

kestrel_plugin_status_t* BufferCopy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t*,
                                    kestrel_plugin_buffer_t* src, uint64_t src_off,
                                    kestrel_plugin_buffer_t* dst, uint64_t dst_off, uint64_t size) {
  if (auto* s = Inject(Fault::kCopy, "buffer_copy")) return s;
  return S().inner->buffer_copy(d, nullptr, src, src_off, dst, dst_off, size);
}

kestrel_plugin_status_t* OpExecute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t*,
                                   const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* ws) {
  if (op != nullptr) {
    if (auto* s = Inject(Fault::kOp, "op_execute",
                         " (" + kestrel::plugin_sdk::OpKindName(op->kind) + ")")) {
      return s;
    }
  }
  // The silent misbehaviours a conformance suite must catch: the op runs, then writes one byte
  // past the end (overrun) or before the start (underrun) of its first output, or does not run
  // at all (skip), and reports success either way.
  uint64_t call, at;
  for (Fault kind : {Fault::kOverrun, Fault::kUnderrun, Fault::kSkip}) {
    if (op == nullptr || op->n_outputs == 0 || !Armed(kind, &call, &at)) continue;
    if (kind == Fault::kSkip) return nullptr;
    kestrel_plugin_status_t* s = S().inner->op_execute(d, nullptr, op, ws);
    const kestrel_tensor_arg_t& out = op->outputs[0];
    void* base = nullptr;
    if (s != nullptr || out.buffer == nullptr ||
        S().inner->buffer_map(d, out.buffer, &base) != nullptr) {
      return s;
    }
    const uint64_t bytes = kestrel::plugin_sdk::TensorBytes(out.desc);
    if (kind == Fault::kUnderrun && out.offset == 0) return nullptr;  // nowhere to write
    uint8_t* p = static_cast<uint8_t*>(base) +
                 (kind == Fault::kOverrun ? out.offset + bytes : out.offset - 1);
    *p = static_cast<uint8_t>(*p ^ 0x5A);  // within the buffer, outside the tensor
    return nullptr;
  }
  return S().inner->op_execute(d, nullptr, op, ws);
}

// Streams and events: the body finishes every call before returning, so a stream is only a
// handle and a wait only a place where the device could report a failure.
struct Handle {
  uint32_t magic = 0x464C5459;  // "FLTY"
};

kestrel_plugin_status_t* StreamCreate(kestrel_plugin_device_t*, kestrel_plugin_stream_t** out) {
  if (out == nullptr) return MakeStatus(KESTREL_PLUGIN_INVALID_ARGUMENT, "stream_create: out is NULL");
  *out = reinterpret_cast<kestrel_plugin_stream_t*>(new Handle);
  return nullptr;
}
void StreamDestroy(kestrel_plugin_device_t*, kestrel_plugin_stream_t* s) {
  delete reinterpret_cast<Handle*>(s);
}
kestrel_plugin_status_t* StreamSynchronize(kestrel_plugin_device_t*, kestrel_plugin_stream_t*) {
  return Inject(Fault::kWait, "stream_synchronize");
}
kestrel_plugin_status_t* EventRecord(kestrel_plugin_device_t*, kestrel_plugin_stream_t*,
                                     kestrel_plugin_event_t** out) {
  if (out == nullptr) return MakeStatus(KESTREL_PLUGIN_INVALID_ARGUMENT, "event_record: out is NULL");
  *out = reinterpret_cast<kestrel_plugin_event_t*>(new Handle);
  return nullptr;
}
kestrel_plugin_status_t* StreamWaitEvent(kestrel_plugin_device_t*, kestrel_plugin_stream_t*,
                                         kestrel_plugin_event_t*) {
  return Inject(Fault::kWait, "stream_wait_event");
}
kestrel_plugin_status_t* EventSynchronize(kestrel_plugin_device_t*, kestrel_plugin_event_t*) {
  return Inject(Fault::kWait, "event_synchronize");
}
void EventDestroy(kestrel_plugin_device_t*, kestrel_plugin_event_t* e) {
  delete reinterpret_cast<Handle*>(e);
}

kestrel_plugin_status_t* DeviceSetOptions(kestrel_plugin_device_t*,
                                          const kestrel_plugin_option_t* options, size_t n) {
  if (n > 0 && options == nullptr) {
    return MakeStatus(KESTREL_PLUGIN_INVALID_ARGUMENT, "device_set_options: options is NULL");
  }
  return Arm(options, n);
}

const kestrel::plugin_sdk::HostPluginConfig kConfig = {
    "faulty", "faulty", "test plugin: the reference kernels with injected failures", nullptr,
    "0.1.0-test"};

}  // namespace

extern "C" KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  const kestrel_plugin_api_t* inner = nullptr;
  kestrel_plugin_status_t* s =
      kestrel::plugin_sdk::HostPluginGetApi(&kConfig, host, host_major, host_minor, &inner);
  if (s != nullptr || inner == nullptr) {
    if (out != nullptr) *out = nullptr;
    return s;
  }
  State& st = S();
  std::lock_guard<std::mutex> lock(st.mu);
  st.host = host;
  st.inner = inner;
  st.table = *inner;
  st.table.init = &Init;
  st.table.buffer_alloc = &BufferAlloc;
  st.table.buffer_write = &BufferWrite;
  st.table.buffer_read = &BufferRead;
  st.table.buffer_copy = &BufferCopy;
  st.table.op_execute = &OpExecute;
  st.table.stream_create = &StreamCreate;
  st.table.stream_destroy = &StreamDestroy;
  st.table.stream_synchronize = &StreamSynchronize;
  st.table.event_record = &EventRecord;
  st.table.stream_wait_event = &StreamWaitEvent;
  st.table.event_synchronize = &EventSynchronize;
  st.table.event_destroy = &EventDestroy;
  st.table.device_set_options = &DeviceSetOptions;
  // One process-wide fault schedule: no instances (all five slots or none).
  st.table.instance_create = nullptr;
  st.table.instance_destroy = nullptr;
  st.table.instance_device_count = nullptr;
  st.table.instance_device_get_caps = nullptr;
  st.table.instance_device_open = nullptr;
  *out = &st.table;
  return nullptr;
}
