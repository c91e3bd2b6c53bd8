// The production layer in front of the APIs: API keys (401/403), rate limits
// (429 with Retry-After and X-RateLimit-*), MAX_CONCURRENT_REQUESTS (503),
// request budgets, one JSON access-log line per request, Prometheus metrics at
// GET /metrics, GET /ready and GET /info. Order in the request path:
// auth -> rate limit -> concurrency -> handler. /admin/* takes only the admin
// key (ADMIN_KEY): 401 without a key, 403 with any other, 403 when none is set.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "config/config.h"
#include "engine/model_pool.h"
#include "gateway/auth.h"
#include "gateway/embed_cache.h"
#include "gateway/ratelimit.h"
#include "observe/metrics.h"
#include "server/http.h"

namespace lmhost::api {

struct BuildInfo {
  std::string version = "0.1.0";
  std::string build;  // compiler / build type
};

class Production {
 public:
  // Throws lmhost::Error for bad keys (file unreadable, duplicate names).
  Production(const config::Config& cfg, std::shared_ptr<ModelPool> pool,
             std::shared_ptr<gateway::EmbeddingCache> cache = nullptr, BuildInfo build = {});
  ~Production();

  // Adds GET /metrics, /ready, /info and the middleware. Call after register_routes.
  void install(server::Router& router);
  // For ServerOptions::on_complete: access log line + request metrics.
  void on_complete(const server::HttpRequest& req, int status, const std::string& note);
  // SIGTERM: /ready answers 503 from now on.
  void set_draining(bool d) { draining_ = d; }
  bool draining() const { return draining_.load(); }
  bool ready() const;

  observe::Registry& metrics() { return reg_; }
  const gateway::KeyStore& keys() const { return keys_; }
  gateway::RateLimiter& limiter() { return *limiter_; }
  // One line for start-up: who may call (keys or open).
  void log_startup(const std::string& host, int port) const;
  int64_t in_flight() const { return in_flight_->load(); }

 private:
  std::optional<server::HttpResponse> middleware(server::HttpRequest& req);
  server::HttpResponse error(const server::HttpRequest& req, int status, const std::string& msg) const;

  config::Config cfg_;
  std::shared_ptr<ModelPool> pool_;
  std::shared_ptr<gateway::EmbeddingCache> cache_;
  BuildInfo build_;
  gateway::KeyStore keys_;
  gateway::KeyStore admin_keys_;  // the admin key (auth.admin_key / ADMIN_KEY); empty: /admin/* is off
  std::unique_ptr<gateway::RateLimiter> limiter_;
  observe::Registry reg_;
  std::atomic<bool> draining_{false};
  std::shared_ptr<std::atomic<int64_t>> in_flight_ = std::make_shared<std::atomic<int64_t>>(0);
  server::ErrorFormatter error_fmt_;
  // Families (owned by reg_).
  observe::Family* upstream_requests_ = nullptr;  // by backend (proxied requests)
  observe::Family *requests_, *duration_, *ttft_, *tpot_, *queue_wait_, *prompt_tokens_, *completion_tokens_,
      *rate_limited_, *auth_failures_, *in_flight_gauge_;
};

}  // namespace lmhost::api
