// One Scheduler per loaded model: a single engine thread owns the Backend
// (context + KV cache) and runs continuous batching over `n_parallel` slots.
// Each step, every generating slot decodes one token and prompts in progress
// add up to `chunk` tokens, all in one forward(); new requests join between
// steps. Callers submit() to a bounded queue (full → Error 503 at once) and
// read TokenEvents from the returned handle.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/backend.h"
#include "engine/request.h"

namespace lmhost {

struct SchedulerOptions {
  int max_queue = 64;     // waiting requests beyond the running ones; more → 503
  int chunk = 256;        // prompt tokens processed per step (over all slots)
  bool prefix_reuse = true;
};

struct SchedulerStats {
  int n_parallel = 0;
  int n_ctx_per_seq = 0;
  int active = 0;          // slots running a request
  int queued = 0;          // waiting for a slot
  int max_queue = 0;
  uint64_t requests_total = 0;
  uint64_t rejected_total = 0;
  uint64_t tokens_generated = 0;
  uint64_t prompt_tokens_processed = 0;
  uint64_t prompt_tokens_reused = 0;
  uint64_t steps = 0;
};

class Scheduler {
 public:
  // `tok` must outlive the scheduler.
  Scheduler(std::unique_ptr<Backend> backend, const Tokenizer& tok, SchedulerOptions opts = {});
  ~Scheduler();  // stop()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Throws Error(400) when the request cannot fit (empty prompt, prompt longer
  // than a sequence's context, ...), Error(503) when the queue is full or the
  // scheduler is stopping.
  std::shared_ptr<RequestHandle> submit(GenerateRequest req);

  SchedulerStats stats() const;
  int n_ctx_per_seq() const { return n_ctx_; }
  // Finishes everything in flight (Cancelled) and joins the engine thread.
  void stop();

 private:
  struct Pending {
    GenerateRequest req;
    std::shared_ptr<RequestHandle> handle;
    SteadyClock::time_point t_submit;
  };
  struct Slot;

  void loop();
  void assign(Pending&& p);
  void finish(Slot& s, FinishReason why, std::string error = {});
  void emit_token(Slot& s, Token t, std::span<const float> logits);
  Token sample_json(Slot& s, std::span<const float> row);  // JSON-constrained draw
  std::vector<Token> json_order_;   // scratch for sample_json (engine thread only)
  std::vector<float> json_masked_;

  std::unique_ptr<Backend> backend_;
  const Tokenizer& tok_;
  SchedulerOptions opts_;
  int n_ctx_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  SchedulerStats stats_;  // guarded by mu_

  std::vector<std::unique_ptr<Slot>> slots_;  // engine thread only
  std::atomic<int> active_{0};
  std::thread thread_;
};

}  // namespace lmhost
