// The reference implementation of every op kind of the plugin ABI on host memory: the dispatch
// of a descriptor that CheckOp (op_contract.h) accepted to the reference kernels
// (reference_kernels.h). This is what the reference plugin ("ref") runs, the oracle the
// conformance kit compares every plugin against; a host-memory plugin may run ops it has no
// kernel of its own for through it. Thread-safe (no state).
#ifndef KESTREL_PLUGIN_SDK_REFERENCE_OPS_H_
#define KESTREL_PLUGIN_SDK_REFERENCE_OPS_H_

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugin_sdk {

// Runs `op`, which CheckOp accepted as supported. inputs[i] / outputs[i] are host pointers to the
// data of op.inputs[i] / op.outputs[i], each holding TensorBytes of its descriptor and aligned to
// DtypeAlignment. Data-dependent errors (an out-of-range token id, slot, block or row; bad
// query_start / kv_lens / parents) return OUT_OF_RANGE or INVALID_ARGUMENT and leave the outputs
// unwritten.
Status ExecuteOp(const kestrel_op_desc_t& op, const void* const* inputs, void* const* outputs);

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_REFERENCE_OPS_H_
