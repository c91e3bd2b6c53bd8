// A small thread pool for the compute kernels. parallel_for hands out task
// indices to the calling thread and n_threads-1 workers; the caller returns
// as soon as every task has finished (it never waits for a worker that took
// no task, so a descheduled idle worker costs nothing).
//
// Each thread owns an equal run of consecutive task indices and takes them
// in order; a thread whose run is done takes the last remaining task of
// another's. Tasks that are consecutive row chunks of a matrix thus become
// one forward stream per thread, which the hardware prefetcher follows
// across chunk boundaries (chunks handed out in turn read ~15 % slower from
// DRAM when the host's bandwidth is high: bench/stream_bench), while a slow
// or descheduled thread still loses its remaining tasks to the others.
//
// Idle workers spin on one atomic word (with pause) so the many small jobs of
// a forward pass start without a wake-up. While a ThreadPool::Busy guard
// lives (Context::forward holds one for the whole pass) they never sleep;
// otherwise they sleep on a condition variable after about a millisecond
// without work, so an idle pool costs nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
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
  // threads (thread in [0, n_threads); no two concurrent calls share a
  // thread index); returns when all are done. The calling thread takes part.
  // Not reentrant: fn must not call parallel_for on the same pool. An
  // exception thrown by fn is rethrown here (the first one; the remaining
  // tasks are skipped).
  template <class F>
  void parallel_for(int64_t n_tasks, F&& fn) {
    auto call = [](void* ctx, int64_t task, int thread) { (*static_cast<std::remove_reference_t<F>*>(ctx))(task, thread); };
    run(n_tasks, call, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Keeps the workers spinning (never sleeping) while it lives: hold one
  // around a sequence of parallel_for calls such as a forward pass. Nests.
  class Busy {
   public:
    explicit Busy(ThreadPool& pool) : pool_(pool) { pool_.holds_.fetch_add(1, std::memory_order_relaxed); }
    ~Busy() { pool_.holds_.fetch_sub(1, std::memory_order_relaxed); }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    ThreadPool& pool_;
  };

  // Physical cores usable by this process (sysfs topology over the affinity
  // mask); falls back to std::thread::hardware_concurrency().
  static int physical_cores();

 private:
  using TaskFn = void (*)(void* ctx, int64_t task, int thread);
  void run(int64_t n_tasks, TaskFn fn, void* ctx);
  void run_one(int64_t n_tasks, TaskFn fn, void* ctx);
  void worker(int index);
  // Claims a task of job gen for thread self: the next of its own run, else
  // the last of another's; false when none is left.
  bool claim(int self, uint64_t gen, int64_t& task);
  void execute(uint64_t gen, int64_t task, int thread);

  // job_gen_ (16 bits) publishes a job; thread t's run is runs_[t] =
  // [generation:16][front:24][back:24]: one CAS claims a task of exactly
  // the job it was published with.
  static constexpr int kBits = 24;
  static constexpr int64_t kMaxTasks = (int64_t{1} << kBits) - 1;
  struct alignas(64) Run {
    std::atomic<uint64_t> word{0};
  };

  struct alignas(64) Job {
    std::atomic<TaskFn> fn{nullptr};
    std::atomic<void*> ctx{nullptr};
    std::atomic<int64_t> done{0};
  };

  int n_threads_ = 1;
  std::vector<std::thread> threads_;
  alignas(64) std::atomic<uint64_t> job_gen_{0};
  std::unique_ptr<Run[]> runs_;
  Job jobs_[2];  // by generation parity: job g+1 is set up while late workers may still look at job g
  alignas(64) std::atomic<int> holds_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  std::mutex error_mutex_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

}  // namespace lmhost::ops
