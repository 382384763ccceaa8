// aarch64 Advanced SIMD KQ kernels (any Armv8-A: smull/sadalp integer dots).
#define KESTREL_CPU_DOTPROD 0
#include "kernels_kquants_neon_impl.h"

namespace kestrel::plugins::cpu {
const KQuantKernels& NeonKQuantKernels() {
  static const KQuantKernels table = MakeNeonKQuantTable(IsaLevel::kNeon);
  return table;
}
}  // namespace kestrel::plugins::cpu
