#include "hal/src/plugin_registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kestrel::hal {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> PluginFilesIn(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return files;
  while (dirent* e = readdir(d)) {
    absl::string_view n = e->d_name;
    if (absl::StartsWith(n, "libkestrel_plugin_") && absl::EndsWith(n, ".so")) {
      files.push_back(absl::StrCat(dir, "/", n));
    }
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string DefaultPluginDirectory() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&DefaultPluginDirectory), &info) == 0 ||
      info.dli_fname == nullptr) {
    return "";
  }
  std::string self = info.dli_fname;
  size_t slash = self.rfind('/');
  std::string dir = slash == std::string::npos ? "." : self.substr(0, slash);
  // Library in <prefix>/lib: plugins in <prefix>/lib/kestrel/plugins. An executable that links
  // the runtime statically sits in build/bin: plugins in build/lib/kestrel/plugins.
  std::string next_to = dir + "/kestrel/plugins";
  if (IsDirectory(next_to)) return next_to;
  std::string sibling = dir + "/../lib/kestrel/plugins";
  if (IsDirectory(sibling)) return sibling;
  return next_to;
}

std::unique_ptr<PluginRegistry> PluginRegistry::Create(const std::string& search_path,
                                                       LogSink sink,
                                                       const PluginOptions& options) {
  std::unique_ptr<PluginRegistry> reg(new PluginRegistry());
  reg->sink_ = sink;
  if (sink) reg->sink_handle_ = AddLogSink(std::move(sink));
  std::vector<std::string> seen;
  for (absl::string_view element : absl::StrSplit(search_path, ':', absl::SkipEmpty())) {
    std::string entry(element);
    std::vector<std::string> files = IsDirectory(entry) ? PluginFilesIn(entry)
                                                        : std::vector<std::string>{entry};
    for (const std::string& f : files) {
      if (std::find(seen.begin(), seen.end(), f) != seen.end()) continue;
      seen.push_back(f);
      reg->LoadOne(f, options);
    }
  }
  return reg;
}

void PluginRegistry::LoadOne(const std::string& path, const PluginOptions& options) {
  PluginRecord rec;
  rec.path = path;
  rec.name = BaseName(path);
  auto log = [&](kestrel_plugin_log_level_t level, const std::string& msg) {
    if (sink_) sink_(level, msg);
  };
  absl::StatusOr<std::shared_ptr<PluginLibrary>> lib = PluginLibrary::Load(path);
  if (!lib.ok()) {
    rec.skip_reason = std::string(lib.status().message());
    log(KESTREL_PLUGIN_LOG_WARNING, absl::StrCat("skipping plugin: ", rec.skip_reason));
    plugins_.push_back(std::move(rec));
    return;
  }
  const PluginLibrary& l = **lib;
  rec.name = l.name();
  rec.version = l.version();
  rec.api_major = l.api().major;
  rec.api_minor = l.api().minor;
  for (const PluginRecord& other : plugins_) {
    if (other.loaded && other.name == rec.name) {
      rec.skip_reason = absl::StrCat("a plugin named '", rec.name, "' was already loaded from ",
                                     other.path);
      log(KESTREL_PLUGIN_LOG_WARNING, absl::StrCat("skipping plugin ", path, ": ", rec.skip_reason));
      plugins_.push_back(std::move(rec));
      return;
    }
  }
  // The instance: this registry's own for a 1.4 plugin (its log lines reach only sink_), the
  // shared one otherwise.
  absl::StatusOr<std::shared_ptr<PluginInstance>> inst =
      PluginInstance::Create(*lib, sink_, options);
  if (!inst.ok()) {
    rec.skip_reason = std::string(inst.status().message());
    log(KESTREL_PLUGIN_LOG_WARNING, absl::StrCat("skipping plugin: ", rec.skip_reason));
    plugins_.push_back(std::move(rec));
    return;
  }
  rec.own_instance = (*inst)->own_instance();
  if ((*inst)->device_count() == 0) {
    rec.skip_reason = absl::StrCat("no devices: ", (*inst)->no_device_reason());
    log(KESTREL_PLUGIN_LOG_INFO, absl::StrCat("plugin '", rec.name, "': ", rec.skip_reason));
    plugins_.push_back(std::move(rec));
    return;
  }
  std::vector<std::string> failures;
  for (uint32_t i = 0; i < (*inst)->device_count(); ++i) {
    absl::StatusOr<std::unique_ptr<Device>> dev = Device::Open(*inst, i);
    if (!dev.ok()) {
      failures.push_back(std::string(dev.status().message()));
      log(KESTREL_PLUGIN_LOG_WARNING, failures.back());
      continue;
    }
    devices_.push_back(std::move(*dev));
    ++rec.device_count;
  }
  if (rec.device_count == 0) {
    rec.skip_reason = absl::StrCat("no device could be opened: ", absl::StrJoin(failures, "; "));
  } else {
    rec.loaded = true;
    log(KESTREL_PLUGIN_LOG_INFO, absl::StrCat("loaded plugin '", rec.name, "' from ", path, " with ",
                                             rec.device_count, " device(s)"));
  }
  plugins_.push_back(std::move(rec));
}

PluginRegistry::~PluginRegistry() {
  devices_.clear();  // close devices before their libraries shut down
  if (sink_handle_ != 0) RemoveLogSink(sink_handle_);
}

absl::StatusOr<Device*> PluginRegistry::FindDevice(absl::string_view name) const {
  for (const auto& d : devices_) {
    if (d->name() == name) return d.get();
  }
  for (const auto& d : devices_) {
    if (d->plugin_name() == name) return d.get();
  }
  std::vector<std::string> names;
  for (const auto& d : devices_) names.push_back(d->name());
  // A plugin of that name (or of the name before ':N') that was found but skipped says why,
  // e.g. "cuda: no devices: ... cudaErrorInsufficientDriver ...".
  const absl::string_view plugin = name.substr(0, name.find(':'));
  std::string why;
  for (const PluginRecord& p : plugins_) {
    if (!p.loaded && p.name == plugin && !p.skip_reason.empty()) {
      why = absl::StrCat(" (plugin '", p.name, "' was skipped: ", p.skip_reason, ")");
      break;
    }
  }
  return absl::NotFoundError(absl::StrCat(
      "no device named '", name, "'", why, "; available: ",
      names.empty() ? std::string("none (no plugin loaded; see `kestrel devices`)")
                    : absl::StrJoin(names, ", ")));
}

absl::StatusOr<Device*> PluginRegistry::DefaultDevice() const {
  for (const char* preferred : {"cpu", "ref"}) {
    for (const auto& d : devices_) {
      if (d->plugin_name() == preferred) return d.get();
    }
  }
  if (!devices_.empty()) return devices_.front().get();
  std::vector<std::string> reasons;
  for (const PluginRecord& p : plugins_) reasons.push_back(absl::StrCat(p.path, ": ", p.skip_reason));
  return absl::NotFoundError(absl::StrCat(
      "no device available: ",
      reasons.empty() ? std::string("no plugin found on the plugin path (set KESTREL_PLUGIN_PATH)")
                      : absl::StrJoin(reasons, "; ")));
}

Device* PluginRegistry::ReferenceDevice() const {
  for (const auto& d : devices_) {
    if (d->plugin_name() == "ref") return d.get();
  }
  return nullptr;
}

}  // namespace kestrel::hal
