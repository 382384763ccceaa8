// runtime/offload/size_spec.h: the user's memory budgets as text ("opencl=256M", "host=60%") turned
// into bytes per device. A SIZE is bytes with an optional K/M/G/T suffix (powers of 1024, an
// optional trailing "B" or "iB"), or a percentage of the model's weight bytes. Pure parsing: knows no
// device and no model beyond the weight byte count it is given.
#ifndef KESTREL_RUNTIME_OFFLOAD_SIZE_SPEC_H_
#define KESTREL_RUNTIME_OFFLOAD_SIZE_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kestrel {
namespace runtime {
namespace offload {

// The device name "host" stands for host RAM (the expert cache of a host-memory device, swap).
inline constexpr const char* kHostBudget = "host";

struct MemBudget {
  std::string device;  // a device name ("cpu", "opencl:0", ...) or kHostBudget
  uint64_t bytes = 0;
};

// "1024", "256K", "1.5G", "60%" (of weight_bytes), "unlimited" (UINT64_MAX). INVALID_ARGUMENT quoting the text otherwise
// (empty, negative, unknown suffix, overflow, a percentage outside (0, 1000]).
absl::StatusOr<uint64_t> ParseSize(absl::string_view text, uint64_t weight_bytes);

// Each spec is "DEVICE=SIZE", or several joined by commas. A device named twice, an empty device
// name or a missing '=' is INVALID_ARGUMENT naming the spec.
absl::StatusOr<std::vector<MemBudget>> ParseBudgets(const std::vector<std::string>& specs,
                                                    uint64_t weight_bytes);

// "512 B", "3.0 KiB", "1.25 GiB": for messages and plans.
std::string FormatBytes(uint64_t bytes);

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_SIZE_SPEC_H_
