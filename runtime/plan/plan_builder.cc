#include "runtime/plan/plan_builder.h"

namespace kestrel {
namespace runtime {

PlanArg Arg(ValueRef ref, uint32_t dtype, std::initializer_list<int64_t> dims) {
  PlanArg a{};
  a.ref = ref;
  a.dtype = dtype;
  a.rank = static_cast<uint32_t>(dims.size());
  int i = 0;
  for (int64_t d : dims) a.dims[i++] = d;
  return a;
}

PlanArg WeightArg(int id, const kestrel_tensor_desc_t& desc) {
  PlanArg a{};
  a.ref = {ValueKind::kWeight, id};
  a.dtype = desc.dtype;
  a.rank = desc.rank;
  for (uint32_t i = 0; i < desc.rank; ++i) a.dims[i] = desc.dims[i];
  return a;
}

ValueRef PlanBuilder::Activation(const std::string& name, int64_t per_row, bool per_logit_row) {
  plan_->activations.push_back({name, per_row, per_logit_row});
  return {ValueKind::kActivation, static_cast<int32_t>(plan_->activations.size() - 1)};
}

void PlanBuilder::Op(uint32_t kind, std::string label, std::vector<PlanArg> in,
                     std::vector<PlanArg> out, std::vector<uint8_t> params) {
  plan_->ops.push_back({kind, std::move(label), std::move(in), std::move(out), std::move(params)});
}

}  // namespace runtime
}  // namespace kestrel
