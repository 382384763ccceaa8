// `kestrel devices`: the plugins the runtime found (loaded or skipped, with the reason) and the
// devices they provide, with their capabilities.
#include <cinttypes>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "api_util.h"
#include "commands.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

const char* OrEmpty(const char* s) { return s != nullptr ? s : ""; }

void WriteDtypeArray(JsonWriter* w, uint64_t mask) {
  w->BeginArray();
  std::string names = DtypeMaskToString(mask);
  if (names != "-") {
    size_t start = 0;
    while (start <= names.size()) {
      size_t space = names.find(' ', start);
      if (space == std::string::npos) space = names.size();
      w->String(std::string_view(names).substr(start, space - start));
      start = space + 1;
    }
  }
  w->EndArray();
}

}  // namespace

int RunDevices(const Options& o) {
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;

  std::vector<kestrel_plugin_info_t> plugins;
  for (size_t i = 0, n = kestrel_runtime_plugin_count(runtime.get()); i < n; ++i) {
    kestrel_plugin_info_t p = {};
    p.struct_size = sizeof(p);
    StatusPtr status(kestrel_runtime_plugin_info(runtime.get(), i, &p));
    if (status) {
      PrintStatusError(status.get());
      return kExitError;
    }
    plugins.push_back(p);
  }
  std::vector<kestrel_device_info_t> devices;
  for (size_t i = 0, n = kestrel_runtime_device_count(runtime.get()); i < n; ++i) {
    kestrel_device_info_t d = {};
    d.struct_size = sizeof(d);
    StatusPtr status(kestrel_runtime_device_info(runtime.get(), i, &d));
    if (status) {
      PrintStatusError(status.get());
      return kExitError;
    }
    devices.push_back(d);
  }

  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("plugins");
    w.BeginArray();
    for (const kestrel_plugin_info_t& p : plugins) {
      w.BeginObject();
      w.Key("name");
      w.String(OrEmpty(p.name));
      w.Key("path");
      w.String(OrEmpty(p.path));
      w.Key("version");
      w.String(OrEmpty(p.version));
      w.Key("loaded");
      w.Bool(p.loaded);
      w.Key("skip_reason");
      w.String(OrEmpty(p.skip_reason));
      w.Key("api_major");
      w.Uint(p.api_major);
      w.Key("api_minor");
      w.Uint(p.api_minor);
      w.Key("device_count");
      w.Uint(p.device_count);
      w.EndObject();
    }
    w.EndArray();
    w.Key("devices");
    w.BeginArray();
    for (const kestrel_device_info_t& d : devices) {
      w.BeginObject();
      w.Key("name");
      w.String(OrEmpty(d.name));
      w.Key("plugin");
      w.String(OrEmpty(d.plugin));
      w.Key("description");
      w.String(OrEmpty(d.description));
      w.Key("kind");
      w.String(DeviceKindName(d.kind));
      w.Key("memory_bytes");
      w.Uint(d.memory_bytes);
      w.Key("host_visible");
      w.Bool(d.host_visible);
      w.Key("async");
      w.Bool(d.async);
      w.Key("dtypes");
      WriteDtypeArray(&w, d.dtype_mask);
      w.Key("weight_dtypes");
      WriteDtypeArray(&w, d.weight_dtype_mask);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
    return kExitOk;
  }

  std::printf("plugins (%zu):\n", plugins.size());
  for (const kestrel_plugin_info_t& p : plugins) {
    if (p.loaded) {
      std::printf("  %s %s  [loaded, plugin API %u.%u, %" PRIu32 " device%s]\n", OrEmpty(p.name),
                  OrEmpty(p.version), static_cast<unsigned>(p.api_major),
                  static_cast<unsigned>(p.api_minor), p.device_count,
                  p.device_count == 1 ? "" : "s");
    } else {
      std::printf("  %s %s  [skipped: %s]\n", OrEmpty(p.name), OrEmpty(p.version),
                  OrEmpty(p.skip_reason));
      if (p.api_major != 0 || p.api_minor != 0) {
        std::printf("    plugin API %u.%u\n", static_cast<unsigned>(p.api_major),
                    static_cast<unsigned>(p.api_minor));
      }
    }
    std::printf("    path: %s\n", OrEmpty(p.path));
  }
  std::printf("devices (%zu):\n", devices.size());
  for (const kestrel_device_info_t& d : devices) {
    std::printf("  %s  (plugin %s) %s\n", OrEmpty(d.name), OrEmpty(d.plugin),
                OrEmpty(d.description));
    std::printf("    kind: %s, memory: %s, host-visible: %s, async: %s\n",
                DeviceKindName(d.kind).c_str(), FormatBytes(d.memory_bytes).c_str(),
                d.host_visible ? "yes" : "no", d.async ? "yes" : "no");
    std::printf("    dtypes: %s\n", DtypeMaskToString(d.dtype_mask).c_str());
    std::printf("    weight dtypes: %s\n", DtypeMaskToString(d.weight_dtype_mask).c_str());
  }
  if (plugins.empty()) {
    std::fprintf(stderr,
                 "kestrel: no plugins found; set KESTREL_PLUGIN_PATH to a plugin folder or file\n");
  }
  return kExitOk;
}

}  // namespace kestrel::cli
