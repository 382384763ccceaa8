// runtime/plan/plan_builder.h: the small vocabulary plans are written in: activations, op
// arguments with (possibly symbolic) dims, sized params structs. Architectures and the shared
// decoder builder (runtime/arch/common) use it; it knows no model.
#ifndef KESTREL_RUNTIME_PLAN_PLAN_BUILDER_H_
#define KESTREL_RUNTIME_PLAN_PLAN_BUILDER_H_

#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "runtime/plan/execution_plan.h"

namespace kestrel {
namespace runtime {

// The bytes of a params struct with its struct_size set.
template <typename P>
std::vector<uint8_t> OpParams(P p) {
  p.struct_size = sizeof(P);
  std::vector<uint8_t> bytes(sizeof(P));
  std::memcpy(bytes.data(), &p, sizeof(P));
  return bytes;
}

// An argument over `ref` of `dtype` and `dims` (outermost first; kDim* symbols allowed).
PlanArg Arg(ValueRef ref, uint32_t dtype, std::initializer_list<int64_t> dims);
// The argument of a weight, with the dims and dtype it was declared with.
PlanArg WeightArg(int id, const kestrel_tensor_desc_t& desc);

inline ValueRef StepValue(StepInputId id) { return ValueRef{ValueKind::kStepInput, id}; }

class PlanBuilder {
 public:
  explicit PlanBuilder(ExecutionPlan* plan) : plan_(plan) {}
  // A new activation of `per_row` F32 elements per token (per logits row with per_logit_row).
  ValueRef Activation(const std::string& name, int64_t per_row, bool per_logit_row = false);
  void Op(uint32_t kind, std::string label, std::vector<PlanArg> in, std::vector<PlanArg> out,
          std::vector<uint8_t> params = {});
  ExecutionPlan& plan() { return *plan_; }

 private:
  ExecutionPlan* plan_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PLAN_PLAN_BUILDER_H_
