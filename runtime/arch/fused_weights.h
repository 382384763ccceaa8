// runtime/arch/fused_weights.h: fused matrices of a decoder layer, [Wq; Wk; Wv] and [Wgate; Wup],
// so a step runs one matmul (one hand-off to the device's threads) where it ran three or two.
// Rows of a GGUF matrix are contiguous in any type, so stacking the parts' rows is the fused
// matrix, and each output row of the fused product is computed exactly as the part's own.
#ifndef KESTREL_RUNTIME_ARCH_FUSED_WEIGHTS_H_
#define KESTREL_RUNTIME_ARCH_FUSED_WEIGHTS_H_

#include <cstdint>
#include <vector>

#include "runtime/arch/weight_table.h"

namespace kestrel {
namespace runtime {

// Adds to every layer LayerWeights::wqkv (with bqkv when the layer has Q/K/V biases) and
// w_gate_up where the parts share dtype and row width (and, for Q/K/V, all or none have a bias);
// marks the parts (WeightTensor::fused_into). Parts adjacent in the file (phi3's attn_qkv and
// gate/up, or any file storing them back to back) make a fused matrix that is a byte range of
// the file; the others get no host_data and are assembled while prepared (AssembleHostData), so
// the concatenation never stays in memory. Returns the number of fused matrices added.
int AddFusedWeights(WeightTable* table);

// The bytes of weight `id`: its host_data, or for a fused matrix without one its parts' bytes
// concatenated into `*scratch` (then scratch->data()).
const uint8_t* AssembleHostData(const WeightTable& table, int id, std::vector<uint8_t>* scratch);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_FUSED_WEIGHTS_H_
