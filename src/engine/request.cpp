#include "engine/request.h"

namespace lmhost {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Timeout: return "timeout";
    case FinishReason::Error: return "error";
  }
  return "";
}

bool RequestHandle::try_pop(std::vector<TokenEvent>& out) {
  std::lock_guard lk(mu_);
  if (events_.empty()) return false;
  for (auto& e : events_) out.push_back(std::move(e));
  events_.clear();
  return true;
}

bool RequestHandle::wait_pop(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !events_.empty(); });
  if (events_.empty()) return false;
  for (auto& e : events_) out.push_back(std::move(e));
  events_.clear();
  return true;
}

void RequestHandle::set_notify(std::function<void()> fn) {
  std::function<void()> call_now;
  {
    std::lock_guard lk(mu_);
    notify_ = std::move(fn);
    if (!events_.empty()) call_now = notify_;
  }
  if (call_now) call_now();
}

void RequestHandle::push(TokenEvent ev) {
  std::function<void()> notify;
  {
    std::lock_guard lk(mu_);
    if (ev.kind == TokenEvent::Kind::Done) done_.store(true, std::memory_order_release);
    events_.push_back(std::move(ev));
    notify = notify_;
  }
  cv_.notify_all();
  if (notify) notify();
}

GenerateResult collect(RequestHandle& h, bool keep_events) {
  GenerateResult r;
  std::vector<TokenEvent> evs;
  for (;;) {
    evs.clear();
    h.wait_pop(evs, std::chrono::milliseconds(200));
    for (auto& e : evs) {
      r.text += e.text;
      if (e.kind == TokenEvent::Kind::Token) {
        r.tokens.push_back(e.token);
        if (keep_events) r.token_events.push_back(e);
      } else {
        r.finish = e.finish;
        r.error = e.error;
        r.stats = e.stats;
        return r;
      }
    }
  }
}

}  // namespace lmhost
