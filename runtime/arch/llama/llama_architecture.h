// runtime/arch/llama/: the llama architecture (Llama 1-3, Mistral, TinyLlama, SmolLM, Mixtral
// MoE): NORM-style RoPE, optional Q/K/V biases, Llama 3 rope_freqs, tied or separate output.
#ifndef KESTREL_RUNTIME_ARCH_LLAMA_LLAMA_ARCHITECTURE_H_
#define KESTREL_RUNTIME_ARCH_LLAMA_LLAMA_ARCHITECTURE_H_

#include "runtime/arch/architecture.h"

namespace kestrel {
namespace runtime {

const Architecture& LlamaArchitecture();

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ARCH_LLAMA_LLAMA_ARCHITECTURE_H_
