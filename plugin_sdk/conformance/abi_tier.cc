// The abi tier: the plugin's raw table, each check in a child process of its own (a fresh load of
// the library, and a crash fails that check instead of ending the run).
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hal/src/host_api.h"
#include "plugin_sdk/conformance/kit.h"

namespace kestrel::conformance {
namespace {

constexpr const char* kTier = "abi";
constexpr int kCheckTimeoutSeconds = 120;

struct Verdict {
  Outcome outcome = Outcome::kPass;
  std::string message;
};
Verdict PassV(std::string m = "") { return {Outcome::kPass, std::move(m)}; }
Verdict FailV(std::string m) { return {Outcome::kFail, std::move(m)}; }
Verdict SkipV(std::string m) { return {Outcome::kSkip, std::move(m)}; }

// Runs `check` in a child process and returns its verdict; a child that crashes, hangs (no word
// for kCheckTimeoutSeconds) or exits without one fails.
Verdict Isolated(const std::function<Verdict()>& check) {
  int fds[2];
  if (pipe(fds) != 0) return FailV("pipe() failed");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return FailV("fork() failed");
  if (pid == 0) {
    close(fds[0]);
    Verdict v = check();
    const std::string out = std::string(1, static_cast<char>('0' + static_cast<int>(v.outcome))) + v.message;
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fds[1]);
    _exit(0);  // no destructors, no leak check: the child's plugin state dies with it
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  bool timed_out = false;
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, kCheckTimeoutSeconds * 1000) <= 0) {  // a hung plugin: stop waiting
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) {
    return FailV(absl::StrCat("the check did not finish within ", kCheckTimeoutSeconds,
                              " s (the plugin hangs)"));
  }
  if (WIFSIGNALED(status)) {
    return FailV(absl::StrCat("the plugin crashed the process: signal ", WTERMSIG(status), " (",
                              strsignal(WTERMSIG(status)), ")"));
  }
  if (text.empty()) return FailV("the check's process ended without a verdict");
  Verdict v;
  v.outcome = static_cast<Outcome>(text[0] - '0');
  v.message = text.substr(1);
  return v;
}

// A host table of the kit's own: statuses through the process host (so hal::TakePluginStatus
// reads them), counted per table, and log lines counted.
struct ProbeHost {
  kestrel_host_api_t api{};
  std::atomic<int> statuses{0};
  std::atomic<int> logs{0};
  explicit ProbeHost(uint16_t minor = KESTREL_PLUGIN_API_MINOR) {
    api = *hal::ProcessHostApi();
    api.minor = minor;
    api.host_ctx = this;
    api.log = [](void* ctx, kestrel_plugin_log_level_t, const char*, size_t) {
      ++static_cast<ProbeHost*>(ctx)->logs;
    };
    api.status_create = [](void* ctx, kestrel_plugin_status_code_t code, const char* msg,
                           size_t len) {
      ++static_cast<ProbeHost*>(ctx)->statuses;
      const kestrel_host_api_t* p = hal::ProcessHostApi();
      return p->status_create(p->host_ctx, code, msg, len);
    };
  }
};

// The loaded library (in the child).
struct Lib {
  void* handle = nullptr;
  kestrel_plugin_get_api_fn get_api = nullptr;
  std::string error;
};

Lib Open(const std::string& path) {
  Lib lib;
  lib.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib.handle == nullptr) {
    const char* e = dlerror();
    lib.error = absl::StrCat("dlopen failed: ", e ? e : "unknown error");
    return lib;
  }
  lib.get_api = reinterpret_cast<kestrel_plugin_get_api_fn>(dlsym(lib.handle, KESTREL_PLUGIN_ENTRY_SYMBOL));
  if (lib.get_api == nullptr) {
    lib.error = absl::StrCat("the library does not export ", KESTREL_PLUGIN_ENTRY_SYMBOL);
  }
  return lib;
}

std::string Take(kestrel_plugin_status_t* s) {
  absl::Status st = hal::TakePluginStatus(s, "");
  return st.ok() ? "" : std::string(st.message());
}

template <typename Fn>
bool Has(const kestrel_plugin_api_t* api, Fn kestrel_plugin_api_t::*member, size_t offset) {
  return api->struct_size >= offset + sizeof(Fn) && (api->*member) != nullptr;
}
#define HAS(api, slot) Has(api, &kestrel_plugin_api_t::slot, offsetof(kestrel_plugin_api_t, slot))

// Loads the table with `host` (current major, minor of the host); fills *api or returns why not.
Verdict GetTable(const std::string& path, ProbeHost& host, const kestrel_plugin_api_t** api) {
  Lib lib = Open(path);
  if (!lib.error.empty()) return FailV(lib.error);
  *api = nullptr;
  const std::string err = Take(lib.get_api(&host.api, KESTREL_PLUGIN_API_MAJOR, host.api.minor, api));
  if (!err.empty()) return FailV(absl::StrCat("kestrel_plugin_get_api failed: ", err));
  if (*api == nullptr) return FailV("kestrel_plugin_get_api returned no table");
  if ((*api)->struct_size < 8) return FailV("table struct_size < 8");
  return PassV();
}

// get_api, the required slots, init and device_count > 0: what most checks start from.
Verdict Ready(const std::string& path, ProbeHost& host, const kestrel_plugin_api_t** api) {
  Verdict v = GetTable(path, host, api);
  if (v.outcome != Outcome::kPass) return v;
  const kestrel_plugin_api_t* a = *api;
  if (a->major != KESTREL_PLUGIN_API_MAJOR) return FailV("other major version");
  if (!HAS(a, init) || !HAS(a, device_count) || !HAS(a, device_get_caps) || !HAS(a, device_open)) {
    return FailV("a required slot is missing");
  }
  const std::string err = Take(a->init(nullptr, 0));
  if (!err.empty()) return FailV(absl::StrCat("init failed: ", err));
  char reason[256] = {0};
  if (a->device_count(reason, sizeof reason) == 0) {
    reason[sizeof reason - 1] = '\0';
    return FailV(absl::StrCat("no devices: ", reason));
  }
  return PassV();
}

struct AbiCheck {
  std::string id;
  std::function<Verdict(const std::string& path)> run;
};

std::vector<AbiCheck> Checks() {
  std::vector<AbiCheck> c;
  c.push_back({"entry_symbol", [](const std::string& path) {
                 Lib lib = Open(path);
                 return lib.error.empty() ? PassV() : FailV(lib.error);
               }});
  c.push_back({"get_api", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = GetTable(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 if (api->struct_size < offsetof(kestrel_plugin_api_t, version) + sizeof(void*) ||
                     api->name == nullptr || api->name[0] == '\0') {
                   return FailV("the table has no name");
                 }
                 return PassV(absl::StrCat("plugin '", api->name, "' ", api->version ? api->version : "",
                                           ", ABI ", api->major, ".", api->minor, ", table ",
                                           api->struct_size, " bytes"));
               }});
  c.push_back({"major_version", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = GetTable(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 if (api->major != KESTREL_PLUGIN_API_MAJOR) {
                   return FailV(absl::StrCat("the table says ABI ", api->major, ".", api->minor,
                                             "; this host speaks major ", KESTREL_PLUGIN_API_MAJOR));
                 }
                 return PassV();
               }});
  for (uint16_t minor : {uint16_t{0}, uint16_t{1}, uint16_t{99}}) {
    const std::string id = absl::StrCat("negotiation/host_minor_", minor);
    c.push_back({id, [minor](const std::string& path) {
                   ProbeHost host(minor);
                   const kestrel_plugin_api_t* api = nullptr;
                   Verdict v = GetTable(path, host, &api);
                   if (v.outcome != Outcome::kPass) {
                     v.message = absl::StrCat("a 1.", minor, " host: ", v.message);
                   }
                   return v;
                 }});
  }
  c.push_back({"negotiation/other_major_refused", [](const std::string& path) {
                 Lib lib = Open(path);
                 if (!lib.error.empty()) return FailV(lib.error);
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = reinterpret_cast<const kestrel_plugin_api_t*>(&host);
                 absl::Status st = hal::TakePluginStatus(
                     lib.get_api(&host.api, KESTREL_PLUGIN_API_MAJOR + 1, 0, &api), "");
                 if (api != nullptr) return FailV("a host of another major version got a table");
                 if (st.code() != absl::StatusCode::kFailedPrecondition) {
                   return FailV(absl::StrCat("expected FAILED_PRECONDITION naming both versions, got ",
                                             st.ToString()));
                 }
                 return PassV(std::string(st.message()));
               }});
  c.push_back({"struct_size/host_table_too_small", [](const std::string& path) {
                 Lib lib = Open(path);
                 if (!lib.error.empty()) return FailV(lib.error);
                 ProbeHost host;
                 host.api.struct_size = 8;
                 const kestrel_plugin_api_t* api = reinterpret_cast<const kestrel_plugin_api_t*>(&host);
                 kestrel_plugin_status_t* s = lib.get_api(&host.api, KESTREL_PLUGIN_API_MAJOR, 0, &api);
                 Take(s);
                 if (api != nullptr) return FailV("a too-small host table got a table");
                 api = reinterpret_cast<const kestrel_plugin_api_t*>(&host);
                 s = lib.get_api(nullptr, KESTREL_PLUGIN_API_MAJOR, 0, &api);
                 Take(s);
                 if (api != nullptr) return FailV("a NULL host table got a table");
                 return PassV();
               }});
  c.push_back({"struct_size/device_caps", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = Ready(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 // An older host's caps: only the first 8 bytes exist; the rest must stay intact.
                 std::vector<uint8_t> mem(sizeof(kestrel_device_caps_t) + 64, 0xAB);
                 auto* caps = reinterpret_cast<kestrel_device_caps_t*>(mem.data());
                 caps->struct_size = 8;
                 const std::string err = Take(api->device_get_caps(0, caps));
                 (void)err;  // refusing a tiny struct is allowed; writing past it is not
                 for (size_t i = 8; i < mem.size(); ++i) {
                   if (mem[i] != 0xAB) {
                     return FailV(absl::StrCat("device_get_caps wrote byte ", i,
                                               " of a caps struct whose struct_size is 8"));
                   }
                 }
                 kestrel_device_caps_t full{};
                 full.struct_size = sizeof full;
                 const std::string e2 = Take(api->device_get_caps(0, &full));
                 if (!e2.empty()) return FailV(absl::StrCat("device_get_caps: ", e2));
                 if (std::memchr(full.name, '\0', sizeof full.name) == nullptr || full.name[0] == '\0') {
                   return FailV("caps.name is empty or not NUL-terminated");
                 }
                 return PassV();
               }});
  c.push_back({"required_slots", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = GetTable(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 struct Slot { const char* name; size_t offset; };
#define SLOT(s) Slot{#s, offsetof(kestrel_plugin_api_t, s)}
                 for (const Slot& s : {SLOT(init), SLOT(device_count), SLOT(device_get_caps),
                                       SLOT(device_open), SLOT(device_close), SLOT(buffer_alloc),
                                       SLOT(buffer_free), SLOT(buffer_write), SLOT(buffer_read),
                                       SLOT(buffer_copy), SLOT(weight_prepare), SLOT(weight_release),
                                       SLOT(op_query), SLOT(op_execute)}) {
#undef SLOT
                   void* value = nullptr;
                   if (api->struct_size >= s.offset + sizeof(void*)) {
                     std::memcpy(&value, reinterpret_cast<const char*>(api) + s.offset, sizeof value);
                   }
                   if (value == nullptr) return FailV(absl::StrCat("required slot '", s.name, "' is NULL or missing"));
                 }
                 return PassV();
               }});
  c.push_back({"optional_slots", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = Ready(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 const int streams = HAS(api, stream_create) + HAS(api, stream_destroy) +
                                     HAS(api, stream_synchronize) + HAS(api, event_record) +
                                     HAS(api, stream_wait_event) + HAS(api, event_synchronize) +
                                     HAS(api, event_destroy);
                 if (streams != 0 && streams != 7) {
                   return FailV(absl::StrCat(streams, " of the 7 stream/event slots are set: all or none"));
                 }
                 const int inst = HAS(api, instance_create) + HAS(api, instance_destroy) +
                                  HAS(api, instance_device_count) + HAS(api, instance_device_get_caps) +
                                  HAS(api, instance_device_open);
                 if (inst != 0 && inst != 5) {
                   return FailV(absl::StrCat(inst, " of the 5 instance slots are set: all or none"));
                 }
                 if (inst == 5 && api->minor < 4) {
                   return FailV(absl::StrCat("the instance slots are set but the table says ABI ",
                                             api->major, ".", api->minor,
                                             ": a host uses them only from minor 4 (say minor 4)"));
                 }
                 kestrel_device_caps_t caps{};
                 caps.struct_size = sizeof caps;
                 const std::string err = Take(api->device_get_caps(0, &caps));
                 if (!err.empty()) return FailV(absl::StrCat("device_get_caps: ", err));
                 if (caps.async && streams == 0) return FailV("caps.async is 1 but there are no stream slots");
                 if (HAS(api, buffer_map) && !caps.host_visible) {
                   return FailV("buffer_map is set but caps.host_visible is 0");
                 }
                 return PassV(absl::StrCat(streams ? "streams and events" : "synchronous (no streams)",
                                           inst ? ", ABI 1.4 instances" : ", no instances",
                                           HAS(api, buffer_map) ? ", buffer_map" : ""));
               }});
  c.push_back({"null_arguments", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = Ready(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 kestrel_plugin_device_t* dev = nullptr;
                 std::string err = Take(api->device_open(0, &dev));
                 if (!err.empty() || dev == nullptr) return FailV(absl::StrCat("device_open: ", err));
                 api->buffer_free(dev, nullptr);
                 api->weight_release(dev, nullptr);
                 kestrel_op_support_t support{};
                 support.struct_size = sizeof support;
                 if (Take(api->op_query(dev, nullptr, &support)).empty()) {
                   return FailV("op_query with op NULL returned OK");
                 }
                 kestrel_plugin_buffer_t* b = nullptr;
                 if (Take(api->buffer_alloc(dev, 16, 0, &b)).empty() && b != nullptr) {
                   if (Take(api->buffer_write(dev, nullptr, b, 8, nullptr, 16)).empty()) {
                     return FailV("buffer_write past the end of a buffer returned OK");
                   }
                   api->buffer_free(dev, b);
                 }
                 api->device_close(dev);
                 api->device_close(nullptr);
                 if (HAS(api, instance_destroy)) api->instance_destroy(nullptr);
                 return PassV();
               }});
  c.push_back({"unknown_op_kind", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = Ready(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 kestrel_plugin_device_t* dev = nullptr;
                 std::string err = Take(api->device_open(0, &dev));
                 if (!err.empty()) return FailV(absl::StrCat("device_open: ", err));
                 kestrel_op_desc_t op{};
                 op.struct_size = sizeof op;
                 op.kind = 0x7FFF;
                 op.op_version = 1;
                 kestrel_op_support_t s{};
                 s.struct_size = sizeof s;
                 s.level = 99;
                 err = Take(api->op_query(dev, &op, &s));
                 api->device_close(dev);
                 if (!err.empty()) return FailV(absl::StrCat("op_query of an unknown kind failed: ", err));
                 if (s.level != KESTREL_OP_UNSUPPORTED) return FailV("an unknown kind was not UNSUPPORTED");
                 return PassV();
               }});
  c.push_back({"reinitialisation", [](const std::string& path) {
                 ProbeHost host;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = Ready(path, host, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 for (int round = 0; round < 2; ++round) {
                   if (round > 0) {
                     // After shutdown the table may be gone: a host starts again at get_api.
                     v = GetTable(path, host, &api);
                     if (v.outcome != Outcome::kPass) {
                       return FailV(absl::StrCat("get_api after shutdown: ", v.message));
                     }
                     const std::string err = Take(api->init(nullptr, 0));
                     if (!err.empty()) return FailV(absl::StrCat("init after shutdown failed: ", err));
                   }
                   char reason[128] = {0};
                   if (api->device_count(reason, sizeof reason) == 0) {
                     return FailV(absl::StrCat("round ", round, ": no devices: ", reason));
                   }
                   kestrel_plugin_device_t* dev = nullptr;
                   const std::string err = Take(api->device_open(0, &dev));
                   if (!err.empty()) return FailV(absl::StrCat("round ", round, ": device_open: ", err));
                   kestrel_plugin_buffer_t* b = nullptr;
                   const std::string e2 = Take(api->buffer_alloc(dev, 64, 0, &b));
                   if (!e2.empty()) return FailV(absl::StrCat("round ", round, ": buffer_alloc: ", e2));
                   api->buffer_free(dev, b);
                   api->device_close(dev);
                   if (HAS(api, shutdown)) api->shutdown();
                 }
                 return PassV("get_api, init, use, shutdown; get_api, init, use, shutdown again");
               }});
  c.push_back({"instances", [](const std::string& path) {
                 ProbeHost first, second;
                 const kestrel_plugin_api_t* api = nullptr;
                 Verdict v = GetTable(path, first, &api);
                 if (v.outcome != Outcome::kPass) return v;
                 if (!HAS(api, instance_create) || api->minor < 4) {
                   return SkipV("the plugin has no ABI 1.4 instance slots (one process-wide instance)");
                 }
                 ProbeHost* hosts[2] = {&first, &second};
                 kestrel_plugin_instance_t* inst[2] = {nullptr, nullptr};
                 kestrel_plugin_device_t* dev[2] = {nullptr, nullptr};
                 for (int i = 0; i < 2; ++i) {
                   std::string err = Take(api->instance_create(&hosts[i]->api, nullptr, 0, &inst[i]));
                   if (!err.empty() || inst[i] == nullptr) return FailV(absl::StrCat("instance_create: ", err));
                   char reason[128] = {0};
                   if (api->instance_device_count(inst[i], reason, sizeof reason) == 0) {
                     return FailV(absl::StrCat("instance ", i, ": no devices: ", reason));
                   }
                   err = Take(api->instance_device_open(inst[i], 0, &dev[i]));
                   if (!err.empty()) return FailV(absl::StrCat("instance_device_open: ", err));
                 }
                 // An error on the second instance's device is that instance's host's status.
                 const int before[2] = {first.statuses.load(), second.statuses.load()};
                 kestrel_plugin_buffer_t* b = nullptr;
                 std::string err = Take(api->buffer_alloc(dev[1], 16, 0, &b));
                 if (!err.empty()) return FailV(absl::StrCat("buffer_alloc: ", err));
                 uint8_t sink[32];
                 if (Take(api->buffer_read(dev[1], nullptr, b, 0, sink, 32)).empty()) {
                   return FailV("buffer_read past the end returned OK");
                 }
                 api->buffer_free(dev[1], b);
                 if (second.statuses.load() == before[1] || first.statuses.load() != before[0]) {
                   return FailV("a status of the second instance's device was not created through the "
                                "second instance's host table");
                 }
                 for (int i = 0; i < 2; ++i) {
                   api->device_close(dev[i]);
                   api->instance_destroy(inst[i]);
                 }
                 return PassV("two instances, each with its own host table and device");
               }});
  return c;
}

}  // namespace

void RunAbiTier(const KitOptions& options, Report& report) {
  for (const AbiCheck& check : Checks()) {
    Verdict v = Isolated([&] { return check.run(options.plugin_path); });
    report.Add({absl::StrCat(kTier, "/", check.id), kTier, v.outcome, v.message});
  }
}

}  // namespace kestrel::conformance
