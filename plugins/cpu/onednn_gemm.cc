#include "onednn_gemm.h"

#if defined(KESTREL_CPU_WITH_ONEDNN)
#include <omp.h>

#include "oneapi/dnnl/dnnl.h"
#endif

namespace kestrel::plugins::cpu {

#if defined(KESTREL_CPU_WITH_ONEDNN)

bool OneDnnAvailable() { return true; }

namespace {

#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP || DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
// One OpenMP thread for oneDNN while it runs on this thread (the plugin's pool already runs one
// call per core), and the thread's own setting back afterwards: the calling thread is often the
// application's, whose OpenMP regions must keep the thread count it chose.
class OneOmpThreadScope {
 public:
  OneOmpThreadScope() : saved_(omp_get_max_threads()) {
    if (saved_ != 1) omp_set_num_threads(1);
  }
  ~OneOmpThreadScope() {
    if (saved_ != 1) omp_set_num_threads(saved_);
  }
  OneOmpThreadScope(const OneOmpThreadScope&) = delete;
  OneOmpThreadScope& operator=(const OneOmpThreadScope&) = delete;

 private:
  const int saved_;
};
#else
struct OneOmpThreadScope {};
#endif

}  // namespace

bool OneDnnGemmABt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float* c, int64_t ldc) {
  OneOmpThreadScope one_thread;
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
