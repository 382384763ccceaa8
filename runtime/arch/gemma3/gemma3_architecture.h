// runtime/arch/gemma3/: the gemma3 architecture (Gemma 3 text models, 270M to 27B): embeddings
// scaled by sqrt(n_embd), per-head Q/K RMSNorm, RMSNorm before and after both the attention and
// the FFN, GeGLU (tanh GELU) FFN, head dim from attention.key_length, NEOX RoPE, tied output, and
// interleaved local/global layers: local layers attend a sliding window with their own RoPE base.
#ifndef KESTREL_RUNTIME_ARCH_GEMMA3_GEMMA3_ARCHITECTURE_H_
#define KESTREL_RUNTIME_ARCH_GEMMA3_GEMMA3_ARCHITECTURE_H_

#include "runtime/arch/architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& Gemma3Architecture();

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_GEMMA3_GEMMA3_ARCHITECTURE_H_
