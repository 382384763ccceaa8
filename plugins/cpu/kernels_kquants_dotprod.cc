// aarch64 KQ kernels with the dot product instructions (sdot; compiled with -march=armv8.2-a+dotprod).
#define KESTREL_CPU_DOTPROD 1
#include "kernels_kquants_neon_impl.h"

namespace kestrel::plugins::cpu {
const KQuantKernels& DotprodKQuantKernels() {
  static const KQuantKernels table = MakeNeonKQuantTable(IsaLevel::kDotprod);
  return table;
}
}  // namespace kestrel::plugins::cpu
