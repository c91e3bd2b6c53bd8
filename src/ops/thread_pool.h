// A small thread pool for the compute kernels. parallel_for hands out task
// indices from an atomic counter to the calling thread and n_threads-1
// workers. Workers spin briefly after each job (so back-to-back matmuls in a
// forward pass start without a futex wake-up) and then sleep on a condition
// variable, so an idle pool costs nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace lmhost::ops {

class ThreadPool {
 public:
  // n_threads <= 0: one thread per physical core available to this process.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return n_threads_; }

  // Calls fn(task, thread) for every task in [0, n_tasks), spread over the
  // threads (thread in [0, n_threads)); returns when all are done. The calling
  // thread takes part. Not reentrant: fn must not call parallel_for on the
  // same pool. An exception thrown by fn is rethrown here (the first one).
  template <class F>
  void parallel_for(int64_t n_tasks, F&& fn) {
    auto call = [](void* ctx, int64_t task, int thread) { (*static_cast<std::remove_reference_t<F>*>(ctx))(task, thread); };
    run(n_tasks, call, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Physical cores usable by this process (sysfs topology over the affinity
  // mask); falls back to std::thread::hardware_concurrency().
  static int physical_cores();

 private:
  using TaskFn = void (*)(void* ctx, int64_t task, int thread);
  void run(int64_t n_tasks, TaskFn fn, void* ctx);
  void worker(int index);
  void work(int thread);

  int n_threads_ = 1;
  std::vector<std::thread> threads_;

  // Current job.
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> busy_{0};  // workers still inside the current job
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  std::mutex error_mutex_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

}  // namespace lmhost::ops
