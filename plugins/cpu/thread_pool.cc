#include "thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KESTREL_CPU_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define KESTREL_CPU_PAUSE() __asm__ __volatile__("yield")
#else
#define KESTREL_CPU_PAUSE() ((void)0)
#endif

namespace kestrel::plugins::cpu {
namespace {
// How long a worker spins for the next job before it blocks (~50-100 us of pause instructions:
// longer than the gap between two ops of a decode step, shorter than anything a user notices).
constexpr int kSpinIterations = 4000;
constexpr uint64_t kClosed = uint64_t{1} << 31;
constexpr uint64_t kCountMask = kClosed - 1;
}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads), ranges_(new Range[n_threads_]) {
  workers_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  sleep_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

namespace {
constexpr uint64_t Pack(uint64_t lo, uint64_t hi) { return (lo << 32) | hi; }
}  // namespace

int64_t ThreadPool::Take(int owner, bool back) {
  std::atomic<uint64_t>& r = ranges_[owner].v;
  uint64_t cur = r.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t lo = cur >> 32, hi = cur & 0xFFFFFFFFu;
    if (lo >= hi) return -1;
    const uint64_t next = back ? Pack(lo, hi - 1) : Pack(lo + 1, hi);
    if (r.compare_exchange_weak(cur, next, std::memory_order_relaxed)) {
      return static_cast<int64_t>(back ? hi - 1 : lo);
    }
  }
}

void ThreadPool::DoTasks(int thread) {
  for (int64_t task; (task = Take(thread, /*back=*/false)) >= 0;) fn_(ctx_, task, thread);
  for (int i = 1; i < n_threads_; ++i) {
    const int victim = (thread + i) % n_threads_;
    for (int64_t task; (task = Take(victim, /*back=*/true)) >= 0;) fn_(ctx_, task, thread);
  }
}

void ThreadPool::RunImpl(int64_t n_tasks, TaskFn fn, void* ctx) {
  std::lock_guard<std::mutex> run_lock(run_mu_);
  fn_ = fn;
  ctx_ = ctx;
  for (int i = 0; i < n_threads_; ++i) {  // contiguous ranges, the caller's first
    const uint64_t lo = static_cast<uint64_t>(n_tasks * i / n_threads_);
    const uint64_t hi = static_cast<uint64_t>(n_tasks * (i + 1) / n_threads_);
    ranges_[i].v.store(Pack(lo, hi), std::memory_order_relaxed);
  }
  const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
  join_.store((gen & 0xFFFFFFFFu) << 32, std::memory_order_release);  // open, nobody inside
  generation_.store(gen);  // seq_cst: publishes the job
  if (sleeping_.load() > 0) {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    sleep_cv_.notify_all();
  }
  DoTasks(0);
  // Close the job to late workers, then wait for those inside it (they may still run a task).
  join_.fetch_or(kClosed, std::memory_order_acq_rel);
  int spins = 0;
  while ((join_.load(std::memory_order_acquire) & kCountMask) != 0) {
    if (++spins < kSpinIterations) {
      KESTREL_CPU_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::WorkerLoop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; gen == seen && i < kSpinIterations; ++i) {
      KESTREL_CPU_PAUSE();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(sleep_mu_);
      sleeping_.fetch_add(1);  // seq_cst, before re-reading generation_ (see RunImpl)
      sleep_cv_.wait(lock, [&] { return generation_.load() != seen || stop_.load(); });
      sleeping_.fetch_sub(1);
      gen = generation_.load();
    }
    if (stop_.load()) return;
    seen = gen;
    // Join job `gen` unless it is closed or already replaced by a newer one.
    uint64_t state = join_.load(std::memory_order_acquire);
    bool joined = false;
    while ((state >> 32) == (gen & 0xFFFFFFFFu) && !(state & kClosed)) {
      if (join_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    DoTasks(thread);
    join_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace kestrel::plugins::cpu
