#include "engine/embed_batcher.h"

#include <algorithm>
#include <cstdio>

#include "ops/thread_pool.h"
#include "util/error.h"

namespace lmhost {

EmbedJob::EmbedJob(std::vector<std::vector<Token>> seqs) : seqs_(std::move(seqs)) {
  results_.resize(seqs_.size());
  remaining_ = seqs_.size();
  done_ = seqs_.empty();
}

void EmbedJob::cancel() {
  cancelled_.store(true, std::memory_order_release);
}

bool EmbedJob::done() const {
  std::lock_guard lk(mu_);
  return done_;
}

void EmbedJob::set_notify(std::function<void()> fn) {
  bool call = false;
  {
    std::lock_guard lk(mu_);
    if (done_) call = true;
    else notify_ = fn;
  }
  if (call && fn) fn();
}

void EmbedJob::wait() const {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return done_; });
}

std::string EmbedJob::error() const {
  std::lock_guard lk(mu_);
  return error_;
}

int EmbedJob::error_status() const {
  std::lock_guard lk(mu_);
  return status_;
}

void EmbedJob::complete_one(size_t index, std::vector<float> v) {
  std::function<void()> fn;
  {
    std::lock_guard lk(mu_);
    if (done_) return;
    results_[index] = std::move(v);
    if (--remaining_ > 0) return;
    done_ = true;
    fn = std::move(notify_);
  }
  cv_.notify_all();
  if (fn) fn();
}

void EmbedJob::fail(const std::string& msg, int status) {
  std::function<void()> fn;
  {
    std::lock_guard lk(mu_);
    if (done_) return;
    done_ = true;
    error_ = msg;
    status_ = status;
    fn = std::move(notify_);
  }
  cv_.notify_all();
  if (fn) fn();
}

EmbedBatcher::EmbedBatcher(std::shared_ptr<const EmbeddingModel> model, EmbedOptions opts)
    : model_(std::move(model)), opts_(opts) {
  if (!model_) throw Error("EmbedBatcher: no model", 500);
  opts_.batch_size = std::max(1, opts_.batch_size);
  opts_.max_batch_tokens = std::max(1, opts_.max_batch_tokens);
  opts_.max_queue = std::max(1, opts_.max_queue);
  stats_.max_queue = opts_.max_queue;
  stats_.batch_size = opts_.batch_size;
  stats_.max_batch_tokens = opts_.max_batch_tokens;
  thread_ = std::thread([this] { run(); });
}

EmbedBatcher::~EmbedBatcher() { stop(); }

void EmbedBatcher::stop() {
  std::deque<Item> left;
  {
    std::lock_guard lk(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    left.swap(queue_);
  }
  cv_.notify_all();
  for (auto& it : left) it.job->fail("the server is shutting down", 503);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

std::shared_ptr<EmbedJob> EmbedBatcher::submit(std::vector<std::vector<Token>> seqs) {
  const int n_ctx = model_->n_ctx(), n_vocab = model_->hparams().n_vocab;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto& s = seqs[i];
    if (s.empty()) throw Error("input " + std::to_string(i) + " has no tokens", 400);
    if (static_cast<int>(s.size()) > n_ctx)
      throw Error("input " + std::to_string(i) + " has " + std::to_string(s.size()) +
                      " tokens, more than the model's context length of " + std::to_string(n_ctx),
                  400);
    for (Token t : s)
      if (t < 0 || t >= n_vocab)
        throw Error("input " + std::to_string(i) + ": token id " + std::to_string(t) + " is out of range [0, " +
                        std::to_string(n_vocab) + ")",
                    400);
  }
  auto job = std::make_shared<EmbedJob>(std::move(seqs));
  if (job->size() == 0) return job;
  {
    std::lock_guard lk(mu_);
    if (stop_) throw Error("the server is shutting down", 503);
    const size_t n = job->size();
    if (!queue_.empty() && queue_.size() + n > static_cast<size_t>(opts_.max_queue)) {
      ++stats_.rejected;
      throw Error("the embedding queue is full (" + std::to_string(queue_.size()) + " inputs waiting); retry later",
                  503);
    }
    ++stats_.requests;
    for (size_t i = 0; i < n; ++i) queue_.push_back({job, i});
  }
  cv_.notify_one();
  return job;
}

std::vector<std::vector<float>> EmbedBatcher::embed(std::vector<std::vector<Token>> seqs) {
  auto job = submit(std::move(seqs));
  job->wait();
  if (!job->error().empty()) throw Error(job->error(), job->error_status());
  return std::move(job->results());
}

EmbedStats EmbedBatcher::stats() const {
  std::lock_guard lk(mu_);
  EmbedStats s = stats_;
  s.queued = queue_.size();
  return s;
}

void EmbedBatcher::run() {
  ops::ThreadPool pool(opts_.n_threads);
  std::vector<Item> pass;
  for (;;) {
    pass.clear();
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      // Wait a little for company unless a pass is already full.
      auto full = [&] { return queue_.size() >= static_cast<size_t>(opts_.batch_size); };
      if (!full() && opts_.batch_size > 1 && opts_.max_wait.count() > 0) {
        const auto until = std::chrono::steady_clock::now() + opts_.max_wait;
        cv_.wait_until(lk, until, [&] { return stop_ || full(); });
        if (stop_) return;
      }
      int64_t tokens = 0;
      uint64_t dropped = 0;
      while (!queue_.empty() && static_cast<int>(pass.size()) < opts_.batch_size) {
        Item& it = queue_.front();
        if (it.job->cancelled()) {
          it.job->fail("the client went away", 499);
          queue_.pop_front();
          ++dropped;
          continue;
        }
        const int64_t n = static_cast<int64_t>(it.job->inputs()[it.index].size());
        if (!pass.empty() && tokens + n > opts_.max_batch_tokens) break;
        tokens += n;
        pass.push_back(std::move(it));
        queue_.pop_front();
      }
      stats_.dropped += dropped;
    }
    if (pass.empty()) continue;
    // Sort by length (the encoder packs sequences, so this only groups similar work).
    std::stable_sort(pass.begin(), pass.end(), [](const Item& a, const Item& b) {
      return a.job->inputs()[a.index].size() < b.job->inputs()[b.index].size();
    });
    std::vector<std::vector<Token>> seqs;
    seqs.reserve(pass.size());
    int64_t tokens = 0;
    for (const auto& it : pass) {
      seqs.push_back(it.job->inputs()[it.index]);
      tokens += static_cast<int64_t>(seqs.back().size());
    }
    std::vector<std::vector<float>> out;
    std::string err;
    int status = 0;
    try {
      out = model_->embed(seqs, pool);
    } catch (const Error& e) {
      err = e.what(), status = e.status();
    } catch (const std::exception& e) {
      err = std::string("embedding failed: ") + e.what(), status = 500;
    }
    {  // counted before the results are handed out (so a client sees its own pass in the stats)
      std::lock_guard lk(mu_);
      stats_.passes += 1;
      stats_.sequences += pass.size();
      stats_.tokens += static_cast<uint64_t>(tokens);
    }
    for (size_t i = 0; i < pass.size(); ++i) {
      if (status) pass[i].job->fail(err, status);
      else pass[i].job->complete_one(pass[i].index, std::move(out[i]));
    }
  }
}

}  // namespace lmhost
