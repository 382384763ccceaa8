// runtime/speculative/: speculative decoding for the sequence core. Proposers guess a tree of
// next tokens for a sequence (draft model, self-draft, n-gram / prompt lookup, lookahead, Medusa
// heads, an EAGLE-style head), one Verifier checks a whole tree in a single forward step
// with the attention tree mask and keeps exactly the target's output (greedy: the argmax path;
// sampling: rejection sampling), and the Controller picks method and draft size per step from
// what it measures on this device, switching speculation off when it does not pay.
//
// This folder owns the proposal trees, the acceptance rules, the KV rollback/compaction plan of a
// verified step and the speculation statistics. It may not schedule sequences, own the target's KV
// pool or call plugins: the Session and the Engine run the steps (through the executor) and apply
// the KV plan.
#ifndef KESTREL_RUNTIME_SPECULATIVE_SPEC_CONFIG_H_
#define KESTREL_RUNTIME_SPECULATIVE_SPEC_CONFIG_H_

#include <array>
#include <cstdint>
#include <string>

namespace kestrel {
namespace runtime {

class Model;

// Values match kestrel_spec_method_t.
enum class SpecMethod : uint32_t {
  kOff = 0, kAuto = 1, kDraft = 2, kSelf = 3, kNgram = 4, kLookahead = 5, kMedusa = 6, kEagle = 7
};
constexpr uint32_t kNumSpecMethods = 8;
const char* SpecMethodName(SpecMethod m);
// "off", "auto", ...; false for an unknown name.
bool ParseSpecMethod(const std::string& name, SpecMethod* out);

struct SpecConfig {
  SpecMethod method = SpecMethod::kOff;
  uint32_t max_draft = 0;    // most draft tokens on one path; 0: the method's default
  uint32_t tree_budget = 0;  // most draft nodes in one tree; 0: the method's default
  const Model* draft_model = nullptr;  // kDraft (same vocab as the target)
  std::string heads_path;                   // kMedusa / kEagle sidecar GGUF
  uint32_t self_layers = 0;                 // kSelf: target layers the draft runs; 0: half
};

// What speculation did, summed over a generation (session) or a request (engine).
struct SpecStats {
  uint64_t steps = 0;            // verify steps with at least one draft token
  uint64_t plain_steps = 0;      // decode steps without a draft
  uint64_t drafted = 0;          // draft tokens verified
  uint64_t accepted = 0;         // draft tokens accepted
  double propose_ms = 0, verify_ms = 0;
  std::array<uint64_t, kNumSpecMethods> steps_by_method{};
  std::array<uint64_t, kNumSpecMethods> accepted_by_method{};
  std::array<uint64_t, kNumSpecMethods> drafted_by_method{};
  SpecMethod current = SpecMethod::kOff;  // the controller's latest choice
  uint32_t current_draft = 0;             // its draft size
  // The controller's measurements behind its choice (Controller::Report), as of the latest step.
  uint64_t probes = 0;                    // speculative steps run to warm up or re-probe
  uint32_t probe_interval = 0;            // steps between re-probes while off (its back-off)
  double plain_step_ms = 0;               // measured plain decode step
  uint32_t verify_tokens = 0;             // size of the last speculative step (1 + draft)
  double verify_cost_ratio = 0;           // its measured cost / a plain step's (0: none yet)
  double expected_speedup = 1;            // predicted tokens/s of the choice / plain
  std::array<double, kNumSpecMethods> acceptance{};  // per-token acceptance estimate by method
  double mean_accepted() const { return steps ? static_cast<double>(accepted) / steps : 0.0; }
  void Add(const SpecStats& o);
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_SPEC_CONFIG_H_
