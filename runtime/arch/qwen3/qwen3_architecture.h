// runtime/arch/qwen3/: the qwen3 architecture (dense Qwen 3): NEOX RoPE, a per-head RMSNorm of
// Q and K before RoPE (required), head dim from attention.key_length (128 with n_embd 1024 and
// 16 heads in Qwen3-0.6B), no biases.
#ifndef KESTREL_RUNTIME_ARCH_QWEN3_QWEN3_ARCHITECTURE_H_
#define KESTREL_RUNTIME_ARCH_QWEN3_QWEN3_ARCHITECTURE_H_

#include "runtime/arch/architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& Qwen3Architecture();

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_QWEN3_QWEN3_ARCHITECTURE_H_
