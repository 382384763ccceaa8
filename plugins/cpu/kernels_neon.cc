// aarch64 Advanced SIMD kernels (any Armv8-A: smull/sadalp integer dots).
#define KESTREL_CPU_DOTPROD 0
#include "kernels_neon_impl.h"

namespace kestrel::plugins::cpu {
const KernelTable& NeonKernels() {
  static const KernelTable table = MakeNeonTable(IsaLevel::kNeon);
  return table;
}
}  // namespace kestrel::plugins::cpu
