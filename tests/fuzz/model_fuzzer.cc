// Fuzz target: a model file through the architecture seam (runtime/arch), without a device: the
// GGUF reader, then the registered architecture general.architecture names (FindArchitecture:
// llama today, every family added to the registry later without a change here), its ReadConfig,
// DeclareWeights (which checks every tensor's presence, shape and type against the config) and
// BuildPlan. Invariants: every refusal has a message; a plan that builds refers only to weights
// of its table and activations of its own list, with dims that are positive once resolved for a
// small step, and no argument larger than 2^48 elements.
#include <cstdint>

#include "absl/strings/string_view.h"
#include "runtime/gguf/gguf_file.h"
#include "tests/fuzz/gguf_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = kestrel::runtime::GgufFile::OpenFromMemory(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!file.ok()) return 0;
  kestrel::fuzz::CheckArchitectureSeam(**file);
  return 0;
}
