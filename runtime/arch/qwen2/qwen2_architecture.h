// runtime/arch/qwen2/: the qwen2 architecture (Qwen 2 / 2.5, DeepSeek-R1 distills of Qwen): NEOX RoPE,
// biases on the Q, K and V projections (required), tied or separate output.
#ifndef KESTREL_RUNTIME_ARCH_QWEN2_QWEN2_ARCHITECTURE_H_
#define KESTREL_RUNTIME_ARCH_QWEN2_QWEN2_ARCHITECTURE_H_

#include "runtime/arch/architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& Qwen2Architecture();

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_QWEN2_QWEN2_ARCHITECTURE_H_
