#include "runtime/arch/registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/arch/gemma3/gemma3_architecture.h"
#include "runtime/arch/llama/llama_architecture.h"
#include "runtime/arch/phi3/phi3_architecture.h"
#include "runtime/arch/qwen2/qwen2_architecture.h"
#include "runtime/arch/qwen3/qwen3_architecture.h"

namespace kestrel {
namespace runtime {
namespace {

// One line per architecture.
const std::vector<const Architecture*>& Registry() {
  static const std::vector<const Architecture*> kArchitectures = {
      &LlamaArchitecture(),
      &Qwen2Architecture(),
      &Qwen3Architecture(),
      &Phi3Architecture(),
      &Gemma3Architecture(),
  };
  return kArchitectures;
}

}  // namespace

absl::StatusOr<const Architecture*> FindArchitecture(absl::string_view name) {
  for (const Architecture* a : Registry()) {
    if (a->name() == name) return a;
  }
  return absl::UnimplementedError(absl::StrCat("architecture '", name,
                                               "' is not supported (supported: ",
                                               absl::StrJoin(SupportedArchitectures(), ", "), ")"));
}

std::vector<std::string> SupportedArchitectures() {
  std::vector<std::string> names;
  for (const Architecture* a : Registry()) names.emplace_back(a->name());
  return names;
}

}  // namespace runtime
}  // namespace kestrel
