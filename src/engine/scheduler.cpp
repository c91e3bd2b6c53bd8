#include "engine/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <numeric>

#include "engine/json_constraint.h"

#include "util/error.h"

namespace lmhost {

namespace {
double ms_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

struct Scheduler::Slot {
  int seq = 0;
  bool busy = false;
  std::vector<Token> cache;  // tokens whose K/V are in the backend for this seq
  SteadyClock::time_point last_used{};

  // The running request.
  GenerateRequest req;
  std::shared_ptr<RequestHandle> handle;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> decoder;
  std::unique_ptr<StopMatcher> stopper;
  std::unique_ptr<JsonConstraint> json;  // only for req.json_object
  size_t n_prompt_done = 0;   // prompt tokens in the cache
  bool has_next = false;      // a sampled token waits to be fed
  Token next = -1;
  int n_generated = 0;
  int n_cached = 0;
  int logits_index = -1;      // row in this step's logits
  SteadyClock::time_point t_submit, t_start, t_first;
};

Scheduler::Scheduler(std::unique_ptr<Backend> backend, const Tokenizer& tok, SchedulerOptions opts)
    : backend_(std::move(backend)), tok_(tok), opts_(opts) {
  if (!backend_) throw Error("scheduler: no backend", 500);
  if (opts_.chunk < 1) opts_.chunk = 1;
  if (opts_.max_queue < 0) opts_.max_queue = 0;
  n_ctx_ = backend_->n_ctx_per_seq();
  const int n = backend_->n_seq();
  for (int i = 0; i < n; ++i) {
    auto s = std::make_unique<Slot>();
    s->seq = i;
    slots_.push_back(std::move(s));
  }
  stats_.n_parallel = n;
  stats_.n_ctx_per_seq = n_ctx_;
  stats_.max_queue = opts_.max_queue;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<RequestHandle> Scheduler::submit(GenerateRequest req) {
  if (req.prompt.empty()) throw Error("the prompt is empty", 400);
  const int n_prompt = static_cast<int>(req.prompt.size());
  if (n_prompt >= n_ctx_)
    throw Error("the prompt has " + std::to_string(n_prompt) + " tokens but the context of a sequence holds " +
                    std::to_string(n_ctx_) + " (start the server with a larger --ctx)",
                400);
  const int n_vocab = backend_->n_vocab();
  for (Token t : req.prompt)
    if (t < 0 || t >= n_vocab)
      throw Error("token id " + std::to_string(t) + " is out of range [0, " + std::to_string(n_vocab) + ")", 400);
  if (req.top_logprobs < 0) req.top_logprobs = 0;
  auto h = std::make_shared<RequestHandle>();
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw Error("the server is shutting down", 503);
    const int free_slots = static_cast<int>(slots_.size()) - active_.load();
    const int waiting = static_cast<int>(queue_.size());
    if (waiting - std::max(free_slots, 0) >= opts_.max_queue) {
      ++stats_.rejected_total;
      throw Error("the server is busy: " + std::to_string(waiting) + " requests are waiting (retry shortly)", 503);
    }
    ++stats_.requests_total;
    queue_.push_back(Pending{std::move(req), h, SteadyClock::now()});
  }
  cv_.notify_all();
  return h;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lk(mu_);
  SchedulerStats s = stats_;
  s.queued = static_cast<int>(queue_.size());
  s.active = active_.load();
  return s;
}

void Scheduler::assign(Pending&& p) {
  // Pick the free slot where reuse pays best: tokens kept minus half the
  // cached tokens that would be evicted (so a short shared prefix does not
  // destroy another cached conversation); ties go to the least recently used.
  Slot* best = nullptr;
  size_t best_common = 0;
  double best_score = 0;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.busy) continue;
    size_t common = 0;
    if (opts_.prefix_reuse) {
      const size_t lim = std::min(s.cache.size(), p.req.prompt.size());
      while (common < lim && s.cache[common] == p.req.prompt[common]) ++common;
    }
    const double score = static_cast<double>(common) - 0.5 * static_cast<double>(s.cache.size() - common);
    if (!best || score > best_score || (score == best_score && s.last_used < best->last_used)) {
      best = &s;
      best_common = common;
      best_score = score;
    }
  }
  Slot& s = *best;
  // Keep at least one prompt token to evaluate: its logits start generation.
  size_t keep = std::min(best_common, p.req.prompt.size() - 1);
  if (keep < s.cache.size()) {
    if (keep == 0) backend_->clear_seq(s.seq);
    else backend_->truncate_seq(s.seq, static_cast<int>(keep));
    s.cache.resize(keep);
  }
  s.busy = true;
  s.req = std::move(p.req);
  s.handle = std::move(p.handle);
  s.sampler = std::make_unique<Sampler>(s.req.sampling);
  for (Token t : s.req.prompt) s.sampler->accept(t);
  s.decoder = std::make_unique<StreamDecoder>(tok_, false, s.req.keep_special);
  s.stopper = std::make_unique<StopMatcher>(s.req.stop);
  s.json = s.req.json_object ? std::make_unique<JsonConstraint>(true) : nullptr;
  s.n_prompt_done = keep;
  s.n_cached = static_cast<int>(keep);
  s.has_next = false;
  s.next = -1;
  s.n_generated = 0;
  s.t_submit = p.t_submit;
  s.t_start = SteadyClock::now();
  s.t_first = s.t_start;
  ++active_;
  std::lock_guard lk(mu_);
  stats_.prompt_tokens_reused += keep;
}

void Scheduler::finish(Slot& s, FinishReason why, std::string error) {
  TokenEvent ev;
  ev.kind = TokenEvent::Kind::Done;
  ev.finish = why;
  ev.error = std::move(error);
  if (why == FinishReason::Length || why == FinishReason::Stop) {
    // Release what was held back for UTF-8 or a possible stop string.
    if (!s.stopper->stopped()) ev.text = s.stopper->push(s.decoder->flush());
    if (!s.stopper->stopped()) ev.text += s.stopper->flush();
  }
  const auto now = SteadyClock::now();
  if (s.n_generated == 0) s.t_first = now;
  ev.stats.prompt_tokens = static_cast<int>(s.req.prompt.size());
  ev.stats.cached_tokens = s.n_cached;
  ev.stats.completion_tokens = s.n_generated;
  ev.stats.queue_ms = ms_between(s.t_submit, s.t_start);
  ev.stats.prompt_ms = ms_between(s.t_start, s.t_first);
  ev.stats.generate_ms = ms_between(s.t_first, now);
  ev.stats.total_ms = ms_between(s.t_submit, now);
  // Free the slot before the consumer can see the end.
  std::shared_ptr<RequestHandle> h = std::move(s.handle);
  s.sampler.reset();
  s.decoder.reset();
  s.stopper.reset();
  s.json.reset();
  s.busy = false;
  s.has_next = false;
  s.last_used = now;
  --active_;
  h->push(std::move(ev));
}

// Sampling under the JSON constraint: the top kJsonTop candidates by logit
// are checked against the grammar, the rest are masked to -inf, and the
// request's own sampler (penalties, temperature, top-k/p, min-p, seed) draws
// from what is left. If none of them is allowed the vocabulary is scanned
// further in logit order until one is. A token is only allowed if the JSON
// can still be closed within the tokens left (max_tokens / context), so a
// bounded request ends with a complete object rather than "length" (as long
// as the budget fits at least "{}"; otherwise the budget is ignored).
// Returns -1 if no token at all can continue the text. EOG tokens are allowed
// only once the JSON is complete (the request finishes at that point anyway).
Token Scheduler::sample_json(Slot& s, std::span<const float> row) {
  constexpr size_t kJsonTop = 256;
  const size_t n = row.size();
  const size_t n_tok = static_cast<size_t>(std::max(0, tok_.n_vocab()));
  // Tokens left including this one (context: conservative by one).
  int64_t left = static_cast<int64_t>(n_ctx_) - static_cast<int64_t>(s.cache.size());
  if (s.req.max_tokens > 0) left = std::min<int64_t>(left, s.req.max_tokens - s.n_generated);
  // 0: not allowed; 1: grammar only; 2: grammar and budget (closable in time:
  // each later token can cut the closing cost by at least one byte).
  auto grade = [&](Token t) -> int {
    if (static_cast<size_t>(t) >= n_tok) return 0;
    if (tok_.is_eog(t)) return s.json->complete() ? 2 : 0;
    const std::string piece = tok_.token_to_piece(t, false);
    if (piece.empty()) return 0;
    const int cost = s.json->close_cost_after(piece);
    if (cost < 0) return 0;
    return cost <= left - 1 ? 2 : 1;
  };
  std::vector<Token>& order = json_order_;
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](Token a, Token b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
  const size_t top = std::min(kJsonTop, n);
  std::partial_sort(order.begin(), order.begin() + top, order.end(), better);
  std::vector<Token> ok[3];
  for (size_t i = 0; i < top; ++i) ok[grade(order[i])].push_back(order[i]);
  if (ok[2].empty()) {
    std::sort(order.begin() + top, order.end(), better);
    for (size_t i = top; i < n && ok[2].empty(); ++i) ok[grade(order[i])].push_back(order[i]);
  }
  const std::vector<Token>& use = !ok[2].empty() ? ok[2] : ok[1];
  if (use.empty()) return -1;
  std::vector<float>& masked = json_masked_;
  masked.assign(n, -std::numeric_limits<float>::infinity());
  for (Token t : use) masked[t] = row[t];
  Token t = s.sampler->sample(masked);
  if (std::find(use.begin(), use.end(), t) == use.end()) t = use.front();
  if (!tok_.is_eog(t)) s.json->advance(tok_.token_to_piece(t, false));
  return t;
}

void Scheduler::emit_token(Slot& s, Token t, std::span<const float> logits) {
  TokenEvent ev;
  ev.kind = TokenEvent::Kind::Token;
  ev.token = t;
  if (s.req.logprobs || s.req.top_logprobs > 0) {
    ev.chosen = {t, tok_.token_to_piece(t), token_logprob(logits, t)};
    if (s.req.top_logprobs > 0)
      for (auto [id, lp] : top_logprobs(logits, std::min(s.req.top_logprobs, 20)))
        ev.top.push_back({id, tok_.token_to_piece(id), lp});
  }
  ev.text = s.stopper->push(s.decoder->push(t));
  s.handle->push(std::move(ev));
}

void Scheduler::loop() {
  std::vector<SeqToken> batch;
  std::vector<Slot*> rows;  // slot for each logits row
  for (;;) {
    // 1. Admit new requests into free slots (between steps).
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || active_.load() > 0 || !queue_.empty(); });
      if (stopping_) break;
      const auto now = SteadyClock::now();
      // Requests that were cancelled or timed out while waiting end here.
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (it->handle->cancelled() || now >= it->req.deadline) {
          TokenEvent ev;
          ev.kind = TokenEvent::Kind::Done;
          ev.finish = it->handle->cancelled() ? FinishReason::Cancelled : FinishReason::Timeout;
          ev.stats.prompt_tokens = static_cast<int>(it->req.prompt.size());
          ev.stats.queue_ms = ev.stats.total_ms = ms_between(it->t_submit, now);
          it->handle->push(std::move(ev));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      while (!queue_.empty() && active_.load() < static_cast<int>(slots_.size())) {
        Pending p = std::move(queue_.front());
        queue_.pop_front();
        lk.unlock();
        assign(std::move(p));
        lk.lock();
      }
    }

    // 2. Build one batch: a token for each generating slot, prompt chunks for the others.
    const auto now = SteadyClock::now();
    batch.clear();
    rows.clear();
    int prompt_budget = opts_.chunk;
    int n_prompt_step = 0;
    for (auto& sp : slots_) {
      Slot& s = *sp;
      if (!s.busy) continue;
      s.logits_index = -1;
      if (s.handle->cancelled()) { finish(s, FinishReason::Cancelled); continue; }
      if (now >= s.req.deadline) { finish(s, FinishReason::Timeout); continue; }
      if (s.has_next) {
        const int pos = static_cast<int>(s.cache.size());
        batch.push_back({s.next, pos, s.seq, true});
        s.cache.push_back(s.next);
        s.has_next = false;
        s.logits_index = static_cast<int>(rows.size());
        rows.push_back(&s);
      }
    }
    for (auto& sp : slots_) {
      Slot& s = *sp;
      if (!s.busy || s.logits_index >= 0 || prompt_budget <= 0) continue;
      const size_t n_prompt = s.req.prompt.size();
      if (s.n_prompt_done >= n_prompt) continue;
      const size_t take = std::min<size_t>(n_prompt - s.n_prompt_done, static_cast<size_t>(prompt_budget));
      for (size_t i = 0; i < take; ++i) {
        const size_t k = s.n_prompt_done + i;
        const bool last = k + 1 == n_prompt;
        batch.push_back({s.req.prompt[k], static_cast<int32_t>(s.cache.size()), s.seq, last});
        s.cache.push_back(s.req.prompt[k]);
        if (last) {
          s.logits_index = static_cast<int>(rows.size());
          rows.push_back(&s);
        }
      }
      s.n_prompt_done += take;
      prompt_budget -= static_cast<int>(take);
      n_prompt_step += static_cast<int>(take);
    }
    if (batch.empty()) continue;

    // 3. One forward pass for everyone.
    std::span<const float> logits;
    try {
      logits = backend_->forward(batch);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "lmhost: engine: forward failed: %s\n", e.what());
      for (auto& sp : slots_) {
        Slot& s = *sp;
        if (!s.busy) continue;
        backend_->clear_seq(s.seq);
        s.cache.clear();
        finish(s, FinishReason::Error, std::string("the model failed to evaluate the batch: ") + e.what());
      }
      continue;
    }
    const size_t n_vocab = static_cast<size_t>(backend_->n_vocab());
    {
      std::lock_guard lk(mu_);
      ++stats_.steps;
      stats_.prompt_tokens_processed += n_prompt_step;
    }

    // 4. Sample, emit, decide who continues.
    int generated = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      Slot& s = *rows[r];
      const std::span<const float> row = logits.subspan(r * n_vocab, n_vocab);
      if (s.n_generated == 0) s.t_first = SteadyClock::now();
      if (s.handle->cancelled()) { finish(s, FinishReason::Cancelled); continue; }
      if (s.req.max_tokens == 0) { finish(s, FinishReason::Length); continue; }
      const Token t = s.json ? sample_json(s, row) : s.sampler->sample(row);
      if (t < 0) { finish(s, FinishReason::Stop); continue; }  // JSON constraint: no token can continue
      if (tok_.is_eog(t) && !s.req.ignore_eog) { finish(s, FinishReason::Stop); continue; }
      s.sampler->accept(t);
      ++s.n_generated;
      ++generated;
      emit_token(s, t, row);
      if (s.stopper->stopped()) { finish(s, FinishReason::Stop); continue; }
      if (s.json && s.json->complete()) { finish(s, FinishReason::Stop); continue; }
      if (s.req.max_tokens > 0 && s.n_generated >= s.req.max_tokens) { finish(s, FinishReason::Length); continue; }
      if (static_cast<int>(s.cache.size()) >= n_ctx_) { finish(s, FinishReason::Length); continue; }
      s.has_next = true;
      s.next = t;
    }
    if (generated) {
      std::lock_guard lk(mu_);
      stats_.tokens_generated += generated;
    }
  }

  // Shutting down: end everything in flight.
  for (auto& sp : slots_)
    if (sp->busy) finish(*sp, FinishReason::Cancelled, "the server is shutting down");
  std::lock_guard lk(mu_);
  for (auto& p : queue_) {
    TokenEvent ev;
    ev.kind = TokenEvent::Kind::Done;
    ev.finish = FinishReason::Cancelled;
    ev.error = "the server is shutting down";
    p.handle->push(std::move(ev));
  }
  queue_.clear();
}

}  // namespace lmhost
