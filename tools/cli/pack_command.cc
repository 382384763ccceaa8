// `kestrel pack -m MODEL.gguf [--device cpu ...] [--draft DRAFT.gguf] -o MODEL.kpkg`: writes a
// .kpkg package (kestrel_package_write) and prints its description (kestrel_package_describe).
#include <cstdio>
#include <string>
#include <vector>

#include "api_util.h"
#include "commands.h"
#include "interrupt.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"
#include "progress_bar.h"

namespace kestrel::cli {
namespace {

bool OnProgress(void* user, float f) {
  static_cast<ProgressBar*>(user)->Update(f);
  return !InterruptRequested();
}

}  // namespace

int RunPack(const Options& o) {
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  std::vector<const char*> devices;
  for (const std::string& d : o.pack_devices) devices.push_back(d.c_str());
  kestrel_pack_options_t options;
  kestrel_pack_options_init(&options);
  options.devices = devices.empty() ? nullptr : devices.data();
  options.n_devices = devices.size();
  options.draft_path = o.draft_path.empty() ? nullptr : o.draft_path.c_str();
  ProgressBar bar("packing");
  options.progress_callback = &OnProgress;
  options.progress_user_data = &bar;
  InstallInterruptHandler();
  StatusPtr status(kestrel_package_write(runtime.get(), o.model_path.c_str(),
                                         o.output_path.c_str(), &options));
  bar.Finish();
  if (status) {
    PrintStatusError(status.get());
    return kestrel_status_code(status.get()) == KESTREL_STATUS_CANCELLED ? kExitInterrupted
                                                                           : kExitError;
  }
  size_t required = 0;
  std::string json;
  status.reset(kestrel_package_describe(o.output_path.c_str(), false, nullptr, 0, &required));
  if (!status) {
    json.assign(required, '\0');
    status.reset(kestrel_package_describe(o.output_path.c_str(), false, &json[0], json.size(),
                                          &required));
  }
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("model");
    w.String(o.model_path);
    w.Key("output");
    w.String(o.output_path);
    w.Key("package");
    w.RawJson(json);
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  } else {
    std::printf("wrote %s\n%s\n", o.output_path.c_str(), json.c_str());
  }
  return kExitOk;
}

}  // namespace kestrel::cli
