#include "ops/thread_pool.h"

#include <sched.h>

#include <chrono>
#include <algorithm>
#include <fstream>
#include <set>
#include <string>

namespace lmhost::ops {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long an idle worker (outside a Busy hold) keeps polling for the next
// job before sleeping.
constexpr auto kSpin = std::chrono::microseconds(1000);
// How long an idle worker spins before it starts yielding between polls.
constexpr auto kYieldAfter = std::chrono::microseconds(100);

int read_int(const std::string& path) {
  std::ifstream in(path);
  int v = -1;
  if (in) in >> v;
  return in ? v : -1;
}

}  // namespace

int ThreadPool::physical_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::set<std::pair<int, int>> cores;
  int logical = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      ++logical;
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      const int core = read_int(base + "core_id");
      const int pkg = read_int(base + "physical_package_id");
      if (core < 0) { cores.clear(); break; }
      cores.insert({pkg, core});
    }
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  if (logical > 0) return logical;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

ThreadPool::ThreadPool(int n_threads) {
  n_threads_ = n_threads > 0 ? n_threads : physical_cores();
  if (n_threads_ > 512) n_threads_ = 512;
  runs_ = std::make_unique<Run[]>(n_threads_);
  threads_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lk(mutex_);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

namespace {
inline uint64_t run_gen(uint64_t s) { return s >> 48; }
inline int64_t run_front(uint64_t s) { return static_cast<int64_t>((s >> 24) & 0xFFFFFF); }
inline int64_t run_back(uint64_t s) { return static_cast<int64_t>(s & 0xFFFFFF); }

// One CAS on a run of job gen: its front task (front + 1) or its back task
// (back - 1); false once the run is empty or belongs to another job.
bool take(std::atomic<uint64_t>& run, uint64_t gen, bool front, int64_t& task) {
  uint64_t s = run.load(std::memory_order_acquire);
  while (run_gen(s) == gen && run_front(s) < run_back(s)) {
    const uint64_t next = front ? s + (uint64_t{1} << 24) : s - 1;
    if (run.compare_exchange_weak(s, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
      task = front ? run_front(s) : run_back(s) - 1;
      return true;
    }
  }
  return false;
}
}  // namespace

bool ThreadPool::claim(int self, uint64_t gen, int64_t& task) {
  if (take(runs_[self].word, gen, true, task)) return true;
  for (int d = 1; d < n_threads_; ++d)  // the last task of another run
    if (take(runs_[(self + d) % n_threads_].word, gen, false, task)) return true;
  return false;
}

void ThreadPool::execute(uint64_t gen, int64_t task, int thread) {
  Job& job = jobs_[gen & 1];
  if (!failed_.load(std::memory_order_relaxed)) {
    try {
      job.fn.load(std::memory_order_relaxed)(job.ctx.load(std::memory_order_relaxed), task, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lk(error_mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true);
    }
  }
  job.done.fetch_add(1, std::memory_order_release);
}

void ThreadPool::worker(int index) {
  using Clock = std::chrono::steady_clock;
  auto last_work = Clock::now();
  uint64_t done_gen = 0;  // the last job this worker has taken every task it could of
  for (;;) {
    const uint64_t gen = job_gen_.load(std::memory_order_acquire);
    if (gen != done_gen) {
      int64_t task;
      bool worked = false;
      while (claim(index, gen, task)) {
        execute(gen, task, index);
        worked = true;
      }
      if (worked) last_work = Clock::now();
      done_gen = gen;
      continue;
    }
    // Idle: spin on the job generation; sleep only outside a Busy hold and
    // after kSpin without work.
    for (int k = 1;; ++k) {
      if (stop_.load(std::memory_order_relaxed)) return;
      if (job_gen_.load(std::memory_order_acquire) != done_gen) break;
      cpu_relax();
      if ((k & 255) != 0) continue;
      const auto idle = Clock::now() - last_work;
      // Inside a Busy hold a job normally follows within microseconds; a
      // longer wait means the thread that publishes jobs is not running
      // (over-subscribed machine): yield the core to it instead of spinning.
      if (idle > kYieldAfter) std::this_thread::yield();
      if (holds_.load(std::memory_order_relaxed) == 0 && idle > kSpin) {
        std::unique_lock<std::mutex> lk(mutex_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return stop_.load() || job_gen_.load() != done_gen || holds_.load() > 0; });
        sleepers_.fetch_sub(1);
        last_work = Clock::now();
        break;
      }
    }
  }
}

void ThreadPool::run(int64_t n_tasks, TaskFn fn, void* ctx) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t i = 0; i < n_tasks; ++i) fn(ctx, i, 0);
    return;
  }
  if (n_tasks <= kMaxTasks) return run_one(n_tasks, fn, ctx);
  // More tasks than the state word counts: run them in slices.
  struct Slice { TaskFn fn; void* ctx; int64_t base; };
  for (int64_t base = 0; base < n_tasks; base += kMaxTasks) {
    Slice sl{fn, ctx, base};
    run_one(std::min(kMaxTasks, n_tasks - base),
            [](void* c, int64_t task, int thread) {
              const Slice* s = static_cast<const Slice*>(c);
              s->fn(s->ctx, s->base + task, thread);
            },
            &sl);
  }
}

void ThreadPool::run_one(int64_t n_tasks, TaskFn fn, void* ctx) {
  const uint64_t gen = (job_gen_.load(std::memory_order_relaxed) + 1) & 0xFFFF;
  Job& job = jobs_[gen & 1];
  job.fn.store(fn, std::memory_order_relaxed);
  job.ctx.store(ctx, std::memory_order_relaxed);
  job.done.store(0, std::memory_order_relaxed);
  failed_.store(false, std::memory_order_relaxed);
  for (int t = 0; t < n_threads_; ++t)
    runs_[t].word.store((gen << 48) | (static_cast<uint64_t>(n_tasks * t / n_threads_) << 24) |
                            static_cast<uint64_t>(n_tasks * (t + 1) / n_threads_),
                        std::memory_order_relaxed);
  job_gen_.store(gen, std::memory_order_seq_cst);  // publishes the job
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lk(mutex_); }
    cv_.notify_all();
  }
  int64_t task;
  while (claim(0, gen, task)) execute(gen, task, 0);
  // Every task is claimed; wait only for those still running elsewhere.
  // Spin briefly, then yield so an over-subscribed machine runs the holder.
  for (int k = 0; job.done.load(std::memory_order_acquire) < n_tasks; ++k) {
    if (k < 4000) cpu_relax();
    else std::this_thread::yield();
  }
  if (failed_.load()) {
    std::exception_ptr e;
    {
      std::lock_guard<std::mutex> lk(error_mutex_);
      std::swap(e, error_);
    }
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace lmhost::ops
