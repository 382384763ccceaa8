// The plugin-ABI glue every device plugin needs and would otherwise write again: the body of the
// exported kestrel_plugin_get_api, the remembered host table with its status / log helpers, and
// the Guard that turns a slot's result or C++ exception into a kestrel_plugin_status_t.
//
// Owns nothing but the host pointer in HostRef. Header-only and internal: it depends only on the
// plugin ABI header and the standard library (never on the runtime or on ref), and no plugin
// exports any of it; each plugin keeps its own one-line exported kestrel_plugin_get_api
// (hal/plugin.map) that calls GetApi below. Used by plugins/{ref,cpu,opencl,cuda}.
#ifndef KESTREL_PLUGIN_SDK_PLUGIN_GLUE_H_
#define KESTREL_PLUGIN_SDK_PLUGIN_GLUE_H_

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <new>
#include <string>
#include <vector>

#include "kestrel/plugin_api.h"

namespace kestrel::plugin_sdk {

// A status whose message is `parts` concatenated (at most 511 bytes), built without allocating,
// so it also works when memory is exhausted. NULL when `host` cannot create statuses.
inline kestrel_plugin_status_t* ConcatStatus(const kestrel_host_api_t* host,
                                             kestrel_plugin_status_code_t code,
                                             std::initializer_list<const char*> parts) {
  if (host == nullptr || host->status_create == nullptr) return nullptr;
  char buf[512];
  size_t len = 0;
  for (const char* part : parts) {
    if (part == nullptr) part = "(null)";
    const size_t n = std::min(std::strlen(part), sizeof buf - len);
    std::memcpy(buf + len, part, n);
    len += n;
  }
  return host->status_create(host->host_ctx, code, buf, len);
}

// The host table a plugin got from kestrel_plugin_get_api, read atomically by every slot (the
// newest registration wins), and what the plugin does through it. Thread-safe.
class HostRef {
 public:
  void Set(const kestrel_host_api_t* host) { host_.store(host); }
  const kestrel_host_api_t* Get() const { return host_.load(); }

  // NULL when no host (or no status_create) is registered.
  kestrel_plugin_status_t* MakeStatus(kestrel_plugin_status_code_t code, const char* msg,
                                      size_t len) const {
    const kestrel_host_api_t* host = host_.load();
    if (host == nullptr || host->status_create == nullptr) return nullptr;
    return host->status_create(host->host_ctx, code, msg, len);
  }

  // NULL for OK. StatusT: any type with ok(), code() and message() (Status).
  template <typename StatusT>
  kestrel_plugin_status_t* ToStatus(const StatusT& s) const {
    if (s.ok()) return nullptr;
    return MakeStatus(s.code(), s.message().data(), s.message().size());
  }

  void Log(kestrel_plugin_log_level_t level, const std::string& message) const {
    const kestrel_host_api_t* host = host_.load();
    if (host != nullptr && host->log != nullptr) {
      host->log(host->host_ctx, level, message.data(), message.size());
    }
  }

  // Runs `body` (returning a status as ToStatus takes it) and converts its result, or the C++
  // exception it throws, to an ABI status naming `slot`: std::bad_alloc -> RESOURCE_EXHAUSTED
  // "<slot>: out of host memory", std::exception -> INTERNAL "<slot>: unexpected exception:
  // <what>", anything else -> INTERNAL "<slot>: unexpected exception". Nothing escapes: the
  // out-of-memory paths allocate nothing.
  template <typename Body>
  kestrel_plugin_status_t* Guard(const char* slot, Body&& body) const {
    try {
      return ToStatus(body());
    } catch (const std::bad_alloc&) {
      return ConcatStatus(host_.load(), KESTREL_PLUGIN_RESOURCE_EXHAUSTED,
                          {slot, ": out of host memory"});
    } catch (const std::exception& e) {
      try {
        const std::string msg = std::string(slot) + ": unexpected exception: " + e.what();
        return MakeStatus(KESTREL_PLUGIN_INTERNAL, msg.data(), msg.size());
      } catch (...) {
        return ConcatStatus(host_.load(), KESTREL_PLUGIN_INTERNAL, {slot, ": unexpected exception"});
      }
    } catch (...) {
      return ConcatStatus(host_.load(), KESTREL_PLUGIN_INTERNAL, {slot, ": unexpected exception"});
    }
  }

 private:
  std::atomic<const kestrel_host_api_t*> host_{nullptr};
};

// HostRef for a plugin whose library may be loaded by several hosts at once (dlopen() of the same
// file returns the same library, so a second runtime or a test shares the plugin's state): each
// kestrel_plugin_get_api pushes its host, each shutdown pops one, and the newest host still
// registered is used (lifetimes nest in practice). Not thread-safe by itself: callers hold the
// mutex that guards the rest of their plugin state.
class HostStack : public HostRef {
 public:
  void Push(const kestrel_host_api_t* host) {
    hosts_.push_back(host);
    Set(host);
  }
  void Pop() {
    if (hosts_.empty()) return;
    hosts_.pop_back();
    if (!hosts_.empty()) Set(hosts_.back());
  }

 private:
  std::vector<const kestrel_host_api_t*> hosts_;  // oldest first
};

// The body of a plugin's exported kestrel_plugin_get_api. Sets *out to NULL, then:
//  - an unusable host table (NULL, struct_size below the 1.0 table, no status_create): returns
//    NULL with no table, since no status can be made;
//  - host_major != KESTREL_PLUGIN_API_MAJOR: FAILED_PRECONDITION "plugin '<name>' implements plugin
//    ABI version M.m but the host speaks version M'.m': the major versions must match";
//  - out == NULL: INVALID_ARGUMENT "kestrel_plugin_get_api(<name>): out is NULL";
//  - otherwise returns register_host(host, out): it remembers `host` and writes the table to *out
//    (or returns a status and leaves *out NULL).
// An exception from register_host becomes INTERNAL "kestrel_plugin_get_api(<name>): unexpected
// exception". Every status here is built without allocating. `name` is NUL-terminated.
template <typename RegisterHost>
kestrel_plugin_status_t* GetApi(const char* name, const kestrel_host_api_t* host,
                                uint16_t host_major, uint16_t host_minor,
                                const kestrel_plugin_api_t** out, RegisterHost&& register_host) {
  if (out != nullptr) *out = nullptr;
  if (host == nullptr || host->struct_size < sizeof(kestrel_host_api_t) ||
      host->status_create == nullptr) {
    return nullptr;
  }
  try {
    if (host_major != KESTREL_PLUGIN_API_MAJOR) {
      char plugin_version[16], host_version[16];
      std::snprintf(plugin_version, sizeof plugin_version, "%u.%u",
                    static_cast<unsigned>(KESTREL_PLUGIN_API_MAJOR),
                    static_cast<unsigned>(KESTREL_PLUGIN_API_MINOR));
      std::snprintf(host_version, sizeof host_version, "%u.%u", static_cast<unsigned>(host_major),
                    static_cast<unsigned>(host_minor));
      return ConcatStatus(host, KESTREL_PLUGIN_FAILED_PRECONDITION,
                          {"plugin '", name, "' implements plugin ABI version ", plugin_version,
                           " but the host speaks version ", host_version,
                           ": the major versions must match"});
    }
    if (out == nullptr) {
      return ConcatStatus(host, KESTREL_PLUGIN_INVALID_ARGUMENT,
                          {"kestrel_plugin_get_api(", name, "): out is NULL"});
    }
    return register_host(host, out);
  } catch (...) {
    return ConcatStatus(host, KESTREL_PLUGIN_INTERNAL,
                        {"kestrel_plugin_get_api(", name, "): unexpected exception"});
  }
}

// GetApi for a plugin with one static table: record_host(host) remembers the host, then *out is
// set to `table`.
template <typename RecordHost>
kestrel_plugin_status_t* GetApi(const char* name, const kestrel_plugin_api_t* table,
                                const kestrel_host_api_t* host, uint16_t host_major,
                                uint16_t host_minor, const kestrel_plugin_api_t** out,
                                RecordHost&& record_host) {
  return GetApi(name, host, host_major, host_minor, out,
                [&](const kestrel_host_api_t* h, const kestrel_plugin_api_t** o)
                    -> kestrel_plugin_status_t* {
                  record_host(h);
                  *o = table;
                  return nullptr;
                });
}

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_PLUGIN_GLUE_H_
