// aarch64 kernels with the dot product instructions (sdot; compiled with -march=armv8.2-a+dotprod).
#define KESTREL_CPU_DOTPROD 1
#include "kernels_neon_impl.h"

namespace kestrel::plugins::cpu {
const KernelTable& DotprodKernels() {
  static const KernelTable table = MakeNeonTable(IsaLevel::kDotprod);
  return table;
}
}  // namespace kestrel::plugins::cpu
