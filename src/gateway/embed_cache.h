// The embedding cache: an in-memory LRU (CACHE_SIZE entries) in front of an
// optional Redis (REDIS_URL, entries expire after CACHE_TTL_SECONDS; values are
// the raw little-endian float32 bytes of the vector).
//
// Keys are built by cache_key() from the model's identity (served name and a
// digest of its file), the exact input and the options that change the
// vector. The cache never fails a request: when Redis is down or slow
// (short timeouts), it is bypassed, the outage is logged once and counted,
// and it is tried again with backoff until it answers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace lmhost::gateway {

// The cache key of one input: model name + file digest + options + input
// (the input kind, e.g. "text" or "tokens", is part of options).
std::string cache_key(const std::string& model, const std::string& digest, const std::string& options,
                      const std::string& input);

// Fixed-capacity LRU (thread-safe). capacity 0 disables it.
class LruCache {
 public:
  explicit LruCache(size_t capacity) : cap_(capacity) {}
  std::optional<std::vector<float>> get(const std::string& key);
  void put(const std::string& key, std::vector<float> value);
  void clear();
  size_t size() const;
  size_t capacity() const { return cap_; }

 private:
  using List = std::list<std::pair<std::string, std::vector<float>>>;
  size_t cap_;
  mutable std::mutex mu_;
  List list_;  // most recent first
  std::unordered_map<std::string, List::iterator> index_;
};

struct RedisOptions {
  std::string url;  // redis://[:password@]host[:port][/db]
  std::chrono::seconds ttl{3600};
  std::chrono::milliseconds connect_timeout{200};
  std::chrono::milliseconds command_timeout{200};
  std::chrono::milliseconds backoff_min{250}, backoff_max{5000};
  std::string prefix = "lmhost:emb:";
};

// A small synchronous Redis client for the cache (one connection, guarded).
class RedisCache {
 public:
  explicit RedisCache(RedisOptions opts);  // parses the URL (Error on a bad one); connects lazily
  ~RedisCache();
  // nullopt for a miss, or when Redis is unavailable (then available() is false).
  std::vector<std::optional<std::vector<float>>> get_many(const std::vector<std::string>& keys);
  void put_many(const std::vector<std::pair<std::string, const std::vector<float>*>>& items);
  // Deletes every key under the prefix; false when Redis is unavailable.
  bool clear();
  bool available();  // tries to (re)connect when the backoff allows
  bool up() const { return up_.load(); }
  uint64_t outages() const { return outages_.load(); }
  uint64_t errors() const { return errors_.load(); }
  int64_t size();  // keys under the prefix (-1 when unavailable)
  const RedisOptions& options() const { return opts_; }

 private:
  bool ensure_connected();            // mu_ held
  void on_failure(const std::string& what);  // mu_ held: drop the connection, log once per outage
  RedisOptions opts_;
  std::string host_, password_;
  int port_ = 6379, db_ = 0;
  std::mutex mu_;
  void* ctx_ = nullptr;  // redisContext*
  std::atomic<bool> up_{false};
  bool ever_connected_ = false, in_outage_ = false;
  std::chrono::steady_clock::time_point next_try_{};
  std::chrono::milliseconds backoff_{0};
  std::atomic<uint64_t> outages_{0}, errors_{0};
};

struct CacheOptions {
  size_t lru_entries = 1000;          // CACHE_SIZE (0 disables the in-memory tier)
  std::string redis_url;              // REDIS_URL (empty: no Redis)
  std::chrono::seconds ttl{3600};     // CACHE_TTL_SECONDS
  std::chrono::milliseconds redis_timeout{200};
  // From CACHE_SIZE, REDIS_URL, CACHE_TTL_SECONDS (Error naming a bad value).
  static CacheOptions from_env();
};

struct CacheStats {
  uint64_t memory_hits = 0, memory_misses = 0;
  size_t memory_size = 0, memory_capacity = 0;
  bool redis_enabled = false, redis_up = false;
  uint64_t redis_hits = 0, redis_misses = 0, redis_errors = 0, redis_outages = 0;
  int64_t redis_size = -1;  // only filled by stats(true)
};

class EmbeddingCache {
 public:
  explicit EmbeddingCache(CacheOptions opts);
  // One result per key: memory first, then Redis (a Redis hit is copied into memory).
  std::vector<std::optional<std::vector<float>>> get_many(const std::vector<std::string>& keys);
  void put_many(const std::vector<std::string>& keys, const std::vector<std::vector<float>>& values);
  void clear();  // both tiers
  CacheStats stats(bool with_redis_size = false);
  // Prometheus text: lmhost_cache_{hits,misses}_total{cache="memory"|"redis"},
  // lmhost_cache_entries{cache=...}, lmhost_cache_redis_up, lmhost_cache_redis_outages_total.
  std::string metrics_text();
  const CacheOptions& options() const { return opts_; }
  bool redis_enabled() const { return redis_ != nullptr; }

 private:
  CacheOptions opts_;
  LruCache lru_;
  std::unique_ptr<RedisCache> redis_;
  std::atomic<uint64_t> mem_hits_{0}, mem_misses_{0}, redis_hits_{0}, redis_misses_{0};
};

}  // namespace lmhost::gateway
