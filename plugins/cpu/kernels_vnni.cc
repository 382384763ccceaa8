// AVX-512 VNNI kernels (the AVX-512 flags plus -mavx512vnni): Q4_0/Q8_0 x Q8 dots with vpdpbusd.
#define KESTREL_CPU_VNNI 1
#include "kernels_avx512_impl.h"

namespace kestrel::plugins::cpu {
const KernelTable& VnniKernels() {
  static const KernelTable table = MakeAvx512Table(IsaLevel::kVnni);
  return table;
}
}  // namespace kestrel::plugins::cpu
