#include "runtime/offload/size_spec.h"

#include <cmath>
#include <cstdlib>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace kestrel {
namespace runtime {
namespace offload {
namespace {

absl::Status BadSize(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "memory size '", text, "': ", why,
      " (expected bytes with an optional K/M/G/T suffix, e.g. 256M, or a percentage of the "
      "model's weight bytes, e.g. 60%)"));
}

}  // namespace

absl::StatusOr<uint64_t> ParseSize(absl::string_view text, uint64_t weight_bytes) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  if (s.empty()) return BadSize(text, "empty");
  if (s == "unlimited") return UINT64_MAX;
  const std::string number(s);
  char* end = nullptr;
  const double value = std::strtod(number.c_str(), &end);
  if (end == number.c_str()) return BadSize(text, "no number");
  if (!std::isfinite(value) || value < 0) return BadSize(text, "not a finite size >= 0");
  std::string suffix = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(end));
  double bytes;
  if (suffix == "%") {
    if (value <= 0 || value > 1000) return BadSize(text, "a percentage must lie in (0, 1000]");
    bytes = std::floor(value / 100.0 * static_cast<double>(weight_bytes));
  } else {
    if (suffix.size() >= 2 && suffix.substr(suffix.size() - 2) == "IB") {
      suffix.resize(suffix.size() - 2);
    } else if (!suffix.empty() && suffix.back() == 'B') {
      suffix.pop_back();
    }
    double scale;
    if (suffix.empty()) {
      scale = 1;
    } else if (suffix == "K") {
      scale = 1024.0;
    } else if (suffix == "M") {
      scale = 1024.0 * 1024;
    } else if (suffix == "G") {
      scale = 1024.0 * 1024 * 1024;
    } else if (suffix == "T") {
      scale = 1024.0 * 1024 * 1024 * 1024;
    } else {
      return BadSize(text, absl::StrCat("unknown suffix '", suffix, "'"));
    }
    bytes = std::floor(value * scale);
  }
  if (bytes >= 18446744073709549568.0) return BadSize(text, "too large");
  return static_cast<uint64_t>(bytes);
}

absl::StatusOr<std::vector<MemBudget>> ParseBudgets(const std::vector<std::string>& specs,
                                                    uint64_t weight_bytes) {
  std::vector<MemBudget> out;
  std::set<std::string> seen;
  for (const std::string& spec : specs) {
    for (absl::string_view one : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
      const size_t eq = one.find('=');
      if (eq == absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "memory budget '", one, "': expected DEVICE=SIZE, e.g. cpu=1G or host=60%"));
      }
      MemBudget b;
      b.device = std::string(absl::StripAsciiWhitespace(one.substr(0, eq)));
      if (b.device.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("memory budget '", one, "': the device name is empty"));
      }
      if (!seen.insert(b.device).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("memory budget '", one, "': device '", b.device, "' is given twice"));
      }
      absl::StatusOr<uint64_t> bytes = ParseSize(one.substr(eq + 1), weight_bytes);
      if (!bytes.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("memory budget '", one, "': ", bytes.status().message()));
      }
      b.bytes = *bytes;
      out.push_back(std::move(b));
    }
  }
  return out;
}

std::string FormatBytes(uint64_t bytes) {
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return absl::StrFormat("%.2f %s", v, units[u]);
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
