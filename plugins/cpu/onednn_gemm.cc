#include "onednn_gemm.h"

#if defined(KESTREL_CPU_WITH_ONEDNN)
#include <omp.h>

#include "oneapi/dnnl/dnnl.h"
#endif

namespace kestrel::plugins::cpu {

#if defined(KESTREL_CPU_WITH_ONEDNN)

bool OneDnnAvailable() { return true; }

bool OneDnnGemmABt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float* c, int64_t ldc) {
#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP || DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
  // One OpenMP thread for calls from this thread (a per-thread setting): the caller's pool
  // already runs one call per core.
  if (omp_get_max_threads() != 1) omp_set_num_threads(1);
#endif
  return dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc) == dnnl_success;
}

#else

bool OneDnnAvailable() { return false; }

bool OneDnnGemmABt(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*,
                   int64_t) {
  return false;
}

#endif

}  // namespace kestrel::plugins::cpu
