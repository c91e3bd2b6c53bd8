// The embedding cache: LRU behaviour, keys, and the Redis tier against a real
// redis-server started here (hit after miss, shared between two cache
// instances, raw float32 values, TTL expiry, clear, outage and recovery).
#include <gtest/gtest.h>

#include <hiredis.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "gateway/embed_cache.h"
#include "util/error.h"
#include "unit/redis_test_server.h"

using namespace lmhost;
using namespace lmhost::gateway;
using namespace std::chrono_literals;
using lmhost::testing::RedisServer;

namespace {

std::vector<float> vec(float base, int n = 8) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = base + 0.25f * i;
  return v;
}

CacheOptions redis_opts(const std::string& url, std::chrono::seconds ttl = 3600s, size_t lru = 1000) {
  CacheOptions o;
  o.lru_entries = lru;
  o.redis_url = url;
  o.ttl = ttl;
  o.redis_timeout = 200ms;
  return o;
}

TEST(Lru, EvictsLeastRecentlyUsed) {
  LruCache c(2);
  c.put("a", vec(1));
  c.put("b", vec(2));
  ASSERT_TRUE(c.get("a"));  // a is now the most recent
  c.put("c", vec(3));       // evicts b
  EXPECT_TRUE(c.get("a"));
  EXPECT_FALSE(c.get("b"));
  EXPECT_EQ(*c.get("c"), vec(3));
  EXPECT_EQ(c.size(), 2u);
  c.put("a", vec(9));  // overwrite keeps size
  EXPECT_EQ(*c.get("a"), vec(9));
  EXPECT_EQ(c.size(), 2u);
  c.clear();
  EXPECT_EQ(c.size(), 0u);
  LruCache off(0);
  off.put("a", vec(1));
  EXPECT_FALSE(off.get("a"));
}

TEST(CacheKey, CoversModelDigestOptionsAndInput) {
  const auto k = cache_key("m", "d1", "o", "text\nhello");
  EXPECT_EQ(k, cache_key("m", "d1", "o", "text\nhello"));
  EXPECT_NE(k, cache_key("m2", "d1", "o", "text\nhello"));
  EXPECT_NE(k, cache_key("m", "d2", "o", "text\nhello"));
  EXPECT_NE(k, cache_key("m", "d1", "o2", "text\nhello"));
  EXPECT_NE(k, cache_key("m", "d1", "o", "text\nhello "));
  EXPECT_NE(cache_key("m", "d", "o", std::string("a\0b", 3)), cache_key("m", "d", "o", std::string("a\0c", 3)));
}

TEST(EmbeddingCacheMemory, HitsMissesAndMetrics) {
  CacheOptions o;
  o.lru_entries = 10;
  EmbeddingCache c(o);
  EXPECT_FALSE(c.redis_enabled());
  auto r = c.get_many({"k1", "k2"});
  EXPECT_FALSE(r[0] || r[1]);
  c.put_many({"k1"}, {vec(1)});
  r = c.get_many({"k1", "k2"});
  ASSERT_TRUE(r[0]);
  EXPECT_EQ(*r[0], vec(1));
  EXPECT_FALSE(r[1]);
  const auto s = c.stats();
  EXPECT_EQ(s.memory_hits, 1u);
  EXPECT_EQ(s.memory_misses, 3u);
  EXPECT_EQ(s.memory_size, 1u);
  const std::string m = c.metrics_text();
  EXPECT_NE(m.find("lmhost_cache_hits_total{cache=\"memory\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("lmhost_cache_misses_total{cache=\"memory\"} 3"), std::string::npos) << m;
  c.clear();
  EXPECT_EQ(c.stats().memory_size, 0u);
}

TEST(EmbeddingCacheEnv, ParsesAndRejects) {
  ::setenv("CACHE_SIZE", "5", 1);
  ::setenv("CACHE_TTL_SECONDS", "7", 1);
  ::setenv("REDIS_URL", "redis://localhost:1234/2", 1);
  auto o = CacheOptions::from_env();
  EXPECT_EQ(o.lru_entries, 5u);
  EXPECT_EQ(o.ttl.count(), 7);
  EXPECT_EQ(o.redis_url, "redis://localhost:1234/2");
  ::setenv("CACHE_SIZE", "lots", 1);
  EXPECT_THROW(CacheOptions::from_env(), Error);
  ::unsetenv("CACHE_SIZE");
  ::unsetenv("CACHE_TTL_SECONDS");
  ::unsetenv("REDIS_URL");
  EXPECT_EQ(CacheOptions::from_env().lru_entries, 1000u);
  EXPECT_THROW(EmbeddingCache(redis_opts("http://x")), Error);
}

TEST(RedisTier, HitAfterMissSharedBetweenInstancesRawFloats) {
  if (!RedisServer::available()) GTEST_SKIP() << RedisServer::kSkip;
  RedisServer redis;
  EmbeddingCache a(redis_opts(redis.url())), b(redis_opts(redis.url()));
  EXPECT_TRUE(a.redis_enabled());
  auto r = a.get_many({"x"});
  EXPECT_FALSE(r[0]);
  EXPECT_EQ(a.stats().redis_misses, 1u);
  a.put_many({"x"}, {vec(1.5f, 16)});
  // The other instance (another lmhost process) misses in memory, hits in Redis.
  r = b.get_many({"x"});
  ASSERT_TRUE(r[0]);
  EXPECT_EQ(*r[0], vec(1.5f, 16));
  auto s = b.stats(true);
  EXPECT_EQ(s.memory_misses, 1u);
  EXPECT_EQ(s.redis_hits, 1u);
  EXPECT_TRUE(s.redis_up);
  EXPECT_EQ(s.redis_size, 1);
  // ... and keeps a copy in memory.
  r = b.get_many({"x"});
  EXPECT_EQ(b.stats().memory_hits, 1u);
  EXPECT_NE(b.metrics_text().find("lmhost_cache_hits_total{cache=\"redis\"} 1"), std::string::npos);

  // The stored value is the raw float32 bytes, with the TTL set.
  redisContext* c = redisConnect("127.0.0.1", redis.port());
  ASSERT_TRUE(c && !c->err);
  auto* rep = static_cast<redisReply*>(redisCommand(c, "GET %s", "lmhost:emb:x"));
  ASSERT_TRUE(rep && rep->type == REDIS_REPLY_STRING);
  ASSERT_EQ(rep->len, 16 * 4);
  std::vector<float> raw(16);
  std::memcpy(raw.data(), rep->str, 64);
  EXPECT_EQ(raw, vec(1.5f, 16));
  freeReplyObject(rep);
  rep = static_cast<redisReply*>(redisCommand(c, "TTL %s", "lmhost:emb:x"));
  ASSERT_TRUE(rep && rep->type == REDIS_REPLY_INTEGER);
  EXPECT_GT(rep->integer, 3500);
  EXPECT_LE(rep->integer, 3600);
  freeReplyObject(rep);
  // clear() removes our keys only.
  freeReplyObject(redisCommand(c, "SET %s %s", "other:key", "v"));
  a.clear();
  rep = static_cast<redisReply*>(redisCommand(c, "EXISTS %s", "lmhost:emb:x"));
  EXPECT_EQ(rep->integer, 0);
  freeReplyObject(rep);
  rep = static_cast<redisReply*>(redisCommand(c, "EXISTS %s", "other:key"));
  EXPECT_EQ(rep->integer, 1);
  freeReplyObject(rep);
  redisFree(c);
  EXPECT_FALSE(EmbeddingCache(redis_opts(redis.url(), 3600s, 0)).get_many({"x"})[0]);
}

TEST(RedisTier, TtlExpiry) {
  if (!RedisServer::available()) GTEST_SKIP() << RedisServer::kSkip;
  RedisServer redis;
  EmbeddingCache a(redis_opts(redis.url(), 1s, 0)), b(redis_opts(redis.url(), 1s, 0));  // no memory tier
  a.put_many({"t"}, {vec(2)});
  EXPECT_TRUE(b.get_many({"t"})[0]);
  std::this_thread::sleep_for(2100ms);
  EXPECT_FALSE(b.get_many({"t"})[0]);
}

TEST(RedisTier, OutageBypassedCountedAndRecovered) {
  if (!RedisServer::available()) GTEST_SKIP() << RedisServer::kSkip;
  RedisServer redis;
  EmbeddingCache a(redis_opts(redis.url(), 3600s, 0));
  a.put_many({"k"}, {vec(3)});
  ASSERT_TRUE(a.get_many({"k"})[0]);
  redis.stop();
  // Down: every call returns promptly (a miss), never throws.
  for (int i = 0; i < 20; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_NO_THROW({
      EXPECT_FALSE(a.get_many({"k", "k2"})[0]);
      a.put_many({"k3"}, {vec(4)});
    });
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  }
  auto s = a.stats();
  EXPECT_FALSE(s.redis_up);
  EXPECT_EQ(s.redis_outages, 1u);  // one outage, however many failed calls
  EXPECT_GE(s.redis_errors, 1u);
  EXPECT_NE(a.metrics_text().find("lmhost_cache_redis_up 0"), std::string::npos);
  // Back (empty, since it had no persistence): used again after the backoff.
  redis.start();
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    a.put_many({"k4"}, {vec(5)});
    back = a.get_many({"k4"})[0].has_value();
    if (!back) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(back) << "the cache did not use Redis again after it came back";
  EXPECT_TRUE(a.stats().redis_up);
  EXPECT_EQ(a.stats().redis_outages, 1u);
}

TEST(RedisTier, UnreachableFromTheStart) {
  CacheOptions o = redis_opts("redis://127.0.0.1:1", 60s, 10);
  EmbeddingCache c(o);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    const std::string k = "a" + std::to_string(i);
    EXPECT_FALSE(c.get_many({k})[0]);
    c.put_many({k}, {vec(1)});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_TRUE(c.get_many({"a0"})[0]);  // the memory tier still works
  EXPECT_EQ(c.stats().redis_outages, 1u);
}

}  // namespace
