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
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lmhost::observe {
class Registry;
}

namespace lmhost::gateway {

enum class UpstreamKind { Ollama, OpenAI };
const char* upstream_kind_name(UpstreamKind k);

struct UpstreamSpec {
  UpstreamKind kind = UpstreamKind::Ollama;
  std::string url;  // base URL without a trailing '/', e.g. http://127.0.0.1:11434
  std::string key;  // bearer key (OpenAI), may be empty
  // Names: without `models`, every model the upstream lists is offered as
  // prefix + its name; with `models`, only those (local name, upstream name)
  // pairs are (an empty local name means prefix + the upstream name).
  std::string prefix;
  std::vector<std::pair<std::string, std::string>> models;
};

// "KIND:URL[?prefix=P&models=M1+M2...][#KEY]" with KIND ollama or openai (a
// bare URL is Ollama); each Mi is NAME or LOCAL=REMOTE. Error(400) when malformed.
UpstreamSpec parse_upstream(const std::string& s);

// Ollama's naming: NAME and NAME:latest are the same model.
bool same_model(const std::string& listed, const std::string& asked);

// What to do with an upstream's HTTP answer (0: no answer, a connection error).
enum class Verdict {
  Serve,         // pass it to the client (success, or the request's own fault: 400, 413, 422...)
  RetrySame,     // transient (connection error, 5xx, 408): again with backoff, then the next upstream
  NextUpstream,  // this upstream cannot serve it (404 model gone, 429 busy, 401/403 our key refused): the next one
};
struct StatusPolicy {
  Verdict verdict;
  bool health_failure;  // counts towards the circuit breaker
};
StatusPolicy judge_status(long status);

enum class Balance { RoundRobin, LeastOutstanding };
Balance parse_balance(const std::string& s);  // "round_robin" | "least_outstanding"; Error(400) otherwise

// The order in which to try the upstreams offering a model: healthy ones
// first; round_robin: those of kind `prefer` (no translation) before the
// others; least_outstanding: fewest requests in flight first, then kind
// `prefer`; equals rotate by `turn` (a counter bumped per request).
struct CandidateInfo {
  bool healthy = true;
  int64_t in_flight = 0;
  UpstreamKind kind = UpstreamKind::Ollama;
};
std::vector<size_t> balance_order(const std::vector<CandidateInfo>& c, Balance b, UpstreamKind prefer, uint64_t turn);

struct UpstreamOptions {
  std::chrono::milliseconds health_interval{15000};
  int failure_threshold = 3;                       // consecutive failures that open the circuit
  std::chrono::milliseconds cooldown{10000};       // skipped this long once open, then probed
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds backoff_base{50};      // retry i waits base * 2^i plus up to 100 % jitter
  int attempts_per_upstream = 2;
  Balance balance = Balance::RoundRobin;
};

class Upstream {
 public:
  explicit Upstream(UpstreamSpec s) : spec(std::move(s)) {}
  const UpstreamSpec spec;
  std::string name() const;  // "ollama:URL" (the backend label in logs and metrics)

  bool healthy() const;  // circuit closed, or its cool-down is over (probe)
  bool up() const { return up_.load(); }
  std::vector<std::string> models() const;  // the names offered (after renaming)
  // The upstream's own name for an offered model, if it offers it.
  std::optional<std::string> remote_name(const std::string& asked) const;
  int64_t served() const { return served_.load(); }
  int64_t in_flight() const { return in_flight_.load(); }  // requests being sent / relayed now

  // What the upstream lists (its last health check); offered under the names of the spec.
  void set_listed(const std::vector<std::string>& listed);

  // Outcomes of requests and health checks.
  void success();
  void failure(std::chrono::milliseconds cooldown, int threshold);

 private:
  friend class Upstreams;
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> models_;  // (offered, upstream's name)
  int consecutive_failures_ = 0;
  std::chrono::steady_clock::time_point open_until_{};
  std::atomic<bool> up_{false};
  std::atomic<int64_t> served_{0};
  std::atomic<int64_t> in_flight_{0};
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
  int error_status = 502;   // when failed: 404 when every upstream lacked the model, 400 when none could take the request
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
  // The upstreams offering `model`, in the order to try them (balance_order;
  // the unhealthy ones last, as a last resort).
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

// Gauges lmhost_upstream_in_flight{backend} and lmhost_upstream_up{backend},
// refreshed at every scrape of `reg` (which keeps a reference to the pool).
void add_upstream_metrics(observe::Registry& reg, std::shared_ptr<Upstreams> ups);

}  // namespace lmhost::gateway
