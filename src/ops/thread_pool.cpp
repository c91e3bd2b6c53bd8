#include "ops/thread_pool.h"

#include <sched.h>

#include <chrono>
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

// How long an idle worker keeps polling for the next job before sleeping.
constexpr auto kSpin = std::chrono::microseconds(100);

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

void ThreadPool::work(int thread) {
  for (;;) {
    const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_tasks_ || failed_.load(std::memory_order_relaxed)) break;
    try {
      fn_(ctx_, i, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lk(error_mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true);
    }
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    auto ready = [&] { return stop_.load() || generation_.load() != seen; };
    if (!ready()) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      for (int k = 1; !ready(); ++k) {
        cpu_relax();
        if ((k & 63) == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (!ready()) {
        std::unique_lock<std::mutex> lk(mutex_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, ready);
        sleepers_.fetch_sub(1);
      }
    }
    if (stop_.load()) return;
    seen = generation_.load();
    work(index);
    busy_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::run(int64_t n_tasks, TaskFn fn, void* ctx) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t i = 0; i < n_tasks; ++i) fn(ctx, i, 0);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  n_tasks_ = n_tasks;
  next_.store(0, std::memory_order_relaxed);
  failed_.store(false, std::memory_order_relaxed);
  busy_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job above
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lk(mutex_); }
    cv_.notify_all();
  }
  work(0);
  // Wait for the workers: spin briefly (they usually finish together with
  // us), then yield so an over-subscribed machine can run the straggler.
  for (int k = 0; busy_.load(std::memory_order_acquire) > 0; ++k) {
    if (k < 2000) cpu_relax();
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
