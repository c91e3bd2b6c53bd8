#include "gateway/ratelimit.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "observe/log.h"
#include "util/error.h"

namespace lmhost::gateway {

namespace {

using Clock = std::chrono::steady_clock;

// KEYS[1] bucket; ARGV: refill per ms, capacity, need, cost. Redis' clock.
// Returns {allowed (0/1), tokens left as text}.
constexpr const char* kScript = R"lua(
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then tokens = cap; ts = now end
if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) end
local allowed = 0
if tokens >= need then allowed = 1; tokens = tokens - cost end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.3f', now))
local ttl = math.ceil((cap - tokens) / rate) + 1000
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, string.format('%.6f', tokens)}
)lua";

void fill(Decision& d, const BucketSpec& spec, double tokens, double need) {
  const double rate_per_s = spec.per_minute / 60.0;
  d.limit = static_cast<int64_t>(std::llround(spec.per_minute));
  d.remaining = std::max<int64_t>(0, static_cast<int64_t>(std::floor(tokens)));
  d.reset_s = rate_per_s > 0 ? std::max(0.0, (spec.capacity() - tokens) / rate_per_s) : 0;
  d.retry_after_s = !d.allowed && rate_per_s > 0 ? std::max(0.0, (need - tokens) / rate_per_s) : 0;
}

}  // namespace

OnRedisError parse_on_redis_error(const std::string& s) {
  if (s == "open") return OnRedisError::Open;
  if (s == "local") return OnRedisError::Local;
  if (s == "closed") return OnRedisError::Closed;
  throw Error("rate_limit.on_redis_error must be open, local or closed, not '" + s + "'");
}

RateLimiter::RateLimiter(RateLimiterOptions opts) : opts_(std::move(opts)) {
  if (opts_.redis_url.empty()) return;
  std::string rest = opts_.redis_url;
  if (rest.rfind("redis://", 0) != 0) throw Error("the rate-limit Redis URL must start with redis://");
  rest = rest.substr(8);
  const size_t at = rest.rfind('@');
  if (at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    const size_t colon = cred.find(':');
    password_ = colon == std::string::npos ? cred : cred.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty()) db_ = std::atoi(db.c_str());
    rest = rest.substr(0, slash);
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    port_ = std::atoi(rest.substr(colon + 1).c_str());
    rest = rest.substr(0, colon);
  }
  host_ = rest.empty() ? "127.0.0.1" : rest;
  if (port_ <= 0 || port_ > 65535) throw Error("the rate-limit Redis URL has a bad port");
}

RateLimiter::~RateLimiter() {
  if (ctx_) redisFree(static_cast<redisContext*>(ctx_));
}

Decision RateLimiter::take_local(const std::string& key, const BucketSpec& spec, double need, double cost) {
  const auto now = Clock::now();
  const double rate_per_s = spec.per_minute / 60.0;
  std::lock_guard lk(mu_);
  if (local_.size() >= opts_.max_local_buckets && !local_.count(key)) {
    // Drop buckets that have refilled completely (they equal a fresh one).
    for (auto it = local_.begin(); it != local_.end();) {
      const double t = it->second.tokens + std::chrono::duration<double>(now - it->second.last).count() * rate_per_s;
      it = t >= spec.capacity() ? local_.erase(it) : std::next(it);
    }
  }
  auto [it, fresh] = local_.try_emplace(key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = spec.capacity();
    b.last = now;
  } else {
    b.tokens = std::min(spec.capacity(), b.tokens + std::chrono::duration<double>(now - b.last).count() * rate_per_s);
    b.last = now;
  }
  Decision d;
  d.allowed = b.tokens >= need;
  if (d.allowed) b.tokens -= cost;
  fill(d, spec, b.tokens, need);
  return d;
}

bool RateLimiter::ensure_connected() {
  if (ctx_) return true;
  const auto now = Clock::now();
  if (now < next_try_) return false;
  timeval tv{static_cast<time_t>(opts_.timeout.count() / 1000),
             static_cast<suseconds_t>((opts_.timeout.count() % 1000) * 1000)};
  redisContext* c = redisConnectWithTimeout(host_.c_str(), port_, tv);
  if (!c || c->err) {
    const std::string why = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    on_failure("cannot connect to Redis at " + host_ + ":" + std::to_string(port_) + ": " + why);
    return false;
  }
  redisSetTimeout(c, tv);
  ctx_ = c;
  auto simple = [&](std::vector<std::string> args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto& a : args) argv.push_back(a.data()), lens.push_back(a.size());
    auto* r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    const bool ok = r && r->type != REDIS_REPLY_ERROR;
    std::string err = r && r->type == REDIS_REPLY_ERROR ? r->str : (r ? "" : c->errstr);
    if (r) freeReplyObject(r);
    return ok ? std::string() : (err.empty() ? std::string("error") : err);
  };
  if (!password_.empty()) {
    if (auto e = simple({"AUTH", password_}); !e.empty()) {
      on_failure("Redis AUTH failed: " + e);
      return false;
    }
  }
  if (db_ != 0) {
    if (auto e = simple({"SELECT", std::to_string(db_)}); !e.empty()) {
      on_failure("Redis SELECT failed: " + e);
      return false;
    }
  }
  return true;
}

void RateLimiter::on_failure(const std::string& what) {
  ++errors_;
  if (ctx_) {
    redisFree(static_cast<redisContext*>(ctx_));
    ctx_ = nullptr;
  }
  up_ = false;
  if (!in_outage_) {
    in_outage_ = true;
    ++outages_;
    const char* mode = opts_.on_redis_error == OnRedisError::Open    ? "open: requests are admitted without limits"
                       : opts_.on_redis_error == OnRedisError::Local ? "local: per-process limits apply"
                                                                     : "closed: requests are refused (503)";
    observe::log_error("rate limiter: Redis unavailable", {{"error", what}, {"on_redis_error", mode}});
  }
  backoff_ = backoff_.count() == 0 ? opts_.backoff_min : std::min(opts_.backoff_max, backoff_ * 2);
  next_try_ = Clock::now() + backoff_;
}

bool RateLimiter::take_redis(const std::string& key, const BucketSpec& spec, double need, double cost, Decision& d) {
  std::lock_guard lk(redis_mu_);
  if (!ensure_connected()) return false;
  auto* c = static_cast<redisContext*>(ctx_);
  char rate[64], cap[64], needs[64], costs[64];
  std::snprintf(rate, sizeof rate, "%.12g", spec.per_minute / 60000.0);
  std::snprintf(cap, sizeof cap, "%.12g", spec.capacity());
  std::snprintf(needs, sizeof needs, "%.12g", need);
  std::snprintf(costs, sizeof costs, "%.12g", cost);
  const std::string full = opts_.prefix + key;
  const char* argv[] = {"EVAL", kScript, "1", full.c_str(), rate, cap, needs, costs};
  size_t lens[8];
  for (int i = 0; i < 8; ++i) lens[i] = std::strlen(argv[i]);
  lens[3] = full.size();
  auto* r = static_cast<redisReply*>(redisCommandArgv(c, 8, argv, lens));
  if (!r) {
    on_failure(std::string("Redis command failed: ") + c->errstr);
    return false;
  }
  const bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
                  (r->element[1]->type == REDIS_REPLY_STRING || r->element[1]->type == REDIS_REPLY_STATUS);
  if (!ok) {
    const std::string err = r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply to the rate-limit script";
    freeReplyObject(r);
    on_failure(err);
    return false;
  }
  d.allowed = r->element[0]->integer == 1;
  const double tokens = std::strtod(r->element[1]->str, nullptr);
  freeReplyObject(r);
  fill(d, spec, tokens, need);
  if (in_outage_) {
    in_outage_ = false;
    observe::log_info("rate limiter: Redis is back", {{"redis", host_ + ":" + std::to_string(port_)}});
  }
  backoff_ = std::chrono::milliseconds(0);
  up_ = true;
  return true;
}

Decision RateLimiter::take(const std::string& key, const BucketSpec& spec, double need, double cost) {
  if (spec.per_minute <= 0) return Decision{};
  if (opts_.redis_url.empty()) return take_local(key, spec, need, cost);
  Decision d;
  if (take_redis(key, spec, need, cost, d)) return d;
  ++degraded_;
  switch (opts_.on_redis_error) {
    case OnRedisError::Open: {
      Decision open;
      open.degraded = true;
      open.limit = static_cast<int64_t>(std::llround(spec.per_minute));
      open.remaining = open.limit;
      return open;
    }
    case OnRedisError::Local: {
      Decision l = take_local(key, spec, need, cost);
      l.degraded = true;
      return l;
    }
    case OnRedisError::Closed: {
      Decision no;
      no.allowed = false;
      no.unavailable = true;
      no.degraded = true;
      no.limit = static_cast<int64_t>(std::llround(spec.per_minute));
      no.retry_after_s = 1;
      return no;
    }
  }
  return d;
}

void RateLimiter::charge(const std::string& key, const BucketSpec& spec, double cost) {
  if (spec.per_minute <= 0 || cost <= 0) return;
  take(key, spec, -1e300, cost);
}

}  // namespace lmhost::gateway
