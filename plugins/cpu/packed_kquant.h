// Prepared KQ weights of the CPU plugin (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K): a GGUF matrix repacked
// once, at weight_prepare, into the layout of kernels_kquants.h (quant planes in the kernels'
// element order + compact scale records).
//
// Thread-safety: immutable after construction.
#ifndef KESTREL_PLUGINS_CPU_PACKED_KQUANT_H_
#define KESTREL_PLUGINS_CPU_PACKED_KQUANT_H_

#include <memory>

#include "kestrel/plugin_api.h"
#include "kernels_kquants.h"
#include "packed_weight.h"
#include "thread_pool.h"

namespace kestrel::plugins::cpu {

// True when a weight of this desc is repacked: rank 2, a KQ dtype, at least one row and column.
bool ShouldRepackK(const kestrel_tensor_desc_t& desc);

struct PackedK {
  AlignedBuffer qs;
  AlignedBuffer sc;
  KWeightView view;  // points into qs / sc
};

// Repacks a packed GGUF matrix [n, k] of a KQ dtype (ShouldRepackK(desc)), on `pool`'s threads
// when given. Throws std::bad_alloc.
std::unique_ptr<PackedK> RepackK(const kestrel_tensor_desc_t& desc, const void* gguf,
                                 ThreadPool* pool = nullptr);

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_PACKED_KQUANT_H_
