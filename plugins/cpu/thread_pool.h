// ThreadPool: the CPU plugin's persistent workers, created once and reused by every op.
//
// Run(n_tasks, fn) calls fn(task, thread) for every task in [0, n_tasks) on the calling thread plus
// size() - 1 workers, handing tasks out through an atomic counter (dynamic scheduling), and
// returns when all are done. A worker takes part in a job only if it joins before the caller has
// run out of tasks, and the caller waits only for workers that joined: on a busy machine a
// descheduled worker never holds up an op (its share is simply done by the others). Workers spin for a short while after each job (a decode step issues
// hundreds of small ops back to back) and then block on a condition variable, so an idle plugin
// costs no CPU. `thread` is in [0, size()) and unique among the concurrently running calls of one
// job, so callers can index per-thread scratch with it.
//
// Thread-safety: Run may be called from any thread; concurrent calls are serialised (a second
// caller waits for the first job). fn must not call Run (no nesting) and must not throw.
#ifndef KESTREL_PLUGINS_CPU_THREAD_POOL_H_
#define KESTREL_PLUGINS_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
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
    RunImpl(n_tasks, &Trampoline<std::remove_reference_t<F>>, &fn);
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

  const int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // serialises jobs

  // The current job (written before generation_ is bumped, read after it is seen).
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_tasks_ = 0;
  alignas(64) std::atomic<int64_t> next_task_{0};
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
