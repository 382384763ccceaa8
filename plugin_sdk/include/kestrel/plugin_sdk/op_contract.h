// The op contract of plugin_api.h, as code: which op descriptors are valid (INVALID_ARGUMENT
// otherwise, with a message naming the op, the tensor and the bad field/value), which valid ones
// the reference implementation runs (contiguous layouts, F32 activations, F32/F16 KV caches;
// anything else is reported unsupported with a reason), tensor byte sizes and alignments, and op
// kind names. A plugin judges every descriptor with CheckOp first, so every plugin accepts and
// rejects exactly the same descriptors, and adds its own limits on top. It knows nothing about
// buffers, devices or the plugin table. Thread-safe.
#ifndef KESTREL_PLUGIN_SDK_OP_CONTRACT_H_
#define KESTREL_PLUGIN_SDK_OP_CONTRACT_H_

#include <cstdint>
#include <string>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugin_sdk {

// "MATMUL", "PAGED_ATTENTION", ...; "kind(<n>)" for unknown kinds.
std::string OpKindName(uint32_t kind);

// The highest op_version of `kind` CheckOp accepts (2 for EMBEDDING_GATHER and PAGED_ATTENTION,
// whose version-2 forms add the embedding scale and the attention window; 1 otherwise).
uint32_t MaxOpVersion(uint32_t kind);

// The params of a PAGED_ATTENTION descriptor CheckOp accepted, whatever struct_size the host
// sent (fields it lacks read 0; window is 0 unless op_version is 2). Plugins read them through
// this, never by copying sizeof(kestrel_op_attention_params_t) bytes.
kestrel_op_attention_params_t AttentionParamsOf(const kestrel_op_desc_t& op);

// params.scale of an EMBEDDING_GATHER descriptor CheckOp accepted (1 for op_version 1).
float EmbeddingScaleOf(const kestrel_op_desc_t& op);

// True for the kinds the contract knows (every kind of plugin_api.h 1.0, MOE, and GEGLU of 1.3);
// the reference ops (reference_ops.h ExecuteOp) implement them all.
bool IsImplementedKind(uint32_t kind);

// Checks one tensor descriptor on its own: struct_size, dtype, rank, non-negative dims, block
// multiple for quantized dtypes, total size below 2^62 bytes. `what` names it in messages.
Status ValidateTensorDesc(const kestrel_tensor_desc_t& desc, const std::string& what);
// Same, naming the tensor "<prefix>: <label>" (built only on error).
Status ValidateTensorDescIn(const kestrel_tensor_desc_t& desc, const std::string& prefix,
                            const std::string& label);

// True if every stride is 0 or equals the packed row-major stride (any stride on a dim of size 1).
// Precondition: ValidateTensorDesc passed.
bool IsPackedLayout(const kestrel_tensor_desc_t& desc);

// Bytes of the packed tensor. Precondition: ValidateTensorDesc passed.
uint64_t TensorBytes(const kestrel_tensor_desc_t& desc);

// Alignment the data of `dtype` needs in host memory (4 for F32/I32, 2 for F16/BF16/Q8_0/Q4_0).
uint64_t DtypeAlignment(uint32_t dtype);

// Result of CheckOp on a valid descriptor.
struct OpCheck {
  bool supported = false;
  std::string reason;  // why not, when !supported (for a debug log)
};

// Validates `op` as op_query sees it (buffers and weights are not looked at). Returns
// INVALID_ARGUMENT for a malformed descriptor (struct sizes, n_inputs/n_outputs, ranks, dims that
// disagree with each other or with the params, dtypes outside the op's contract, bad params). A
// valid descriptor returns OK with `out->supported` telling whether the reference ops (ExecuteOp) run it; unknown
// and vendor kinds, other op versions and non-packed strides are valid but unsupported.
Status CheckOp(const kestrel_op_desc_t& op, OpCheck* out);

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_OP_CONTRACT_H_
