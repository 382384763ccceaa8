// hal/src/op_desc.h: building an op's descriptor (plugin_api.h) from the runtime side: the
// struct_size fields and pointers every caller would otherwise set by hand. Shapes only; the
// caller owns the tensor args and params the descriptor points at (they must outlive it) and
// sets their buffers/weights.
#ifndef KESTREL_HAL_SRC_OP_DESC_H_
#define KESTREL_HAL_SRC_OP_DESC_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "hal/include/kestrel/plugin_api.h"

namespace kestrel::hal {

// A tensor arg of `dtype` with the given dims (rank = their count, at most KESTREL_MAX_DIMS), no
// buffer and no weight.
inline kestrel_tensor_arg_t TensorArg(uint32_t dtype, std::initializer_list<int64_t> dims) {
  kestrel_tensor_arg_t t{};
  t.desc.struct_size = sizeof(kestrel_tensor_desc_t);
  t.desc.dtype = dtype;
  for (int64_t d : dims) {
    if (t.desc.rank < KESTREL_MAX_DIMS) t.desc.dims[t.desc.rank++] = d;
  }
  return t;
}

// Op `kind` (version `op_version`) over n_inputs args at `inputs` and n_outputs at `outputs`,
// with an optional params struct.
inline kestrel_op_desc_t OpDesc(uint32_t kind, uint32_t op_version, const kestrel_tensor_arg_t* inputs,
                                uint32_t n_inputs, const kestrel_tensor_arg_t* outputs,
                                uint32_t n_outputs, const void* params = nullptr,
                                size_t params_size = 0) {
  kestrel_op_desc_t desc{};
  desc.struct_size = sizeof(desc);
  desc.kind = kind;
  desc.op_version = op_version;
  desc.n_inputs = n_inputs;
  desc.n_outputs = n_outputs;
  desc.inputs = inputs;
  desc.outputs = outputs;
  desc.params = params;
  desc.params_size = params_size;
  return desc;
}

}  // namespace kestrel::hal

#endif  // KESTREL_HAL_SRC_OP_DESC_H_
