#include "gateway/embed_cache.h"

#include <hiredis.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/time.h>

#include "util/error.h"

namespace lmhost::gateway {

namespace {

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

uint64_t hash64(const std::string& s, uint64_t seed) {
  uint64_t h = mix(seed ^ (s.size() * 0x9e3779b97f4a7c15ull));
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = mix(h ^ w) * 0x9e3779b97f4a7c15ull + seed;
  }
  uint64_t last = 0;
  std::memcpy(&last, s.data() + i, s.size() - i);
  return mix(h ^ last ^ (static_cast<uint64_t>(s.size() - i) << 56));
}

std::string hex(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

timeval to_tv(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<long>(ms.count() / 1000);
  tv.tv_usec = static_cast<long>((ms.count() % 1000) * 1000);
  return tv;
}

std::string bytes_of(const std::vector<float>& v) {
  std::string s(v.size() * sizeof(float), '\0');
  std::memcpy(s.data(), v.data(), s.size());  // little-endian hosts (x86-64)
  return s;
}

long env_long(const char* name, long def, long lo, long hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (!end || *end || x < lo || x > hi)
    throw Error(std::string("environment variable ") + name + "='" + v + "' must be an integer in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

}  // namespace

std::string cache_key(const std::string& model, const std::string& digest, const std::string& options,
                      const std::string& input) {
  std::string blob;
  blob.reserve(options.size() + input.size() + 1);
  blob += options;
  blob += '\0';
  blob += input;
  return model + ":" + digest + ":" + hex(hash64(blob, 0x5bd1e9955bd1e995ull)) + hex(hash64(blob, 0x27d4eb2f165667c5ull)) +
         ":" + std::to_string(input.size());
}

// ---------------------------------------------------------------- LRU

std::optional<std::vector<float>> LruCache::get(const std::string& key) {
  std::lock_guard lk(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  list_.splice(list_.begin(), list_, it->second);
  return it->second->second;
}

void LruCache::put(const std::string& key, std::vector<float> value) {
  if (cap_ == 0) return;
  std::lock_guard lk(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) {
    it->second->second = std::move(value);
    list_.splice(list_.begin(), list_, it->second);
    return;
  }
  list_.emplace_front(key, std::move(value));
  index_[key] = list_.begin();
  while (list_.size() > cap_) {
    index_.erase(list_.back().first);
    list_.pop_back();
  }
}

void LruCache::clear() {
  std::lock_guard lk(mu_);
  list_.clear();
  index_.clear();
}

size_t LruCache::size() const {
  std::lock_guard lk(mu_);
  return list_.size();
}

// ---------------------------------------------------------------- Redis

RedisCache::RedisCache(RedisOptions opts) : opts_(std::move(opts)) {
  std::string u = opts_.url;
  const std::string scheme = "redis://";
  if (u.rfind(scheme, 0) != 0) throw Error("REDIS_URL '" + opts_.url + "' must look like redis://host:port[/db]");
  u = u.substr(scheme.size());
  if (auto at = u.rfind('@'); at != std::string::npos) {
    std::string cred = u.substr(0, at);
    u = u.substr(at + 1);
    if (auto c = cred.find(':'); c != std::string::npos) password_ = cred.substr(c + 1);
    else password_ = cred;
  }
  if (auto sl = u.find('/'); sl != std::string::npos) {
    const std::string db = u.substr(sl + 1);
    u = u.substr(0, sl);
    if (!db.empty()) {
      char* end = nullptr;
      db_ = static_cast<int>(std::strtol(db.c_str(), &end, 10));
      if (!end || *end || db_ < 0) throw Error("REDIS_URL '" + opts_.url + "': bad database number '" + db + "'");
    }
  }
  if (auto c = u.rfind(':'); c != std::string::npos) {
    char* end = nullptr;
    const long p = std::strtol(u.c_str() + c + 1, &end, 10);
    if (!end || *end || p <= 0 || p > 65535) throw Error("REDIS_URL '" + opts_.url + "': bad port");
    port_ = static_cast<int>(p);
    u = u.substr(0, c);
  }
  host_ = u.empty() ? "127.0.0.1" : u;
}

RedisCache::~RedisCache() {
  if (ctx_) redisFree(static_cast<redisContext*>(ctx_));
}

void RedisCache::on_failure(const std::string& what) {
  if (ctx_) {
    redisFree(static_cast<redisContext*>(ctx_));
    ctx_ = nullptr;
  }
  ++errors_;
  up_ = false;
  if (!in_outage_) {
    in_outage_ = true;
    ++outages_;
    std::fprintf(stderr, "lmhost: embedding cache: Redis at %s:%d is unavailable (%s); serving without it until it is back\n",
                 host_.c_str(), port_, what.c_str());
  }
  backoff_ = backoff_.count() == 0 ? opts_.backoff_min : std::min(opts_.backoff_max, backoff_ * 2);
  next_try_ = std::chrono::steady_clock::now() + backoff_;
}

bool RedisCache::ensure_connected() {
  if (ctx_) return true;
  if (std::chrono::steady_clock::now() < next_try_) return false;
  redisContext* c = redisConnectWithTimeout(host_.c_str(), port_, to_tv(opts_.connect_timeout));
  if (!c || c->err) {
    const std::string msg = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    on_failure("connect: " + msg);
    return false;
  }
  redisSetTimeout(c, to_tv(opts_.command_timeout));
  ctx_ = c;
  auto simple = [&](std::vector<std::string> args) -> bool {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto& a : args) argv.push_back(a.data()), lens.push_back(a.size());
    auto* r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    const bool ok = r && r->type != REDIS_REPLY_ERROR;
    std::string err = r && r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : (c->err ? c->errstr : "");
    if (r) freeReplyObject(r);
    if (!ok) on_failure(args[0] + ": " + err);
    return ok;
  };
  if (!password_.empty() && !simple({"AUTH", password_})) return false;
  if (db_ != 0 && !simple({"SELECT", std::to_string(db_)})) return false;
  if (in_outage_ || !ever_connected_) {
    if (in_outage_)
      std::fprintf(stderr, "lmhost: embedding cache: Redis at %s:%d is back\n", host_.c_str(), port_);
    in_outage_ = false;
  }
  ever_connected_ = true;
  backoff_ = std::chrono::milliseconds(0);
  up_ = true;
  return true;
}

bool RedisCache::available() {
  std::lock_guard lk(mu_);
  return ensure_connected();
}

std::vector<std::optional<std::vector<float>>> RedisCache::get_many(const std::vector<std::string>& keys) {
  std::vector<std::optional<std::vector<float>>> out(keys.size());
  if (keys.empty()) return out;
  std::lock_guard lk(mu_);
  if (!ensure_connected()) return out;
  auto* c = static_cast<redisContext*>(ctx_);
  std::vector<std::string> full(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) full[i] = opts_.prefix + keys[i];
  std::vector<const char*> argv{"MGET"};
  std::vector<size_t> lens{4};
  for (auto& k : full) argv.push_back(k.data()), lens.push_back(k.size());
  auto* r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != keys.size()) {
    const std::string err = r && r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : (c->err ? c->errstr : "bad reply");
    if (r) freeReplyObject(r);
    on_failure("MGET: " + err);
    return out;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const redisReply* e = r->element[i];
    if (e->type == REDIS_REPLY_STRING && e->len > 0 && e->len % sizeof(float) == 0) {
      std::vector<float> v(e->len / sizeof(float));
      std::memcpy(v.data(), e->str, e->len);
      out[i] = std::move(v);
    }
  }
  freeReplyObject(r);
  return out;
}

void RedisCache::put_many(const std::vector<std::pair<std::string, const std::vector<float>*>>& items) {
  if (items.empty()) return;
  std::lock_guard lk(mu_);
  if (!ensure_connected()) return;
  auto* c = static_cast<redisContext*>(ctx_);
  const std::string ttl = std::to_string(opts_.ttl.count());
  for (const auto& [key, vec] : items) {
    const std::string k = opts_.prefix + key, v = bytes_of(*vec);
    const char* argv[] = {"SET", k.data(), v.data(), "EX", ttl.data()};
    const size_t lens[] = {3, k.size(), v.size(), 2, ttl.size()};
    if (redisAppendCommandArgv(c, 5, argv, lens) != REDIS_OK) {
      on_failure(std::string("SET: ") + c->errstr);
      return;
    }
  }
  for (size_t i = 0; i < items.size(); ++i) {
    void* rp = nullptr;
    if (redisGetReply(c, &rp) != REDIS_OK) {
      on_failure(std::string("SET: ") + c->errstr);
      return;
    }
    freeReplyObject(rp);
  }
}

bool RedisCache::clear() {
  std::lock_guard lk(mu_);
  if (!ensure_connected()) return false;
  auto* c = static_cast<redisContext*>(ctx_);
  std::string cursor = "0";
  const std::string pattern = opts_.prefix + "*";
  do {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "SCAN %s MATCH %b COUNT 1000", cursor.c_str(), pattern.data(), pattern.size()));
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      if (r) freeReplyObject(r);
      on_failure(std::string("SCAN: ") + (c->err ? c->errstr : "bad reply"));
      return false;
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    const redisReply* ks = r->element[1];
    if (ks->elements > 0) {
      std::vector<const char*> argv{"UNLINK"};
      std::vector<size_t> lens{6};
      for (size_t i = 0; i < ks->elements; ++i) argv.push_back(ks->element[i]->str), lens.push_back(ks->element[i]->len);
      auto* d = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
      const bool ok = d && d->type != REDIS_REPLY_ERROR;
      if (d) freeReplyObject(d);
      if (!ok) {
        freeReplyObject(r);
        on_failure("UNLINK failed");
        return false;
      }
    }
    freeReplyObject(r);
  } while (cursor != "0");
  return true;
}

int64_t RedisCache::size() {
  std::lock_guard lk(mu_);
  if (!ensure_connected()) return -1;
  auto* c = static_cast<redisContext*>(ctx_);
  int64_t n = 0;
  std::string cursor = "0";
  const std::string pattern = opts_.prefix + "*";
  int rounds = 0;
  do {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "SCAN %s MATCH %b COUNT 1000", cursor.c_str(), pattern.data(), pattern.size()));
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      if (r) freeReplyObject(r);
      on_failure("SCAN failed");
      return -1;
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    n += static_cast<int64_t>(r->element[1]->elements);
    freeReplyObject(r);
  } while (cursor != "0" && ++rounds < 1000);
  return n;
}

// ---------------------------------------------------------------- two tiers

CacheOptions CacheOptions::from_env() {
  CacheOptions o;
  o.lru_entries = static_cast<size_t>(env_long("CACHE_SIZE", 1000, 0, 100'000'000));
  if (const char* u = std::getenv("REDIS_URL"); u && *u) o.redis_url = u;
  o.ttl = std::chrono::seconds(env_long("CACHE_TTL_SECONDS", 3600, 1, 365L * 24 * 3600));
  return o;
}

EmbeddingCache::EmbeddingCache(CacheOptions opts) : opts_(std::move(opts)), lru_(opts_.lru_entries) {
  if (!opts_.redis_url.empty()) {
    RedisOptions ro;
    ro.url = opts_.redis_url;
    ro.ttl = opts_.ttl;
    ro.connect_timeout = opts_.redis_timeout;
    ro.command_timeout = opts_.redis_timeout;
    redis_ = std::make_unique<RedisCache>(ro);
  }
}

std::vector<std::optional<std::vector<float>>> EmbeddingCache::get_many(const std::vector<std::string>& keys) {
  std::vector<std::optional<std::vector<float>>> out(keys.size());
  std::vector<size_t> rest;
  for (size_t i = 0; i < keys.size(); ++i) {
    out[i] = lru_.get(keys[i]);
    if (out[i]) ++mem_hits_;
    else ++mem_misses_, rest.push_back(i);
  }
  if (redis_ && !rest.empty()) {
    std::vector<std::string> rk;
    for (size_t i : rest) rk.push_back(keys[i]);
    auto got = redis_->get_many(rk);
    for (size_t j = 0; j < rest.size(); ++j) {
      if (got[j]) {
        ++redis_hits_;
        lru_.put(keys[rest[j]], *got[j]);
        out[rest[j]] = std::move(got[j]);
      } else {
        ++redis_misses_;
      }
    }
  }
  return out;
}

void EmbeddingCache::put_many(const std::vector<std::string>& keys, const std::vector<std::vector<float>>& values) {
  std::vector<std::pair<std::string, const std::vector<float>*>> items;
  for (size_t i = 0; i < keys.size() && i < values.size(); ++i) {
    lru_.put(keys[i], values[i]);
    items.emplace_back(keys[i], &values[i]);
  }
  if (redis_) redis_->put_many(items);
}

void EmbeddingCache::clear() {
  lru_.clear();
  if (redis_) redis_->clear();
}

CacheStats EmbeddingCache::stats(bool with_redis_size) {
  CacheStats s;
  s.memory_hits = mem_hits_;
  s.memory_misses = mem_misses_;
  s.memory_size = lru_.size();
  s.memory_capacity = lru_.capacity();
  s.redis_enabled = redis_ != nullptr;
  if (redis_) {
    s.redis_hits = redis_hits_;
    s.redis_misses = redis_misses_;
    s.redis_errors = redis_->errors();
    s.redis_outages = redis_->outages();
    if (with_redis_size) s.redis_size = redis_->size();
    s.redis_up = redis_->up();
  }
  return s;
}

std::string EmbeddingCache::metrics_text() {
  const CacheStats s = stats(false);
  std::string t;
  auto line = [&](const std::string& name, const std::string& labels, uint64_t v) {
    t += name + (labels.empty() ? "" : "{" + labels + "}") + " " + std::to_string(v) + "\n";
  };
  t += "# HELP lmhost_cache_hits_total Embedding cache hits.\n# TYPE lmhost_cache_hits_total counter\n";
  line("lmhost_cache_hits_total", "cache=\"memory\"", s.memory_hits);
  if (s.redis_enabled) line("lmhost_cache_hits_total", "cache=\"redis\"", s.redis_hits);
  t += "# HELP lmhost_cache_misses_total Embedding cache misses.\n# TYPE lmhost_cache_misses_total counter\n";
  line("lmhost_cache_misses_total", "cache=\"memory\"", s.memory_misses);
  if (s.redis_enabled) line("lmhost_cache_misses_total", "cache=\"redis\"", s.redis_misses);
  t += "# HELP lmhost_cache_entries Entries in the in-memory embedding cache.\n# TYPE lmhost_cache_entries gauge\n";
  line("lmhost_cache_entries", "cache=\"memory\"", s.memory_size);
  if (s.redis_enabled) {
    t += "# HELP lmhost_cache_redis_up Whether Redis answered the last command.\n# TYPE lmhost_cache_redis_up gauge\n";
    line("lmhost_cache_redis_up", "", s.redis_up ? 1 : 0);
    t += "# HELP lmhost_cache_redis_outages_total Times Redis became unavailable.\n"
         "# TYPE lmhost_cache_redis_outages_total counter\n";
    line("lmhost_cache_redis_outages_total", "", s.redis_outages);
    t += "# HELP lmhost_cache_redis_errors_total Failed Redis operations (cache bypassed).\n"
         "# TYPE lmhost_cache_redis_errors_total counter\n";
    line("lmhost_cache_redis_errors_total", "", s.redis_errors);
  }
  return t;
}

}  // namespace lmhost::gateway
