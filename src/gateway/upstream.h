// Upstream backends: other Ollama / OpenAI-compatible servers (or lmhost
// replicas) whose models lmhost serves under their own names. A pool per
// model name: round-robin over healthy upstreams, retries with exponential
// backoff and jitter on connection errors and 5xx before anything reached the
// client, failover to the next upstream, and a circuit breaker (after
// `failure_threshold` consecutive failures an upstream is skipped for
// `cooldown`, then probed again). The model lists are refreshed (and health
// checked) every `health_interval`. HTTP through libcurl.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lmhost::gateway {

enum class UpstreamKind { Ollama, OpenAI };
const char* upstream_kind_name(UpstreamKind k);

struct UpstreamSpec {
  UpstreamKind kind = UpstreamKind::Ollama;
  std::string url;  // base URL without a trailing '/', e.g. http://127.0.0.1:11434
  std::string key;  // bearer key (OpenAI), may be empty
};

// "ollama:URL", "openai:URL" or "openai:URL#KEY" (a bare URL is Ollama);
// Error(400) when malformed.
UpstreamSpec parse_upstream(const std::string& s);

struct UpstreamOptions {
  std::chrono::milliseconds health_interval{15000};
  int failure_threshold = 3;                       // consecutive failures that open the circuit
  std::chrono::milliseconds cooldown{10000};       // skipped this long once open, then probed
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds backoff_base{50};      // retry i waits base * 2^i plus up to 100 % jitter
  int attempts_per_upstream = 2;
};

class Upstream {
 public:
  explicit Upstream(UpstreamSpec s) : spec(std::move(s)) {}
  const UpstreamSpec spec;
  std::string name() const;  // "ollama:URL" (the backend label in logs and metrics)

  bool healthy() const;  // circuit closed, or its cool-down is over (probe)
  bool up() const { return up_.load(); }
  std::vector<std::string> models() const;
  int64_t served() const { return served_.load(); }

  // Outcomes of requests and health checks.
  void success();
  void failure(std::chrono::milliseconds cooldown, int threshold);

 private:
  friend class Upstreams;
  mutable std::mutex mu_;
  std::vector<std::string> models_;
  int consecutive_failures_ = 0;
  std::chrono::steady_clock::time_point open_until_{};
  std::atomic<bool> up_{false};
  std::atomic<int64_t> served_{0};
};

// One proxied exchange: what the caller sends for an upstream of a kind, and
// what it receives. The exchange runs on its own thread; the callbacks run there.
struct ProxyPlan {
  // Path (under the base URL) and body for an upstream of this kind; an
  // empty path skips that upstream (e.g. no translation for that flavour).
  std::function<std::pair<std::string, std::string>(const Upstream&)> build;
  // Non-streaming: the whole body is received before anything is passed on,
  // so a failure anywhere in the transfer can still be retried elsewhere.
  bool stream = false;
  std::string request_id;  // sent as X-Request-Id (the upstream's logs name the same request)
};

// State shared by a running exchange and the HTTP response that relays it.
struct ProxyState {
  std::mutex mu;
  bool committed = false;   // status known, upstream chosen
  bool done = false;        // transfer over
  bool failed = false;      // every upstream failed (error set)
  int status = 0;
  std::string content_type;
  std::string pending;      // body bytes not yet taken by the client
  std::string error;
  std::shared_ptr<Upstream> upstream;  // the one that answered
  std::function<void()> notify;
  std::atomic<bool> cancelled{false};
  void wake();
};

class Upstreams {
 public:
  Upstreams(std::vector<UpstreamSpec> specs, UpstreamOptions options = {});
  ~Upstreams();  // stop()
  Upstreams(const Upstreams&) = delete;
  Upstreams& operator=(const Upstreams&) = delete;

  // Lists every upstream's models once (bounded by the connect timeout), then
  // keeps refreshing them on a thread.
  void start();
  void stop();

  const std::vector<std::shared_ptr<Upstream>>& all() const { return ups_; }
  // Model names offered by at least one upstream (sorted, unique).
  std::vector<std::string> models() const;
  bool has(const std::string& model) const;
  // The upstreams offering `model`, in the order to try them: healthy ones
  // first, round-robin, those of kind `prefer` before the others; then the
  // unhealthy ones (last resort).
  std::vector<std::shared_ptr<Upstream>> candidates(const std::string& model, UpstreamKind prefer);

  // Starts the exchange on a thread; the returned state is filled as it runs.
  std::shared_ptr<ProxyState> start_proxy(const std::string& model, UpstreamKind prefer, ProxyPlan plan);

  // Lists one upstream's models now (health check); false when it failed.
  bool refresh(Upstream& u);
  const UpstreamOptions& options() const { return opts_; }

 private:
  // Static: a detached exchange must not outlive-reference the pool (shutdown).
  static void run_proxy(std::shared_ptr<ProxyState> st, std::vector<std::shared_ptr<Upstream>> cands, ProxyPlan plan,
                        UpstreamOptions opts_);
  std::vector<std::shared_ptr<Upstream>> ups_;
  UpstreamOptions opts_;
  std::atomic<uint64_t> rr_{0};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread refresher_;
};

}  // namespace lmhost::gateway
