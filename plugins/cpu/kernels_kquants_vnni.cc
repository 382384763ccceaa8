// AVX-512 VNNI KQ kernels (vpdpbusd dots; the AVX-512 flags plus -mavx512vnni).
#define KESTREL_CPU_KQ_VNNI 1
#include "kernels_kquants_avx512_impl.h"

namespace kestrel::plugins::cpu {
const KQuantKernels& VnniKQuantKernels() {
  static const KQuantKernels table = MakeAvx512KQuantTable(IsaLevel::kVnni);
  return table;
}
}  // namespace kestrel::plugins::cpu
