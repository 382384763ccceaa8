// runtime/arch/registry.h: general.architecture -> Architecture. Adding an architecture is one
// line in registry.cc (see docs/ADDING_A_MODEL.md).
#ifndef KESTREL_RUNTIME_ARCH_REGISTRY_H_
#define KESTREL_RUNTIME_ARCH_REGISTRY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/arch/architecture.h"

namespace kestrel {
namespace runtime {

// The architecture named `name`; UNIMPLEMENTED naming it and listing the supported ones otherwise.
absl::StatusOr<const Architecture*> FindArchitecture(absl::string_view name);

// Names of every registered architecture, in registry order.
std::vector<std::string> SupportedArchitectures();

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_REGISTRY_H_
