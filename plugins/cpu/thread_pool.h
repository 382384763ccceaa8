// ThreadPool: the CPU plugin's persistent workers, created once and reused by every op.
//
// Run(n_tasks, fn) calls fn(task, thread) for every task in [0, n_tasks) on the calling thread plus
// size() - 1 workers and returns when all are done. Tasks are split into one contiguous range per
// thread; each thread takes tasks from the front of its own range (a cache line no other thread
// touches while it has work) and, when that is empty, steals from the back of the others' ranges.
// (A single shared task counter moves its cache line between the cores for every task taken;
// the ranges touch a shared line only to steal at the end.) A worker takes part in a job only if
// it joins before the caller has run out of tasks, and the caller waits only for workers that
// joined: on a busy machine a descheduled worker never holds up an op (the others steal its
// range). Workers spin for a short while after each job (a decode step issues
// hundreds of small ops back to back) and then block on a condition variable, so an idle plugin
// costs no CPU. `thread` is in [0, size()) and unique among the concurrently running calls of one
// job, so callers can index per-thread scratch with it.
//
// Thread-safety: Run may be called from any thread; concurrent calls are serialised (a second
// caller waits for the first job). fn must not call Run (no nesting) and must not throw.
#ifndef KESTREL_PLUGINS_CPU_THREAD_POOL_H_
#define KESTREL_PLUGINS_CPU_THREAD_POOL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace kestrel::plugins::cpu {

class ThreadPool {
 public:
  // n_threads >= 1 counts the calling thread: n_threads - 1 workers are started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  template <typename F>
  void Run(int64_t n_tasks, F&& fn) {
    if (n_tasks <= 0) return;
    if (n_tasks == 1 || n_threads_ == 1) {
      for (int64_t i = 0; i < n_tasks; ++i) fn(i, 0);
      return;
    }
    // The per-thread ranges hold 32-bit indices: a larger job runs as consecutive ones.
    constexpr int64_t kMaxJob = int64_t{1} << 31;
    for (int64_t base = 0; base < n_tasks; base += kMaxJob) {
      auto shifted = [&fn, base](int64_t task, int thread) { fn(base + task, thread); };
      RunImpl(std::min(kMaxJob, n_tasks - base), &Trampoline<decltype(shifted)>, &shifted);
    }
  }

 private:
  using TaskFn = void (*)(void* ctx, int64_t task, int thread);
  template <typename F>
  static void Trampoline(void* ctx, int64_t task, int thread) {
    (*static_cast<F*>(ctx))(task, thread);
  }
  void RunImpl(int64_t n_tasks, TaskFn fn, void* ctx);
  void WorkerLoop(int thread);
  void DoTasks(int thread);
  // The next task of `owner`'s range: its front (the owner) or its back (a thief); -1: empty.
  int64_t Take(int owner, bool back);

  const int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // serialises jobs

  // The current job (written before generation_ is bumped, read after it is seen).
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  // Per thread: its range of tasks [lo, hi) as (lo << 32) | hi, one cache line each.
  struct alignas(64) Range {
    std::atomic<uint64_t> v{0};
  };
  std::unique_ptr<Range[]> ranges_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  // The job's join state: (job tag << 32) | closed bit << 31 | workers inside the job.
  alignas(64) std::atomic<uint64_t> join_{0};
  alignas(64) std::atomic<int> sleeping_{0};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  std::atomic<bool> stop_{false};
};

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_THREAD_POOL_H_
