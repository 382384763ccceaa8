#include "runtime/speculative/spec_config.h"

namespace kestrel {
namespace runtime {

namespace {
constexpr const char* kNames[kNumSpecMethods] = {"off",  "auto",      "draft",  "self",
                                                 "ngram", "lookahead", "medusa", "eagle"};
}  // namespace

const char* SpecMethodName(SpecMethod m) {
  const uint32_t i = static_cast<uint32_t>(m);
  return i < kNumSpecMethods ? kNames[i] : "unknown";
}

bool ParseSpecMethod(const std::string& name, SpecMethod* out) {
  for (uint32_t i = 0; i < kNumSpecMethods; ++i) {
    if (name == kNames[i]) {
      *out = static_cast<SpecMethod>(i);
      return true;
    }
  }
  return false;
}

void SpecStats::Add(const SpecStats& o) {
  steps += o.steps;
  plain_steps += o.plain_steps;
  drafted += o.drafted;
  accepted += o.accepted;
  propose_ms += o.propose_ms;
  verify_ms += o.verify_ms;
  for (uint32_t i = 0; i < kNumSpecMethods; ++i) {
    steps_by_method[i] += o.steps_by_method[i];
    accepted_by_method[i] += o.accepted_by_method[i];
    drafted_by_method[i] += o.drafted_by_method[i];
  }
  current = o.current;
  current_draft = o.current_draft;
  probes += o.probes;
  probe_interval = o.probe_interval;
  plain_step_ms = o.plain_step_ms;
  verify_tokens = o.verify_tokens;
  verify_cost_ratio = o.verify_cost_ratio;
  expected_speedup = o.expected_speedup;
  acceptance = o.acceptance;
}

}  // namespace runtime
}  // namespace kestrel
