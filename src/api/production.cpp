#include "api/production.h"

#include <unistd.h>

#include <cmath>

#include "api/common.h"
#include "observe/log.h"

namespace lmhost::api {

namespace {

bool is_open_route(const std::string& route, const config::Config& c) {
  if (route == "/health" || route == "/ready" || route == "/info") return !c.protect_health;
  if (route == "/metrics") return !c.protect_metrics;
  return false;
}

// Operational routes are neither rate limited nor counted as work in flight.
bool is_ops_route(const std::string& route) {
  return route == "/health" || route == "/ready" || route == "/info" || route == "/metrics";
}

std::string client_ip(const std::string& remote) {
  const size_t c = remote.rfind(':');
  return c == std::string::npos ? remote : remote.substr(0, c);
}

std::string ceil_s(double s) { return std::to_string(static_cast<int64_t>(std::ceil(std::max(0.0, s)))); }

bool loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "local";
  return buf;
}

// The prompt text of a request body, for LOG_PROMPTS.
std::string prompt_of(const std::string& body) {
  json b = json::parse(body, nullptr, false);
  if (!b.is_object()) return "";
  for (const char* k : {"messages", "prompt", "input", "text", "content"}) {
    auto it = b.find(k);
    if (it == b.end()) continue;
    return it->is_string() ? it->get<std::string>() : dump(*it);
  }
  return "";
}

}  // namespace

Production::Production(const config::Config& cfg, std::shared_ptr<ModelPool> pool,
                       std::shared_ptr<gateway::EmbeddingCache> cache, BuildInfo build)
    : cfg_(cfg), pool_(std::move(pool)), cache_(std::move(cache)), build_(std::move(build)) {
  if (cfg_.instance_id.empty()) cfg_.instance_id = hostname();
  for (const auto& k : cfg_.keys) {
    gateway::KeyLimits l{k.limits.requests_per_minute, k.limits.burst, k.limits.tokens_per_minute};
    if (!k.key.empty()) {
      keys_.add_plain(k.name, k.key, k.models, l);
    } else {
      gateway::ApiKey a;
      a.name = k.name;
      a.hash = *gateway::digest_from_hex(k.sha256);
      a.models = k.models;
      a.limits = l;
      keys_.add(std::move(a));
    }
  }
  if (!cfg_.keys_file.empty()) keys_.load_file(cfg_.keys_file);
  if (!cfg_.admin_key.empty()) admin_keys_.add_plain("admin", cfg_.admin_key);
  else if (!cfg_.admin_key_sha256.empty()) {
    gateway::ApiKey a;
    a.name = "admin";
    a.hash = *gateway::digest_from_hex(cfg_.admin_key_sha256);
    admin_keys_.add(std::move(a));
  }

  bool limits = cfg_.rate_limit_rpm > 0 || cfg_.rate_limit_tpm > 0;
  for (const auto& k : keys_.keys())
    limits = limits || k.limits.requests_per_minute > 0 || k.limits.tokens_per_minute > 0;
  gateway::RateLimiterOptions ro;
  if (limits) ro.redis_url = cfg_.limits_redis_url();
  ro.on_redis_error = gateway::parse_on_redis_error(cfg_.rate_limit_on_redis_error);
  limiter_ = std::make_unique<gateway::RateLimiter>(ro);

  auto& r = reg_;
  requests_ = &r.counter("lmhost_http_requests_total", "HTTP requests by route pattern, model and status.",
                         {"route", "model", "status"});
  upstream_requests_ = &r.counter("lmhost_upstream_requests_total",
                                  "Requests proxied to an upstream, by backend, model and status.",
                                  {"backend", "model", "status"});
  duration_ = &r.histogram("lmhost_http_request_duration_seconds",
                           "Time from request received to response done (streams: last byte).", {"route"},
                           observe::latency_buckets());
  ttft_ = &r.histogram("lmhost_time_to_first_token_seconds", "Time from submit to the first generated token.",
                       {"model"}, observe::latency_buckets());
  tpot_ = &r.histogram("lmhost_time_per_output_token_seconds", "Mean time between output tokens of a request.",
                       {"model"}, observe::token_time_buckets());
  queue_wait_ = &r.histogram("lmhost_queue_wait_seconds", "Time a generation waited for a slot.", {"model"},
                             observe::latency_buckets());
  prompt_tokens_ = &r.counter("lmhost_prompt_tokens_total", "Prompt tokens processed.", {"model"});
  completion_tokens_ = &r.counter("lmhost_completion_tokens_total", "Tokens generated.", {"model"});
  rate_limited_ = &r.counter("lmhost_rate_limited_requests_total", "Requests refused by a rate limit.",
                             {"key", "limit"});
  auth_failures_ = &r.counter("lmhost_auth_failures_total", "Requests refused by authentication.", {"reason"});
  in_flight_gauge_ = &r.gauge("lmhost_requests_in_flight", "API requests being served now.");

  auto& queue = r.gauge("lmhost_queue_depth", "Requests waiting for a slot or a batch.", {"model"});
  auto& active = r.gauge("lmhost_active_sequences", "Sequences being decoded now.", {"model"});
  auto& state = r.gauge("lmhost_model_state", "1 for the state each model is in.", {"model", "state"});
  auto& loaded = r.gauge("lmhost_models_loaded", "Models loaded and ready.");
  auto& rss = r.gauge("lmhost_process_resident_memory_bytes", "Resident memory of the process.");
  auto& vms = r.gauge("lmhost_process_virtual_memory_bytes", "Virtual memory of the process.");
  auto& start = r.gauge("lmhost_process_start_time_seconds", "Start time of the process (unix seconds).");
  auto& up = r.gauge("lmhost_uptime_seconds", "Seconds since start.");
  auto& draining = r.gauge("lmhost_draining", "1 while shutting down (not ready).");
  auto& info = r.gauge("lmhost_build_info", "Build information (always 1).", {"version", "build", "instance"});
  info.set({build_.version, build_.build, cfg_.instance_id}, 1);
  auto& rl_up = r.gauge("lmhost_rate_limiter_redis_up", "1 when the rate limiter's Redis answers (0 without Redis).");
  auto& rl_err = r.counter("lmhost_rate_limiter_redis_errors_total", "Failed Redis calls of the rate limiter.");
  auto& rl_out = r.counter("lmhost_rate_limiter_redis_outages_total", "Redis outages seen by the rate limiter.");
  auto& rl_deg = r.counter("lmhost_rate_limiter_degraded_decisions_total",
                           "Rate-limit decisions taken without Redis (per on_redis_error).");
  r.on_collect([=, this, &queue, &active, &state, &loaded, &rss, &vms, &start, &up, &draining, &rl_up, &rl_err,
                &rl_out, &rl_deg] {
    int n_loaded = 0;
    for (const auto& m : pool_->list()) {
      for (const char* s : {"loading", "ready", "error", "unloaded"}) state.set({m->name(), s}, 0);
      state.set({m->name(), model_state_name(m->state())}, 1);
      if (m->state() != ModelState::Ready) continue;
      ++n_loaded;
      if (m->is_embedding()) {
        const auto st = m->embedder().stats();
        queue.set({m->name()}, st.queued);
        active.set({m->name()}, 0);
      } else {
        const auto st = m->scheduler().stats();
        queue.set({m->name()}, st.queued);
        active.set({m->name()}, st.active);
      }
    }
    loaded.set({}, n_loaded);
    rss.set({}, static_cast<double>(observe::resident_memory_bytes()));
    vms.set({}, static_cast<double>(observe::virtual_memory_bytes()));
    start.set({}, observe::process_start_time_seconds());
    up.set({}, observe::uptime_seconds());
    draining.set({}, draining_.load() ? 1 : 0);
    in_flight_gauge_->set({}, static_cast<double>(in_flight_->load()));
    rl_up.set({}, limiter_->redis_up() ? 1 : 0);
    rl_err.set({}, static_cast<double>(limiter_->redis_errors()));
    rl_out.set({}, static_cast<double>(limiter_->redis_outages()));
    rl_deg.set({}, static_cast<double>(limiter_->degraded_decisions()));
  });
  if (cache_) r.add_text_source([c = cache_] { return c->metrics_text(); });
}

Production::~Production() = default;

bool Production::ready() const {
  // Ready once no model is still loading at start-up (a load balancer would
  // otherwise send requests that get 503 "still loading") and at least one
  // model can serve; a failed model does not hold readiness back.
  if (draining_.load()) return false;
  bool any = false;
  for (const auto& m : pool_->list()) {
    const bool first_load = m->loaded_at() == std::chrono::system_clock::time_point{};
    if (m->state() == ModelState::Loading && m->preload() && first_load) return false;
    any = any || m->available();  // Ready, or Unloaded (loads on use)
  }
  return any;
}

server::HttpResponse Production::error(const server::HttpRequest& req, int status, const std::string& msg) const {
  return error_fmt_ ? error_fmt_(req, status, msg) : server::default_error(req, status, msg);
}

void Production::log_startup(const std::string& host, int port) const {
  if (!keys_.empty()) {
    observe::log_info("authentication on", {{"keys", static_cast<int64_t>(keys_.size())},
                                             {"health_open", !cfg_.protect_health},
                                             {"metrics_open", !cfg_.protect_metrics}});
    return;
  }
  if (loopback(host)) {
    observe::log_warn("no API keys configured: the server is open to every local client",
                      {{"host", host}, {"port", static_cast<int64_t>(port)},
                       {"hint", "set API_KEYS, API_KEYS_FILE (lmhost keys add NAME) or auth.keys"}});
  } else {
    observe::log_error(
        "NO API KEYS CONFIGURED AND LISTENING BEYOND LOOPBACK: ANYONE WHO CAN REACH THIS ADDRESS CAN USE THE SERVER",
        {{"host", host}, {"port", static_cast<int64_t>(port)},
         {"hint", "set API_KEYS, API_KEYS_FILE (lmhost keys add NAME) or auth.keys, or listen on 127.0.0.1"}});
  }
}

std::optional<server::HttpResponse> Production::middleware(server::HttpRequest& req) {
  auto& info = *req.info;
  const std::string& route = info.route;
  info.max_input_tokens = cfg_.max_input_tokens;
  info.max_tokens_cap = cfg_.max_tokens_cap;
  if (is_open_route(route, cfg_)) return std::nullopt;

  // 0. The admin API: only the admin key (API keys cannot use it); not rate limited.
  if (route.rfind("/admin/", 0) == 0) {
    if (admin_keys_.empty()) {
      auth_failures_->inc({"admin_disabled"});
      return error(req, 403,
                   "the admin API is disabled: set an admin key (ADMIN_KEY, auth.admin_key or auth.admin_key_sha256) "
                   "and restart lmhost to enable it");
    }
    auto presented = gateway::presented_key(req.header("authorization"), req.header("x-api-key"));
    if (!presented) {
      auth_failures_->inc({"admin_missing"});
      auto res = error(req, 401, "the admin API needs the admin key: send it as 'Authorization: Bearer KEY' or in an "
                                 "'x-api-key' header");
      res.headers.emplace_back("WWW-Authenticate", "Bearer");
      return res;
    }
    if (!admin_keys_.find(*presented)) {
      auth_failures_->inc({"admin_forbidden"});
      return error(req, 403, "this key may not use the admin API: it needs the admin key (ADMIN_KEY), API keys "
                             "are not enough");
    }
    info.key_name = "admin";
    return std::nullopt;
  }

  // 1. Authentication.
  const gateway::ApiKey* key = nullptr;
  if (!keys_.empty()) {
    auto presented = gateway::presented_key(req.header("authorization"), req.header("x-api-key"));
    if (!presented) {
      auth_failures_->inc({"missing"});
      auto res = error(req, 401,
                       "an API key is required: send it as 'Authorization: Bearer KEY' or in an 'x-api-key' header");
      res.headers.emplace_back("WWW-Authenticate", "Bearer");
      return res;
    }
    key = keys_.find(*presented);
    if (!key) {
      auth_failures_->inc({"invalid"});
      auto res = error(req, 401, "the API key is not valid");
      res.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
      return res;
    }
    info.key_name = key->name;
    if (!key->models.empty()) {
      info.authorize_model = [key, this](const std::string& model) {
        if (!key->allows_model(model)) {
          auth_failures_->inc({"model_forbidden"});
          throw Error("the API key '" + key->name + "' may not use the model '" + model + "'", 403);
        }
      };
    }
  }
  if (is_ops_route(route)) return std::nullopt;

  // 2. Rate limits: per key, else per client address.
  const std::string who = key ? "key:" + key->name : "ip:" + client_ip(req.remote);
  const std::string label = key ? key->name : "anonymous";
  gateway::BucketSpec rpm{static_cast<double>(key && key->limits.requests_per_minute >= 0 ? key->limits.requests_per_minute
                                                                                          : cfg_.rate_limit_rpm),
                          static_cast<double>(key && key->limits.burst >= 0 ? key->limits.burst : cfg_.rate_limit_burst)};
  if (rpm.per_minute > 0) {
    const gateway::Decision d = limiter_->take(who + ":req", rpm);
    if (d.unavailable) {
      auto res = error(req, 503, "the rate limiter is unavailable (Redis is down and rate_limit.on_redis_error is closed)");
      res.headers.emplace_back("Retry-After", "1");
      return res;
    }
    std::vector<std::pair<std::string, std::string>> h = {{"X-RateLimit-Limit", std::to_string(d.limit)},
                                                          {"X-RateLimit-Remaining", std::to_string(d.remaining)},
                                                          {"X-RateLimit-Reset", ceil_s(d.reset_s)}};
    if (!d.allowed) {
      rate_limited_->inc({label, "requests"});
      auto res = error(req, 429,
                       "rate limit exceeded: " + std::to_string(d.limit) + " requests per minute (burst " +
                           std::to_string(static_cast<int64_t>(rpm.burst)) + ") for " +
                           (key ? "API key '" + key->name + "'" : "this client address") + "; retry in " +
                           ceil_s(std::max(1.0, d.retry_after_s)) + " s");
      res.headers.emplace_back("Retry-After", ceil_s(std::max(1.0, d.retry_after_s)));
      res.headers.insert(res.headers.end(), h.begin(), h.end());
      return res;
    }
    info.response_headers = std::move(h);
  }
  const int64_t tpm_v = key && key->limits.tokens_per_minute >= 0 ? key->limits.tokens_per_minute : cfg_.rate_limit_tpm;
  if (tpm_v > 0) {
    gateway::BucketSpec tpm{static_cast<double>(tpm_v), 0};
    const gateway::Decision d = limiter_->take(who + ":tok", tpm, 1e-9, 0);
    if (!d.allowed && !d.unavailable) {
      rate_limited_->inc({label, "tokens"});
      auto res = error(req, 429, "token budget exceeded: " + std::to_string(tpm_v) + " tokens per minute for " +
                                     (key ? "API key '" + key->name + "'" : "this client address") + "; retry in " +
                                     ceil_s(std::max(1.0, d.retry_after_s)) + " s");
      res.headers.emplace_back("Retry-After", ceil_s(std::max(1.0, d.retry_after_s)));
      res.headers.emplace_back("X-RateLimit-Limit-Tokens", std::to_string(tpm_v));
      res.headers.emplace_back("X-RateLimit-Remaining-Tokens", "0");
      return res;
    }
  }

  // 3. Work in flight.
  const int64_t now = in_flight_->fetch_add(1) + 1;
  info.hold = std::shared_ptr<void>(nullptr, [c = in_flight_](void*) { c->fetch_sub(1); });
  if (cfg_.max_concurrent_requests > 0 && now > cfg_.max_concurrent_requests) {
    info.hold.reset();
    auto res = error(req, 503, "the server is busy: " + std::to_string(cfg_.max_concurrent_requests) +
                                   " requests in flight (MAX_CONCURRENT_REQUESTS); retry shortly");
    res.headers.emplace_back("Retry-After", "1");
    return res;
  }
  return std::nullopt;
}

void Production::on_complete(const server::HttpRequest& req, int status, const std::string& note_in) {
  const auto& info = *req.info;
  const std::string route = info.route.empty() ? "unmatched" : info.route;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - req.received).count();
  requests_->inc({route, info.model, std::to_string(status)});
  if (!info.backend.empty()) upstream_requests_->inc({info.backend, info.model, std::to_string(status)});
  duration_->observe({route}, secs);
  if (!info.model.empty()) {
    if (info.ttft_ms >= 0) ttft_->observe({info.model}, info.ttft_ms / 1000);
    if (info.per_token_ms >= 0) tpot_->observe({info.model}, info.per_token_ms / 1000);
    if (info.queue_ms >= 0) queue_wait_->observe({info.model}, info.queue_ms / 1000);
    if (info.prompt_tokens > 0) prompt_tokens_->inc({info.model}, static_cast<double>(info.prompt_tokens));
    if (info.completion_tokens > 0) completion_tokens_->inc({info.model}, static_cast<double>(info.completion_tokens));
  }
  // Token budgets are charged with what was used.
  const int64_t used = std::max<int64_t>(0, info.prompt_tokens) + std::max<int64_t>(0, info.completion_tokens);
  if (used > 0) {
    const gateway::ApiKey* key = nullptr;
    for (const auto& k : keys_.keys())
      if (!info.key_name.empty() && k.name == info.key_name) key = &k;
    const int64_t tpm = key && key->limits.tokens_per_minute >= 0 ? key->limits.tokens_per_minute : cfg_.rate_limit_tpm;
    if (tpm > 0) {
      const std::string who = key ? "key:" + key->name : "ip:" + client_ip(req.remote);
      limiter_->charge(who + ":tok", {static_cast<double>(tpm), 0}, static_cast<double>(used));
    }
  }
  if (!cfg_.log_requests) return;
  const observe::Level lvl = status >= 500 ? observe::Level::Error : observe::Level::Info;
  if (!observe::Logger::global().enabled(lvl)) return;
  std::string note = note_in;
  while (!note.empty() && (note.front() == ' ' || note.front() == '(')) note.erase(note.begin());
  while (!note.empty() && note.back() == ')') note.pop_back();
  observe::Fields f = {{"request_id", req.id},
                       {"method", req.method},
                       {"path", req.path},
                       {"route", info.route},
                       {"status", status},
                       {"duration_ms", secs * 1000},
                       {"client", req.remote}};
  if (!info.model.empty()) f.emplace_back("model", info.model);
  if (!info.model_version.empty()) f.emplace_back("version", info.model_version);
  if (!info.key_name.empty()) f.emplace_back("key", info.key_name);
  if (!info.backend.empty()) f.emplace_back("backend", info.backend);
  if (info.prompt_tokens >= 0) f.emplace_back("prompt_tokens", info.prompt_tokens);
  if (info.completion_tokens >= 0) f.emplace_back("completion_tokens", info.completion_tokens);
  if (info.ttft_ms >= 0) f.emplace_back("ttft_ms", info.ttft_ms);
  if (!note.empty()) f.emplace_back("note", note);
  if (cfg_.log_prompts && !req.body.empty()) f.emplace_back("prompt", prompt_of(req.body));
  observe::Logger::global().log(lvl, "request", f);
}

void Production::install(server::Router& router) {
  error_fmt_ = router.error_formatter();
  router.set_middleware([this](server::HttpRequest& req) { return middleware(req); });
  router.add("GET", "/metrics", [this](server::HttpRequest&) {
    auto res = server::HttpResponse::text(200, reg_.exposition());
    res.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return res;
  });
  router.add("GET", "/ready", [this](server::HttpRequest&) {
    json models = json::object();
    for (const auto& m : pool_->list()) models[m->name()] = model_state_name(m->state());
    const bool ok = ready();
    json body{{"ready", ok}, {"draining", draining()}, {"models", models}};
    auto res = server::HttpResponse::json(ok ? 200 : 503, dump(body));
    if (!ok) res.headers.emplace_back("Retry-After", "1");
    return res;
  });
  router.add("GET", "/info", [this](server::HttpRequest&) {
    json models = json::array();
    for (const auto& m : pool_->list()) {
      json e{{"name", m->name()}, {"state", model_state_name(m->state())}, {"demo", m->demo()}};
      if (m->state() == ModelState::Ready) {
        e["architecture"] = m->architecture();
        e["quantization"] = m->quantization();
        e["parameters"] = m->parameters();
        e["embedding"] = m->is_embedding();
      }
      models.push_back(std::move(e));
    }
    json body{{"instance_id", cfg_.instance_id},
              {"version", build_.version},
              {"build", build_.build},
              {"status", draining() ? "draining" : ready() ? "ready" : "not_ready"},
              {"uptime_seconds", std::round(observe::uptime_seconds() * 1000) / 1000},
              {"default_model", cfg_.default_model},
              {"auth", keys_.empty() ? "open" : "api_key"},
              {"admin_api", !admin_keys_.empty()},
              {"models", models}};
    return server::HttpResponse::json(200, dump(body));
  });
}

}  // namespace lmhost::api
