// runtime/model/model_packer.h: builds a .kpkg package from a GGUF: the model as it is
// (metadata, tokenizer, tensors in 64 KiB-aligned sections), optionally a draft model, and the
// prepared weights of each device asked for (the model is loaded on that device and its plugin
// exports every weight in its own layout: plugin ABI 1.4 weight_export).
#ifndef KESTREL_RUNTIME_MODEL_MODEL_PACKER_H_
#define KESTREL_RUNTIME_MODEL_MODEL_PACKER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "hal/src/device.h"

namespace kestrel {
namespace runtime {

struct PackOptions {
  std::string model_path;   // a GGUF
  std::string output_path;  // the .kpkg to write (written as <path>.tmp, renamed when complete)
  std::string draft_path;   // optional GGUF of a draft model ("" for none)
  // Devices whose prepared weights the package carries (each must export: FAILED_PRECONDITION
  // naming the device otherwise).
  std::vector<hal::Device*> devices;
  // Progress in [0, 1]; returning false cancels (CANCELLED, no file left behind).
  std::function<bool(float)> progress;
};

absl::Status PackModel(const PackOptions& options);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_MODEL_MODEL_PACKER_H_
