// Dynamic batching for embedding models. Requests (one or many sequences
// each) are queued as single sequences; one engine thread takes up to
// batch_size sequences / max_batch_tokens tokens per forward pass, waiting at
// most max_wait for company once the first is there, and hands every result
// back to its request in order. Sequences are packed back to back by the
// encoder (no padding); a pass is sorted by length. A request whose client
// went away (cancel()) is dropped before it is computed. The queue is
// bounded: submit() throws Error(503) when it is full.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/bert.h"

namespace lmhost {

struct EmbedOptions {
  int batch_size = 32;           // BATCH_SIZE: sequences per pass (1 = no batching)
  int max_batch_tokens = 8192;   // tokens per pass (a longer single sequence runs alone)
  std::chrono::microseconds max_wait{2000};  // how long a pass waits for company
  int max_queue = 1024;          // queued sequences before submit() rejects with 503
  int n_threads = 0;             // compute threads (0: physical cores)
};

// One request: results arrive in the order of the inputs.
class EmbedJob {
 public:
  explicit EmbedJob(std::vector<std::vector<Token>> seqs);
  size_t size() const { return seqs_.size(); }
  const std::vector<std::vector<Token>>& inputs() const { return seqs_; }

  // The client went away: queued sequences are dropped, the job ends with error 499.
  void cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  bool done() const;
  // Called once when the job is done (immediately if it already is); any thread.
  void set_notify(std::function<void()> fn);
  // Blocks until done.
  void wait() const;
  // Valid once done(): error() empty on success.
  std::string error() const;
  int error_status() const;
  std::vector<std::vector<float>>& results() { return results_; }

 private:
  friend class EmbedBatcher;
  void complete_one(size_t index, std::vector<float> v);
  void fail(const std::string& msg, int status);

  std::vector<std::vector<Token>> seqs_;
  std::vector<std::vector<float>> results_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  size_t remaining_ = 0;
  bool done_ = false;
  std::string error_;
  int status_ = 0;
  std::function<void()> notify_;
};

struct EmbedStats {
  uint64_t requests = 0;       // submitted jobs
  uint64_t sequences = 0;      // sequences computed
  uint64_t tokens = 0;         // tokens computed
  uint64_t passes = 0;         // forward passes
  uint64_t dropped = 0;        // sequences dropped because their client went away
  uint64_t rejected = 0;       // jobs rejected because the queue was full
  size_t queued = 0;           // sequences waiting now
  int max_queue = 0, batch_size = 0, max_batch_tokens = 0;
};

class EmbedBatcher {
 public:
  EmbedBatcher(std::shared_ptr<const EmbeddingModel> model, EmbedOptions opts);
  ~EmbedBatcher();  // stop()
  EmbedBatcher(const EmbedBatcher&) = delete;
  EmbedBatcher& operator=(const EmbedBatcher&) = delete;

  // Queues every sequence of the job. Throws Error(503) when the queue is
  // full, Error(400) for invalid sequences (empty, too long, bad ids) and
  // Error(503) after stop().
  std::shared_ptr<EmbedJob> submit(std::vector<std::vector<Token>> seqs);
  // submit + wait; throws Error with the job's status on failure.
  std::vector<std::vector<float>> embed(std::vector<std::vector<Token>> seqs);

  const EmbeddingModel& model() const { return *model_; }
  std::shared_ptr<const EmbeddingModel> model_ptr() const { return model_; }
  const EmbedOptions& options() const { return opts_; }
  EmbedStats stats() const;
  void stop();  // fails queued jobs (503) and joins the engine thread

 private:
  struct Item {
    std::shared_ptr<EmbedJob> job;
    size_t index;
  };
  void run();

  std::shared_ptr<const EmbeddingModel> model_;
  EmbedOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  EmbedStats stats_;
  std::thread thread_;
};

}  // namespace lmhost
