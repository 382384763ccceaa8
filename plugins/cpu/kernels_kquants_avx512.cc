// AVX-512 F/BW/VL/DQ KQ kernels (vpmaddubsw + vpmaddwd dots; the AVX-512 flags, kernels_avx512.cc's).
#define KESTREL_CPU_KQ_VNNI 0
#include "kernels_kquants_avx512_impl.h"

namespace kestrel::plugins::cpu {
const KQuantKernels& Avx512KQuantKernels() {
  static const KQuantKernels table = MakeAvx512KQuantTable(IsaLevel::kAvx512);
  return table;
}
}  // namespace kestrel::plugins::cpu
