#include "thread_pool.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kestrel::plugins::cpu {
namespace {

// Every task runs exactly once, `thread` is in range and never used by two calls at once.
void CheckJob(ThreadPool& pool, int64_t n_tasks) {
  std::vector<std::atomic<int>> runs(static_cast<size_t>(n_tasks));
  std::vector<std::atomic<int>> busy(static_cast<size_t>(pool.size()));
  std::atomic<int> bad_thread{0}, overlap{0};
  pool.Run(n_tasks, [&](int64_t task, int thread) {
    if (thread < 0 || thread >= pool.size()) {
      bad_thread.fetch_add(1);
      return;
    }
    if (busy[static_cast<size_t>(thread)].fetch_add(1) != 0) overlap.fetch_add(1);
    runs[static_cast<size_t>(task)].fetch_add(1);
    busy[static_cast<size_t>(thread)].fetch_sub(1);
  });
  EXPECT_EQ(bad_thread.load(), 0);
  EXPECT_EQ(overlap.load(), 0);
  for (int64_t t = 0; t < n_tasks; ++t) {
    ASSERT_EQ(runs[static_cast<size_t>(t)].load(), 1) << "task " << t << " of " << n_tasks;
  }
}

TEST(ThreadPoolTest, EveryTaskRunsOnceForAnyTaskCountAndThreadCount) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int rep = 0; rep < 50; ++rep) {
      for (int64_t n : {1, 2, 3, 4, 7, 16, 33, 100, 1000}) CheckJob(pool, n);
    }
  }
}

TEST(ThreadPoolTest, UnevenTasksAreStolenAndAllFinish) {
  // Tasks of the first range are slow: the other threads steal from its back.
  ThreadPool pool(3);
  std::vector<std::atomic<int>> runs(30);
  pool.Run(30, [&](int64_t task, int) {
    if (task < 10) std::this_thread::sleep_for(std::chrono::microseconds(200));
    runs[static_cast<size_t>(task)].fetch_add(1);
  });
  for (auto& r : runs) EXPECT_EQ(r.load(), 1);
}

TEST(ThreadPoolTest, WorkersWakeAfterSleeping) {
  ThreadPool pool(2);
  CheckJob(pool, 64);
  // Longer than the workers' spin: they block, and the next job must wake them (or run without).
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CheckJob(pool, 64);
}

TEST(ThreadPoolTest, ConcurrentCallersAreSerialised) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  auto caller = [&] {
    for (int rep = 0; rep < 200; ++rep) {
      pool.Run(17, [&](int64_t task, int) { sum.fetch_add(task + 1); });
    }
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(sum.load(), 2 * 200 * (17 * 18 / 2));
}

}  // namespace
}  // namespace kestrel::plugins::cpu
