// The Executor's host-side kPlanOpSplitColumns op: a fused matmul's output [T, N1 + N2 + ...]
// split by columns into the values the following ops read, with buffer copies on the device
// that holds it (so it never moves between devices). A decode step (T = 1) copies one
// contiguous range per output; a step of T tokens copies T rows per output.
#include "absl/strings/str_cat.h"
#include "runtime/plan/executor.h"

namespace kestrel {
namespace runtime {

absl::Status Executor::RunSplit(size_t op_index, const StepShape& shape) {
  const PlanOp& op = plan_.ops[op_index];
  const uint64_t T = static_cast<uint64_t>(shape.n_tokens);
  if (op.inputs.size() != 1 || op.outputs.empty() || T == 0) {
    return absl::InternalError(absl::StrCat("executor: split '", op.label, "' has ",
                                            op.inputs.size(), " inputs and ", op.outputs.size(),
                                            " outputs in a step of ", T, " tokens"));
  }
  const PlanArg& in = op.inputs[0];
  Value& src = ValueFor(in.ref);
  if (src.valid.empty()) return absl::InternalError("executor: the split's input was not produced");
  hal::Device* d = src.valid.front();
  const uint64_t in_bytes = BytesOf(in, shape), row = in_bytes / T;
  absl::StatusOr<Copy*> from = Resident(src, d, in_bytes);
  if (!from.ok()) return from.status();
  uint64_t column = 0;  // bytes into a row of the input
  for (const PlanArg& a : op.outputs) {
    const uint64_t bytes = BytesOf(a, shape), width = bytes / T;
    if (column + width > row) {
      return absl::InternalError(absl::StrCat("executor: split '", op.label,
                                              "': the outputs are wider than the input"));
    }
    Value& v = ValueFor(a.ref);
    absl::StatusOr<Copy*> to = Allocated(v, d, bytes);
    if (!to.ok()) return to.status();
    for (uint64_t t = 0; t < T; ++t) {
      absl::Status s = d->Copy((*from)->buffer, t * row + column, (*to)->buffer, t * width, width);
      if (!s.ok()) return s;
    }
    v.valid = {d};
    v.bytes = bytes;
    column += width;
  }
  if (column != row) {
    return absl::InternalError(absl::StrCat("executor: split '", op.label, "': the outputs cover ",
                                            column, " of the input's ", row, " bytes per row"));
  }
  // The split has no op descriptor to place, so its counter entry is kept in the placement
  // table's decode slot instead of a std::map lookup by device name per split and step.
  if (placement_.size() < plan_.ops.size() * kPlacementModes) {
    placement_.resize(plan_.ops.size() * kPlacementModes);
  }
  Placement& p = placement_[op_index * kPlacementModes];
  if (p.device != d) p = {d, 0, &ops_per_device_[d->name()]};
  ++*p.op_count;
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
