// Fuzz target: a model file through the architecture seam (runtime/arch), without a device: the
// GGUF reader, then the registered architecture general.architecture names (FindArchitecture:
// llama today, every family added to the registry later without a change here), its ReadConfig,
// DeclareWeights (which checks every tensor's presence, shape and type against the config) and
// BuildPlan. Invariants: every refusal has a message; a plan that builds refers only to weights
// of its table and activations of its own list, with dims that are positive once resolved for a
// small step, and no argument larger than 2^48 elements.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "runtime/arch/registry.h"
#include "runtime/arch/weight_table.h"
#include "runtime/gguf/gguf_file.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace kestrel::runtime;  // NOLINT: a fuzz target of this namespace's seam

void CheckArg(const ExecutionPlan& plan, const WeightTable& table, const PlanArg& a,
              const std::string& op) {
  KESTREL_FUZZ_CHECK(a.rank >= 1 && a.rank <= KESTREL_MAX_DIMS, "op %s: rank %u", op.c_str(),
                     a.rank);
  // Every dim, symbolic ones resolved for a small step, is positive, and no argument's element
  // count overflows (an absurd config would otherwise reach the executor's allocations).
  StepShape step;
  step.n_tokens = 3;
  step.n_seqs = 2;
  step.max_blocks = 4;
  step.n_rows = 1;
  unsigned __int128 elems = 1;
  for (uint32_t i = 0; i < a.rank; ++i) {
    const int64_t d = step.Resolve(a.dims[i]);
    KESTREL_FUZZ_CHECK(d > 0, "op %s: dim %u is %lld (resolved from %lld)", op.c_str(), i,
                       static_cast<long long>(d), static_cast<long long>(a.dims[i]));
    elems *= static_cast<unsigned __int128>(d);
  }
  KESTREL_FUZZ_CHECK(elems <= (static_cast<unsigned __int128>(1) << 48),
                     "op %s: an argument of more than 2^48 elements", op.c_str());
  if (a.ref.kind == ValueKind::kWeight) {
    KESTREL_FUZZ_CHECK(a.ref.index >= 0 && static_cast<size_t>(a.ref.index) < table.tensors.size(),
                       "op %s: weight %d of %zu", op.c_str(), a.ref.index, table.tensors.size());
  } else if (a.ref.kind == ValueKind::kActivation) {
    KESTREL_FUZZ_CHECK(
        a.ref.index >= 0 && static_cast<size_t>(a.ref.index) < plan.activations.size(),
        "op %s: activation %d of %zu", op.c_str(), a.ref.index, plan.activations.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file =
      GgufFile::OpenFromMemory(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!file.ok()) return 0;
  auto name = (*file)->GetString("general.architecture");
  if (!name.ok()) return 0;
  auto arch = FindArchitecture(*name);
  if (!arch.ok()) {
    KESTREL_FUZZ_CHECK(!arch.status().message().empty(), "unknown architecture, no message");
    return 0;
  }
  auto config = (*arch)->ReadConfig(**file);
  if (!config.ok()) {
    KESTREL_FUZZ_CHECK(!config.status().message().empty(), "ReadConfig refused without a message");
    return 0;
  }
  WeightTableBuilder builder(**file, /*check_types=*/true);
  if (absl::Status s = (*arch)->DeclareWeights(*config, builder); !s.ok()) {
    KESTREL_FUZZ_CHECK(!s.message().empty(), "DeclareWeights refused without a message");
    return 0;
  }
  const WeightTable& table = builder.table();
  auto plan = (*arch)->BuildPlan(*config, table, PlanOptions{});
  if (!plan.ok()) {
    KESTREL_FUZZ_CHECK(!plan.status().message().empty(), "BuildPlan refused without a message");
    return 0;
  }
  KESTREL_FUZZ_CHECK(!plan->ops.empty(), "an empty plan");
  for (const PlanOp& op : plan->ops) {
    for (const PlanArg& a : op.inputs) CheckArg(*plan, table, a, op.label);
    for (const PlanArg& a : op.outputs) CheckArg(*plan, table, a, op.label);
  }
  return 0;
}
