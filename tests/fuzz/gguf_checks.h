// The checks the fuzz targets make on a model they hold as a GgufFile (a GGUF the reader accepted,
// or the view of a .kpkg package's model): every metadata getter on every key, every tensor's
// first and last byte, the tokenizer the loader builds, and the architecture seam (runtime/arch)
// up to an execution plan. Shared by gguf_fuzzer, model_fuzzer and package_fuzzer; each check
// ends the process through KESTREL_FUZZ_CHECK when an invariant fails.
#ifndef KESTREL_TESTS_FUZZ_GGUF_CHECKS_H_
#define KESTREL_TESTS_FUZZ_GGUF_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "runtime/arch/registry.h"
#include "runtime/arch/weight_table.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/tokenizer/tokenizer_loader.h"
#include "tests/fuzz/fuzz_util.h"

namespace kestrel::fuzz {

// Every typed getter on every key (a getter may refuse, never crash).
inline void TouchMetadata(const runtime::GgufFile& f) {
  for (const auto& kv : f.metadata()) {
    const absl::string_view k = kv.key;
    (void)f.GetString(k);
    (void)f.GetU32(k);
    (void)f.GetU64(k);
    (void)f.GetI64(k);
    (void)f.GetF32(k);
    (void)f.GetBool(k);
    auto strings = f.GetStringArray(k);
    if (strings.ok()) {
      for (const std::string& s : *strings) (void)s.size();
    }
    (void)f.GetF32Array(k);
    (void)f.GetI32Array(k);
    KESTREL_FUZZ_CHECK(f.Find(k) != nullptr, "key '%s' listed but not found", kv.key.c_str());
  }
}

// Every tensor lies inside the file and is found by its name; its first and last byte are read
// (ASan reports a tensor that does not).
inline void TouchTensors(const runtime::GgufFile& f) {
  for (const auto& t : f.tensors()) {
    KESTREL_FUZZ_CHECK(f.data_offset() + t.offset_in_data + t.size_bytes <= f.file_size(),
                       "tensor '%s' ends past the file", t.name.c_str());
    KESTREL_FUZZ_CHECK(f.FindTensor(t.name) == &t, "tensor '%s' not found by name",
                       t.name.c_str());
    if (t.size_bytes == 0) continue;
    volatile uint8_t first = f.TensorData(t)[0];
    volatile uint8_t last = f.TensorData(t)[t.size_bytes - 1];
    (void)first;
    (void)last;
  }
}

// A tokenizer the loader accepts encodes to ids inside its vocab and decodes any ids.
inline void TouchTokenizer(const runtime::GgufFile& f) {
  auto tok = runtime::LoadTokenizer(f);
  if (!tok.ok()) {
    KESTREL_FUZZ_CHECK(!tok.status().message().empty(), "tokenizer refused without a message");
    return;
  }
  const int32_t n = (*tok)->vocab_size();
  for (bool special : {false, true}) {
    for (int32_t id : (*tok)->Encode("Hello world, <s> \xF0\x9F\x99\x82 \xFF!", special, special)) {
      KESTREL_FUZZ_CHECK(id >= 0 && id < n, "id %d outside the vocab of %d", id, n);
    }
  }
  const int32_t ids[] = {-1, 0, 1, n - 1, n, 1 << 30};
  (void)(*tok)->Decode(ids, true);
}

namespace internal {

inline void CheckPlanArg(const runtime::ExecutionPlan& plan, const runtime::WeightTable& table,
                         const runtime::PlanArg& a, const std::string& op) {
  using runtime::ValueKind;
  KESTREL_FUZZ_CHECK(a.rank >= 1 && a.rank <= KESTREL_MAX_DIMS, "op %s: rank %u", op.c_str(),
                     a.rank);
  // Every dim, symbolic ones resolved for a small step, is positive, and no argument's element
  // count overflows (an absurd config would otherwise reach the executor's allocations).
  runtime::StepShape step;
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

}  // namespace internal

// The architecture general.architecture names (FindArchitecture), its ReadConfig, DeclareWeights
// (presence, shape and type of every tensor) and BuildPlan. Every refusal has a message; a plan
// that builds refers only to weights of its table and activations of its own list, with dims that
// are positive once resolved for a small step and no argument over 2^48 elements.
inline void CheckArchitectureSeam(const runtime::GgufFile& file) {
  auto name = file.GetString("general.architecture");
  if (!name.ok()) return;
  auto arch = runtime::FindArchitecture(*name);
  if (!arch.ok()) {
    KESTREL_FUZZ_CHECK(!arch.status().message().empty(), "unknown architecture, no message");
    return;
  }
  auto config = (*arch)->ReadConfig(file);
  if (!config.ok()) {
    KESTREL_FUZZ_CHECK(!config.status().message().empty(), "ReadConfig refused without a message");
    return;
  }
  runtime::WeightTableBuilder builder(file, /*check_types=*/true);
  if (absl::Status s = (*arch)->DeclareWeights(*config, builder); !s.ok()) {
    KESTREL_FUZZ_CHECK(!s.message().empty(), "DeclareWeights refused without a message");
    return;
  }
  const runtime::WeightTable& table = builder.table();
  auto plan = (*arch)->BuildPlan(*config, table, runtime::PlanOptions{});
  if (!plan.ok()) {
    KESTREL_FUZZ_CHECK(!plan.status().message().empty(), "BuildPlan refused without a message");
    return;
  }
  KESTREL_FUZZ_CHECK(!plan->ops.empty(), "an empty plan");
  for (const runtime::PlanOp& op : plan->ops) {
    for (const runtime::PlanArg& a : op.inputs) internal::CheckPlanArg(*plan, table, a, op.label);
    for (const runtime::PlanArg& a : op.outputs) internal::CheckPlanArg(*plan, table, a, op.label);
  }
}

}  // namespace kestrel::fuzz

#endif  // KESTREL_TESTS_FUZZ_GGUF_CHECKS_H_
