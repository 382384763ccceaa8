#include "membw.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kestrel::cli {
namespace {

// Runtime-dispatched clones where the toolchain supports them (GCC >= 6 and Clang >= 14 on
// x86-64 Linux with ifunc); elsewhere the vector code is compiled for the baseline ISA.
#if defined(__x86_64__) && defined(__linux__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6) || (defined(__clang__) && __clang_major__ >= 14))
#define KESTREL_MEMBW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define KESTREL_MEMBW_HAVE_CLONES 1
#else
#define KESTREL_MEMBW_CLONES
#define KESTREL_MEMBW_HAVE_CLONES 0
#endif

using Clock = std::chrono::steady_clock;
typedef uint64_t V8 __attribute__((vector_size(64)));
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kSliceAlign = 4096 / sizeof(uint64_t);  // slices start on page boundaries

struct FreeDeleter {
  void operator()(uint64_t* p) const { std::free(p); }
};

// Runs fn(thread_index) on `threads` threads (the caller's thread is index 0) released together;
// returns the seconds from the release to the last join.
template <typename Fn>
double RunParallel(unsigned threads, Fn fn) {
  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (unsigned t = 1; t < threads; ++t) {
    workers.emplace_back([&, t] {
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      fn(t);
    });
  }
  while (ready.load(std::memory_order_acquire) != threads - 1) std::this_thread::yield();
  const Clock::time_point start = Clock::now();
  go.store(true, std::memory_order_release);
  fn(0);
  for (std::thread& w : workers) w.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

uint64_t SumScalar(const uint64_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i < n; i += 4) {
    a0 += p[i];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
  }
  return a0 + a1 + a2 + a3;
}

KESTREL_MEMBW_CLONES uint64_t SumVec64(const uint64_t* p, size_t n) {
  typedef uint64_t V8 __attribute__((vector_size(64)));
  const V8* v = reinterpret_cast<const V8*>(__builtin_assume_aligned(p, 64));
  V8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (size_t i = 0; i < n / 8; i += 4) {
    a0 += v[i];
    a1 += v[i + 1];
    a2 += v[i + 2];
    a3 += v[i + 3];
  }
  const V8 s = (a0 + a1) + (a2 + a3);
  uint64_t sum = 0;
  for (int lane = 0; lane < 8; ++lane) sum += s[lane];
  return sum;
}

KESTREL_MEMBW_CLONES uint64_t SumVec64Streams(const uint64_t* p, size_t n) {
  // Four sub-slices read in turn: four DRAM pages open at once from one core.
  const size_t part = n / 4 / 32 * 32;  // elements, a multiple of 4 vectors
  const V8* v0 = reinterpret_cast<const V8*>(__builtin_assume_aligned(p, 64));
  const V8* v1 = v0 + part / 8;
  const V8* v2 = v1 + part / 8;
  const V8* v3 = v2 + part / 8;
  V8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (size_t i = 0; i < part / 8; i += 2) {
    a0 += v0[i] + v0[i + 1];
    a1 += v1[i] + v1[i + 1];
    a2 += v2[i] + v2[i + 1];
    a3 += v3[i] + v3[i + 1];
  }
  const V8 s = (a0 + a1) + (a2 + a3);
  uint64_t sum = 0;
  for (int lane = 0; lane < 8; ++lane) sum += s[lane];
  for (size_t i = 4 * part; i < n; ++i) sum += p[i];
  return sum;
}

KESTREL_MEMBW_CLONES uint64_t SumVec64Prefetch(const uint64_t* p, size_t n) {
  constexpr size_t kAhead = 512 / sizeof(V8);  // vectors: 8 cache lines ahead
  const V8* v = reinterpret_cast<const V8*>(__builtin_assume_aligned(p, 64));
  V8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (size_t i = 0; i < n / 8; i += 4) {
    __builtin_prefetch(v + i + kAhead, 0, 3);
    __builtin_prefetch(v + i + kAhead + 1, 0, 3);
    __builtin_prefetch(v + i + kAhead + 2, 0, 3);
    __builtin_prefetch(v + i + kAhead + 3, 0, 3);
    a0 += v[i];
    a1 += v[i + 1];
    a2 += v[i + 2];
    a3 += v[i + 3];
  }
  const V8 s = (a0 + a1) + (a2 + a3);
  uint64_t sum = 0;
  for (int lane = 0; lane < 8; ++lane) sum += s[lane];
  return sum;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
namespace {
__attribute__((target("avx512f"))) uint64_t SumNt512(const uint64_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_stream_load_si512(const_cast<uint64_t*>(p + i)));
    a1 = _mm512_add_epi64(a1, _mm512_stream_load_si512(const_cast<uint64_t*>(p + i + 8)));
    a2 = _mm512_add_epi64(a2, _mm512_stream_load_si512(const_cast<uint64_t*>(p + i + 16)));
    a3 = _mm512_add_epi64(a3, _mm512_stream_load_si512(const_cast<uint64_t*>(p + i + 24)));
  }
  // (Stored and summed by hand: GCC 12 warns inside _mm512_reduce_add_epi64.)
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t sum = 0;
  for (uint64_t lane : lanes) sum += lane;
  return sum;
}
__attribute__((target("avx2"))) uint64_t SumNt256(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_stream_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_stream_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_stream_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_stream_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
}  // namespace
#endif

uint64_t SumNonTemporal(const uint64_t* p, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return SumNt512(p, n);
  if (__builtin_cpu_supports("avx2")) return SumNt256(p, n);
#endif
  return SumVec64(p, n);
}

const char* Vec64Isa() {
#if KESTREL_MEMBW_HAVE_CLONES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "baseline";
}

MembwResult MeasureReadBandwidth(const MembwOptions& options) {
  MembwResult result;
  const unsigned threads = std::max(1u, options.threads);
  const unsigned reps = std::max(1u, options.reps);
  const size_t unit = kSliceAlign * threads;  // elements
  const size_t n = std::max<size_t>(unit, options.bytes / sizeof(uint64_t) / unit * unit);
  const size_t slice = n / threads;
  // 2 MiB aligned with transparent huge pages where the OS grants them (as the cpu plugin's
  // weight buffers, plugins/cpu/packed_weight.h): 4 KiB pages cost 10-15 % of the read rate.
  const size_t alloc_bytes = (n * sizeof(uint64_t) + kHugePage - 1) / kHugePage * kHugePage;
  std::unique_ptr<uint64_t, FreeDeleter> buffer(
      static_cast<uint64_t*>(std::aligned_alloc(kHugePage, alloc_bytes)));
  if (!buffer) throw std::bad_alloc();
  uint64_t* data = buffer.get();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  result.huge_pages = options.huge_pages && madvise(data, alloc_bytes, MADV_HUGEPAGE) == 0;
#endif
  // First touch by the thread that reads the slice later (NUMA placement), p[i] = i.
  RunParallel(threads, [&](unsigned t) {
    for (size_t i = t * slice; i < (t + 1) * slice; ++i) data[i] = i;
  });
  const uint64_t expected = static_cast<uint64_t>(
      (static_cast<unsigned __int128>(n) * (n - 1) / 2));  // wraps like the kernels' sums

  result.bytes = n * sizeof(uint64_t);
  result.threads = threads;
  result.checksum_ok = true;
  struct Kernel {
    const char* name;
    uint64_t (*fn)(const uint64_t*, size_t);
  };
  for (const Kernel& k : {Kernel{"scalar", SumScalar}, Kernel{"vec64", SumVec64},
                          Kernel{"vec64x4", SumVec64Streams}, Kernel{"prefetch", SumVec64Prefetch},
                          Kernel{"nt", SumNonTemporal}}) {
    MembwKernelResult kr;
    kr.name = k.name;
    std::vector<uint64_t> partial(threads);
    for (unsigned rep = 0; rep <= reps; ++rep) {  // rep 0: warm-up
      const double seconds = RunParallel(threads, [&](unsigned t) {
        partial[t] = k.fn(data + t * slice, slice);
      });
      uint64_t total = 0;
      for (uint64_t s : partial) total += s;
      result.checksum_ok = result.checksum_ok && total == expected;
      if (rep > 0) kr.gb_per_s.push_back(static_cast<double>(result.bytes) / seconds / 1e9);
    }
    kr.summary = Summarize(kr.gb_per_s);
    if (kr.summary.median > result.best_gb_per_s) {
      result.best_gb_per_s = kr.summary.median;
      result.best_kernel = kr.name;
    }
    result.kernels.push_back(std::move(kr));
  }
  return result;
}

}  // namespace kestrel::cli
