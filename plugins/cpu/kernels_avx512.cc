// AVX-512 F/BW/VL/DQ kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c).
#define KESTREL_CPU_VNNI 0
#include "kernels_avx512_impl.h"

namespace kestrel::plugins::cpu {
const KernelTable& Avx512Kernels() {
  static const KernelTable table = MakeAvx512Table(IsaLevel::kAvx512);
  return table;
}
}  // namespace kestrel::plugins::cpu
