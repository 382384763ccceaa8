// Optional oneDNN GEMM for the CPU plugin's F32 prefill path.
//
// It uses only dnnl_sgemm, whose signature is the same in oneDNN 2.x and 3.x, so no primitive
// descriptor (whose constructors changed in 3.0) is involved; if a later version needs the
// matmul primitive instead, only onednn_gemm.cc changes. oneDNN's own OpenMP threading is pinned
// to one thread for the duration of each call (the calling thread's OpenMP setting is restored
// afterwards, so an application's own OpenMP regions are unaffected): the plugin's ThreadPool
// splits the rows, so the two runtimes never oversubscribe the cores. Built only when KESTREL_WITH_ONEDNN is on and oneDNN was found; then
// OneDnnAvailable() is true. Thread-safe.
#ifndef KESTREL_PLUGINS_CPU_ONEDNN_GEMM_H_
#define KESTREL_PLUGINS_CPU_ONEDNN_GEMM_H_

#include <cstdint>

namespace kestrel::plugins::cpu {

bool OneDnnAvailable();

// C[m, n] = sum_k A[m, k] * B[n, k] (row-major, leading dimensions in elements), on the calling
// thread. False if oneDNN is not built in or the call failed (C is then unspecified).
bool OneDnnGemmABt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float* c, int64_t ldc);

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_ONEDNN_GEMM_H_
