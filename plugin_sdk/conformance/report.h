// The results of a kestrel-conformance run: one record per check (an id such as
// "ops/MATMUL/Q4_0/prepared/t7_k128_n40", its tier, pass / fail / skip, a message, the measured
// error and its tolerance), the expected-failure list it is judged against, and the JSON and
// Markdown reports. A check is "as expected" when it passes and is not listed, or fails and is
// listed; a listed check that passes is an unexpected pass; a skipped check is neither. The run
// succeeds only when every check is as expected and every line of the list matched some check. Not thread-safe (tiers add results in turn).
#ifndef KESTREL_PLUGIN_SDK_CONFORMANCE_REPORT_H_
#define KESTREL_PLUGIN_SDK_CONFORMANCE_REPORT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kestrel::conformance {

enum class Outcome { kPass, kFail, kSkip };

struct CheckResult {
  std::string id;    // "<tier>/<what>", unique within a run
  std::string tier;  // abi, ops, llm, model, stress
  Outcome outcome = Outcome::kPass;
  std::string message;     // why it failed or was skipped; details for a pass
  double error = -1;       // measured error (relative norm), < 0: none
  double tolerance = -1;   // the tier's bound, < 0: none
  bool expected_fail = false;  // listed in the expected-failure file
};

// The expected-failure list: one check id per line; a trailing '*' matches every id that starts
// with what precedes it; '#' starts a comment; blank lines are ignored.
class Expectations {
 public:
  static absl::StatusOr<Expectations> Load(const std::string& path);
  static absl::StatusOr<Expectations> Parse(const std::string& text, const std::string& origin);
  bool Matches(const std::string& id);  // marks the pattern used
  // Patterns that matched no check (reported; a typo would otherwise hide).
  std::vector<std::string> Unused() const;

 private:
  std::vector<std::string> patterns_;
  std::vector<bool> used_;
};

class Report {
 public:
  explicit Report(Expectations expectations) : expectations_(std::move(expectations)) {}

  void Add(CheckResult r);
  void Pass(const std::string& tier, const std::string& id, const std::string& message = "");
  void Fail(const std::string& tier, const std::string& id, const std::string& message);
  void Skip(const std::string& tier, const std::string& id, const std::string& message);

  const std::vector<CheckResult>& checks() const { return checks_; }
  // Every check as expected (no unexpected failure, no unexpected pass).
  bool AsExpected() const;
  // The ids of the failed checks (expected or not), in run order.
  std::vector<std::string> FailedIds() const;

  // Run facts (plugin, device, seed, ...) written at the top of the reports.
  nlohmann::json& meta() { return meta_; }
  nlohmann::json ToJson() const;
  std::string ToMarkdown() const;

 private:
  Expectations expectations_;
  std::vector<CheckResult> checks_;
  nlohmann::json meta_ = nlohmann::json::object();
};

const char* OutcomeName(Outcome o);

}  // namespace kestrel::conformance

#endif  // KESTREL_PLUGIN_SDK_CONFORMANCE_REPORT_H_
