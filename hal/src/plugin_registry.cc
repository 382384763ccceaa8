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

// "libkestrel_plugin_cpu.so" -> "cpu"; "" for a file named otherwise.
std::string NameFromFileName(absl::string_view file) {
  constexpr absl::string_view kPrefix = "libkestrel_plugin_", kSuffix = ".so";
  if (!absl::StartsWith(file, kPrefix) || !absl::EndsWith(file, kSuffix) ||
      file.size() <= kPrefix.size() + kSuffix.size()) {
    return "";
  }
  return std::string(file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size()));
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
  reg->options_ = options;
  if (sink) reg->sink_handle_ = AddLogSink(std::move(sink));
  std::vector<std::string> seen;
  for (absl::string_view element : absl::StrSplit(search_path, ':', absl::SkipEmpty())) {
    std::string entry(element);
    std::vector<std::string> files = IsDirectory(entry) ? PluginFilesIn(entry)
                                                        : std::vector<std::string>{entry};
    for (const std::string& f : files) {
      if (std::find(seen.begin(), seen.end(), f) != seen.end()) continue;
      seen.push_back(f);
      PluginRecord rec;
      rec.path = f;
      rec.name = BaseName(f);
      reg->plugins_.push_back(std::move(rec));
      reg->file_names_.push_back(NameFromFileName(reg->plugins_.back().name));
    }
  }
  reg->tried_.assign(reg->plugins_.size(), false);
  return reg;
}

void PluginRegistry::LoadNamed(absl::string_view name) const {
  for (size_t i = 0; i < plugins_.size(); ++i) {
    if (name.empty() || file_names_[i] == name) LoadOne(i);
  }
}

void PluginRegistry::LoadOne(size_t index) const {
  if (tried_[index]) return;
  tried_[index] = true;
  ++n_tried_;
  PluginRecord& rec = plugins_[index];
  const std::string& path = rec.path;
  auto log = [&](kestrel_plugin_log_level_t level, const std::string& msg) {
    if (sink_) sink_(level, msg);
  };
  absl::StatusOr<std::shared_ptr<PluginLibrary>> lib = PluginLibrary::Load(path);
  if (!lib.ok()) {
    rec.skip_reason = std::string(lib.status().message());
    log(KESTREL_PLUGIN_LOG_WARNING, absl::StrCat("skipping plugin: ", rec.skip_reason));
    return;
  }
  const PluginLibrary& l = **lib;
  rec.name = l.name();
  rec.version = l.version();
  rec.api_major = l.api().major;
  rec.api_minor = l.api().minor;
  for (size_t j = 0; j < plugins_.size(); ++j) {
    const PluginRecord& other = plugins_[j];
    if (j != index && other.loaded && other.name == rec.name) {
      rec.skip_reason = absl::StrCat("a plugin named '", rec.name, "' was already loaded from ",
                                     other.path);
      log(KESTREL_PLUGIN_LOG_WARNING, absl::StrCat("skipping plugin ", path, ": ", rec.skip_reason));
      return;
    }
  }
  // The instance: this registry's own for a 1.4 plugin (its log lines reach only sink_), the
  // shared one otherwise.
  absl::StatusOr<std::shared_ptr<PluginInstance>> inst =
      PluginInstance::Create(*lib, sink_, options_);
  if (!inst.ok()) {
    rec.skip_reason = std::string(inst.status().message());
    log(KESTREL_PLUGIN_LOG_WARNING, absl::StrCat("skipping plugin: ", rec.skip_reason));
    return;
  }
  rec.own_instance = (*inst)->own_instance();
  if ((*inst)->device_count() == 0) {
    rec.skip_reason = absl::StrCat("no devices: ", (*inst)->no_device_reason());
    log(KESTREL_PLUGIN_LOG_INFO, absl::StrCat("plugin '", rec.name, "': ", rec.skip_reason));
    return;
  }
  std::vector<std::string> failures;
  // Devices stay in plugin order whatever order the plugins are loaded in.
  size_t at = std::upper_bound(device_plugin_.begin(), device_plugin_.end(), index) -
              device_plugin_.begin();
  for (uint32_t i = 0; i < (*inst)->device_count(); ++i) {
    absl::StatusOr<std::unique_ptr<Device>> dev = Device::Open(*inst, i);
    if (!dev.ok()) {
      failures.push_back(std::string(dev.status().message()));
      log(KESTREL_PLUGIN_LOG_WARNING, failures.back());
      continue;
    }
    devices_.insert(devices_.begin() + at, std::move(*dev));
    device_plugin_.insert(device_plugin_.begin() + at, index);
    ++at;
    ++rec.device_count;
  }
  if (rec.device_count == 0) {
    rec.skip_reason = absl::StrCat("no device could be opened: ", absl::StrJoin(failures, "; "));
  } else {
    rec.loaded = true;
    log(KESTREL_PLUGIN_LOG_INFO, absl::StrCat("loaded plugin '", rec.name, "' from ", path, " with ",
                                             rec.device_count, " device(s)"));
  }
}

const std::vector<PluginRecord>& PluginRegistry::plugins() const {
  std::lock_guard<std::mutex> lock(mu_);
  LoadNamed("");
  return plugins_;
}

const std::vector<std::unique_ptr<Device>>& PluginRegistry::devices() const {
  std::lock_guard<std::mutex> lock(mu_);
  LoadNamed("");
  return devices_;
}

size_t PluginRegistry::plugins_tried() const {
  std::lock_guard<std::mutex> lock(mu_);
  return n_tried_;
}

PluginRegistry::~PluginRegistry() {
  devices_.clear();  // close devices before their libraries shut down
  if (sink_handle_ != 0) RemoveLogSink(sink_handle_);
}

Device* PluginRegistry::FindLoaded(absl::string_view name) const {
  for (const auto& d : devices_) {
    if (d->name() == name) return d.get();
  }
  return FirstOfPlugin(name);
}

Device* PluginRegistry::FirstOfPlugin(absl::string_view plugin) const {
  for (const auto& d : devices_) {
    if (d->plugin_name() == plugin) return d.get();
  }
  return nullptr;
}

absl::StatusOr<Device*> PluginRegistry::FindDevice(absl::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  // "cuda:1" comes from libkestrel_plugin_cuda.so; a plugin whose file is named otherwise is
  // found by loading the rest.
  const absl::string_view plugin = name.substr(0, name.find(':'));
  LoadNamed(plugin);
  if (Device* d = FindLoaded(name)) return d;
  LoadNamed("");
  if (Device* d = FindLoaded(name)) return d;
  std::vector<std::string> names;
  for (const auto& d : devices_) names.push_back(d->name());
  // A plugin of that name (or of the name before ':N') that was found but skipped says why,
  // e.g. "cuda: no devices: ... cudaErrorInsufficientDriver ...".
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
  std::lock_guard<std::mutex> lock(mu_);
  for (const char* preferred : {"cpu", "ref"}) {
    LoadNamed(preferred);
    if (Device* d = FirstOfPlugin(preferred)) return d;
  }
  LoadNamed("");
  for (const char* preferred : {"cpu", "ref"}) {
    if (Device* d = FirstOfPlugin(preferred)) return d;
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
  std::lock_guard<std::mutex> lock(mu_);
  LoadNamed("ref");
  if (Device* d = FirstOfPlugin("ref")) return d;
  LoadNamed("");
  return FirstOfPlugin("ref");
}

}  // namespace kestrel::hal
