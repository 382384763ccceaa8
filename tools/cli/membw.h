// Memory read bandwidth for `kestrel bench --membw`: the roofline that decode speed is quoted
// against (a decode step streams every weight once, so tok/s <= bandwidth / weight bytes).
//
// The buffer (default max(4 x the last-level cache, 1 GiB), so caches cannot hold it) is filled
// once, each thread first-touching the slice it later reads. A measured pass starts T threads on a
// start flag, each sums its own contiguous slice, and the pass time runs from the flag to the last
// join. Sums are reduced into a result that is returned and checked, so the compiler cannot drop
// the loads. The buffer is 2 MiB aligned and advised for transparent huge pages (as the weights
// the cpu plugin streams), since 4 KiB pages cost 10-15 % of the read rate on some CPUs. Which
// access pattern reaches the limit depends on the CPU, so several kernels run and the best median
// is the figure (decode kernels must never beat it; tools/cli/membw_roofline_test.sh):
//   scalar    8-byte integer adds with 4 accumulators, in plain C++ (the compiler may vectorise
//             it for the baseline ISA it targets);
//   vec64     64-byte loads through GCC/Clang vector extensions (vector_size(64)), 4 accumulators;
//             on x86-64 compiled for AVX-512 / AVX2 / baseline and chosen at run time
//             (target_clones), so the loads are real 64-byte loads where the CPU has AVX-512;
//   vec64x4   vec64 over four sub-slices of the thread's slice read in turn (four streams per
//             thread: more DRAM pages open at once);
//   prefetch  vec64 with software prefetches 512 bytes ahead;
//   nt        non-temporal (MOVNTDQA) 64- or 32-byte loads on x86-64 (vec64 elsewhere).
// Each kernel gets one unmeasured warm-up pass, then `reps` measured passes. GB/s = 1e9 bytes/s.
#ifndef KESTREL_TOOLS_CLI_MEMBW_H_
#define KESTREL_TOOLS_CLI_MEMBW_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"

namespace kestrel::cli {

struct MembwOptions {
  uint64_t bytes = 0;    // buffer size; rounded down to a multiple of 4 KiB x threads
  unsigned threads = 1;  // >= 1
  unsigned reps = 5;     // measured passes per kernel, >= 1
  bool huge_pages = true;  // advise the buffer for transparent huge pages
};

struct MembwKernelResult {
  std::string name;                // "scalar", "vec64", "vec64x4", "prefetch", "nt"
  std::vector<double> gb_per_s;    // one per measured pass
  Summary summary;
};

struct MembwResult {
  uint64_t bytes = 0;   // bytes read per pass
  unsigned threads = 0;
  std::vector<MembwKernelResult> kernels;
  double best_gb_per_s = 0;  // the highest kernel median: the figure to quote as the roofline
  std::string best_kernel;   // the kernel that gave it
  bool huge_pages = false;   // the OS accepted the huge-page advice for the buffer
  bool checksum_ok = false;  // every pass summed to the expected value
};

// Runs the measurement. The buffer is freed before returning. Throws std::bad_alloc if it cannot
// be allocated.
MembwResult MeasureReadBandwidth(const MembwOptions& options);

// The kernels, exposed for tests: the wrapping uint64 sum of p[0..n). p must be 64-byte aligned
// and n a multiple of 32.
uint64_t SumScalar(const uint64_t* p, size_t n);
uint64_t SumVec64(const uint64_t* p, size_t n);
uint64_t SumVec64Streams(const uint64_t* p, size_t n);
uint64_t SumVec64Prefetch(const uint64_t* p, size_t n);
uint64_t SumNonTemporal(const uint64_t* p, size_t n);

// The instruction set the vec64 kernel runs with on this CPU: "avx512f", "avx2" or "baseline".
const char* Vec64Isa();

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_MEMBW_H_
