// Token-bucket rate limits. A bucket holds up to `requests_per_minute + burst`
// tokens and refills at requests_per_minute / 60 s; a request takes one token,
// so a fresh client may send limit + burst requests at once, then the rate.
// Token budgets (tokens per minute) use a second bucket that is checked before
// a request (it must not be in debt) and charged with the usage afterwards.
//
// Without Redis the buckets are per process. With a Redis URL they live in
// Redis and one Lua script updates a bucket atomically (Redis' clock), so
// every replica shares them. When Redis is down the limiter follows
// `on_redis_error`: open (admit), local (per-process buckets) or closed
// (refuse); outages are logged once each and counted, and Redis is retried
// with backoff.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace lmhost::gateway {

struct BucketSpec {
  double per_minute = 0;  // refill; 0 = unlimited
  double burst = 0;       // extra capacity on top of per_minute
  double capacity() const { return per_minute + burst; }
};

struct Decision {
  bool allowed = true;
  bool unavailable = false;  // closed mode with Redis down: refuse with 503
  int64_t limit = 0;         // X-RateLimit-Limit (per minute)
  int64_t remaining = 0;     // X-RateLimit-Remaining
  double retry_after_s = 0;  // until one token is back (when refused)
  double reset_s = 0;        // until the bucket is full again
  bool degraded = false;     // decided without Redis although it is configured
};

enum class OnRedisError { Open, Local, Closed };
// "open", "local", "closed"; throws lmhost::Error otherwise.
OnRedisError parse_on_redis_error(const std::string& s);

struct RateLimiterOptions {
  std::string redis_url;  // "" = per process
  OnRedisError on_redis_error = OnRedisError::Open;
  std::chrono::milliseconds timeout{100};
  std::chrono::milliseconds backoff_min{200}, backoff_max{5000};
  std::string prefix = "lmhost:rl:";
  size_t max_local_buckets = 100000;  // idle full buckets are dropped beyond this
};

class RateLimiter {
 public:
  explicit RateLimiter(RateLimiterOptions opts);  // Error on a bad Redis URL; connects lazily
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes `cost` tokens when the bucket holds at least `need` tokens.
  //  request limit: need 1, cost 1.
  //  token budget, before a request: need > 0 (not in debt), cost 0.
  //  token budget, after: charge() (the bucket may go into debt).
  Decision take(const std::string& key, const BucketSpec& spec, double need = 1, double cost = 1);
  void charge(const std::string& key, const BucketSpec& spec, double cost);

  bool redis_configured() const { return !opts_.redis_url.empty(); }
  bool redis_up() const { return up_.load(); }
  uint64_t redis_errors() const { return errors_.load(); }
  uint64_t redis_outages() const { return outages_.load(); }
  uint64_t degraded_decisions() const { return degraded_.load(); }
  const RateLimiterOptions& options() const { return opts_; }

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  Decision take_local(const std::string& key, const BucketSpec& spec, double need, double cost);
  bool take_redis(const std::string& key, const BucketSpec& spec, double need, double cost, Decision& d);
  bool ensure_connected();  // redis_mu_ held
  void on_failure(const std::string& what);  // redis_mu_ held

  RateLimiterOptions opts_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> local_;

  std::mutex redis_mu_;
  void* ctx_ = nullptr;  // redisContext*
  std::string host_, password_;
  int port_ = 6379, db_ = 0;
  bool in_outage_ = false;
  std::chrono::steady_clock::time_point next_try_{};
  std::chrono::milliseconds backoff_{0};
  std::atomic<bool> up_{false};
  std::atomic<uint64_t> errors_{0}, outages_{0}, degraded_{0};
};

}  // namespace lmhost::gateway
