#include "plugin_sdk/conformance/report.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kestrel::conformance {

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kPass: return "pass";
    case Outcome::kFail: return "fail";
    default: return "skip";
  }
}

absl::StatusOr<Expectations> Expectations::Load(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("--expect-fail: cannot read '", path, "'"));
  std::stringstream text;
  text << f.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<Expectations> Expectations::Parse(const std::string& text,
                                                 const std::string& origin) {
  Expectations e;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) continue;
    const size_t end = line.find_last_not_of(" \t\r");
    std::string id = line.substr(b, end - b + 1);
    if (id.find_first_of(" \t") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ":", number, ": '", id,
                                                     "' is not one check id (no spaces)"));
    }
    if (id.find('*') != std::string::npos && id.find('*') != id.size() - 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ":", number, ": '", id, "': '*' is allowed only at the end"));
    }
    e.patterns_.push_back(std::move(id));
    e.used_.push_back(false);
  }
  return e;
}

bool Expectations::Matches(const std::string& id) {
  bool any = false;
  for (size_t i = 0; i < patterns_.size(); ++i) {
    const std::string& p = patterns_[i];
    const bool hit = !p.empty() && p.back() == '*' ? id.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0
                                                   : id == p;
    if (hit) {
      used_[i] = true;
      any = true;
    }
  }
  return any;
}

std::vector<std::string> Expectations::Unused() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < patterns_.size(); ++i) {
    if (!used_[i]) out.push_back(patterns_[i]);
  }
  return out;
}

void Report::Add(CheckResult r) {
  r.expected_fail = expectations_.Matches(r.id);
  checks_.push_back(std::move(r));
}

void Report::Pass(const std::string& tier, const std::string& id, const std::string& message) {
  Add({tier + "/" + id, tier, Outcome::kPass, message});
}
void Report::Fail(const std::string& tier, const std::string& id, const std::string& message) {
  Add({tier + "/" + id, tier, Outcome::kFail, message});
}
void Report::Skip(const std::string& tier, const std::string& id, const std::string& message) {
  Add({tier + "/" + id, tier, Outcome::kSkip, message});
}

bool Report::AsExpected() const {
  if (!expectations_.Unused().empty()) return false;  // a stale or mistyped line
  for (const CheckResult& c : checks_) {
    if (c.outcome == Outcome::kFail && !c.expected_fail) return false;
    if (c.outcome == Outcome::kPass && c.expected_fail) return false;
  }
  return true;
}

std::vector<std::string> Report::FailedIds() const {
  std::vector<std::string> ids;
  for (const CheckResult& c : checks_) {
    if (c.outcome == Outcome::kFail) ids.push_back(c.id);
  }
  return ids;
}

nlohmann::json Report::ToJson() const {
  nlohmann::json j = meta_;
  int passed = 0, failed = 0, expected_failures = 0, unexpected_passes = 0, skipped = 0;
  nlohmann::json checks = nlohmann::json::array();
  for (const CheckResult& c : checks_) {
    nlohmann::json x = {{"id", c.id},
                        {"tier", c.tier},
                        {"result", OutcomeName(c.outcome)},
                        {"expected", c.expected_fail ? "fail" : "pass"},
                        {"message", c.message}};
    if (c.error >= 0) x["error"] = c.error;
    if (c.tolerance >= 0) x["tolerance"] = c.tolerance;
    const bool unexpected_pass = c.outcome == Outcome::kPass && c.expected_fail;
    x["as_expected"] = c.outcome == Outcome::kSkip ||
                       (c.outcome == Outcome::kFail) == c.expected_fail;
    if (unexpected_pass) x["unexpected_pass"] = true;
    switch (c.outcome) {
      case Outcome::kPass:
        c.expected_fail ? ++unexpected_passes : ++passed;
        break;
      case Outcome::kFail:
        c.expected_fail ? ++expected_failures : ++failed;
        break;
      default:
        ++skipped;
    }
    checks.push_back(std::move(x));
  }
  j["summary"] = {{"checks", checks_.size()},
                  {"passed", passed},
                  {"failed", failed},
                  {"expected_failures", expected_failures},
                  {"unexpected_passes", unexpected_passes},
                  {"skipped", skipped},
                  {"unused_expectations", expectations_.Unused()},
                  {"as_expected", AsExpected()}};
  j["checks"] = std::move(checks);
  return j;
}

std::string Report::ToMarkdown() const {
  const nlohmann::json j = ToJson();
  std::ostringstream md;
  md << "# kestrel-conformance report\n\n";
  for (const char* key : {"plugin", "device"}) {
    if (!j.contains(key)) continue;
    md << "**" << key << "**: ";
    bool first = true;
    for (auto it = j[key].begin(); it != j[key].end(); ++it) {
      md << (first ? "" : ", ") << it.key() << " `" << (it->is_string() ? it->get<std::string>() : it->dump()) << "`";
      first = false;
    }
    md << "\n\n";
  }
  if (j.contains("seed")) md << "**seed**: " << j["seed"].dump() << "\n\n";
  const nlohmann::json& s = j["summary"];
  md << "**result**: " << (s["as_expected"].get<bool>() ? "PASS (everything as expected)" : "FAIL")
     << " — " << s["passed"].dump() << " passed, " << s["failed"].dump() << " failed, "
     << s["expected_failures"].dump() << " expected failures, " << s["unexpected_passes"].dump()
     << " unexpected passes, " << s["skipped"].dump() << " skipped\n\n";
  md << "| check | result | expected | error / tolerance | message |\n|---|---|---|---|---|\n";
  for (const nlohmann::json& c : j["checks"]) {
    std::string msg = c["message"].get<std::string>();
    for (char& ch : msg) {
      if (ch == '|' || ch == '\n') ch = ' ';
    }
    md << "| `" << c["id"].get<std::string>() << "` | " << c["result"].get<std::string>()
       << (c.contains("unexpected_pass") ? " (UNEXPECTED)" : "") << " | "
       << c["expected"].get<std::string>() << " | ";
    if (c.contains("error")) md << c["error"].get<double>() << " / " << c["tolerance"].get<double>();
    md << " | " << msg << " |\n";
  }
  return md.str();
}

}  // namespace kestrel::conformance
