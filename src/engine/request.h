// API-neutral generation requests and the per-request token-event channel.
// HTTP adapters build a GenerateRequest, submit it to a Scheduler and read
// TokenEvents from the returned RequestHandle; the engine thread pushes them.
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
#include <vector>

#include "engine/sampler.h"
#include "tokenizer/tokenizer.h"

namespace lmhost {

using SteadyClock = std::chrono::steady_clock;

enum class FinishReason { None, Stop, Length, Cancelled, Timeout, Error };
// "stop", "length", "cancelled", "timeout", "error" ("" for None).
const char* finish_reason_name(FinishReason r);

struct GenerateRequest {
  std::vector<Token> prompt;       // already tokenized (template applied, BOS added as wanted)
  SamplingParams sampling;
  int max_tokens = 256;            // < 0: until the sequence's context is full
  std::vector<std::string> stop;   // stop strings (excluded from the output)
  bool logprobs = false;           // report the chosen token's logprob
  int top_logprobs = 0;            // and this many alternatives
  bool ignore_eog = false;         // keep going past end-of-generation tokens
  SteadyClock::time_point deadline = SteadyClock::time_point::max();
  // Constrain the output to one JSON object (Ollama format "json" / a schema,
  // OpenAI response_format json_object). Only JSON validity is enforced, not
  // any schema. Generation stops (reason stop) once the object is complete.
  bool json_object = false;
  // Special tokens written into the output text as their text (the markers
  // of the model's tool-call format, when the request declared tools).
  std::vector<Token> keep_special;
};

struct TokenLogprob {
  Token token = -1;
  std::string piece;  // raw bytes of the token (may be a partial UTF-8 char)
  float logprob = 0.0f;
};

struct GenerateStats {
  int prompt_tokens = 0;      // tokens in the prompt
  int cached_tokens = 0;      // prompt tokens reused from the KV cache (not recomputed)
  int completion_tokens = 0;  // tokens generated (EOG not counted)
  double queue_ms = 0;        // submit → slot assigned
  double prompt_ms = 0;       // slot assigned → first token sampled
  double generate_ms = 0;     // first token sampled → done
  double total_ms = 0;        // submit → done
};

struct TokenEvent {
  enum class Kind { Token, Done };
  Kind kind = Kind::Token;
  // Token: the text that became safe to emit with this token (UTF-8 complete,
  // not part of a possible stop string; may be empty), the token and its
  // logprob information when requested.
  std::string text;
  Token token = -1;
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;
  // Done: why, and the counts and timings. `text` may carry a final flush.
  FinishReason finish = FinishReason::None;
  std::string error;     // FinishReason::Error
  GenerateStats stats;
};

// Thread-safe channel from the engine thread to one consumer, plus the
// cancellation flag going the other way.
class RequestHandle {
 public:
  RequestHandle() = default;
  RequestHandle(const RequestHandle&) = delete;
  RequestHandle& operator=(const RequestHandle&) = delete;

  // Consumer side.
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  // Appends every pending event to out; true if any.
  bool try_pop(std::vector<TokenEvent>& out);
  // Waits up to `timeout` for at least one event; true if any were appended.
  bool wait_pop(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout);
  // Called (from the engine thread) after each push; called at once if events
  // are already waiting. Keep it cheap and non-blocking.
  void set_notify(std::function<void()> fn);
  bool done() const { return done_.load(std::memory_order_acquire); }

  // Producer side (engine).
  void push(TokenEvent ev);

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> done_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  std::function<void()> notify_;
};

// Collects a whole generation (non-streaming callers and tests).
struct GenerateResult {
  std::string text;
  std::vector<Token> tokens;
  std::vector<TokenEvent> token_events;  // only filled when keep_events
  FinishReason finish = FinishReason::None;
  std::string error;
  GenerateStats stats;
};
// Blocks until the request is done.
GenerateResult collect(RequestHandle& h, bool keep_events = false);

}  // namespace lmhost
