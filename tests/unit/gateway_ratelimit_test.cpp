#include <gtest/gtest.h>

#include <thread>

#include "gateway/ratelimit.h"
#include "redis_test_server.h"
#include "util/error.h"

using namespace lmhost::gateway;

TEST(RateLimit, LocalBucketAdmitsLimitPlusBurstThenRefuses) {
  RateLimiter rl({});
  BucketSpec spec{5, 3};
  int ok = 0;
  Decision last;
  for (int i = 0; i < 12; ++i) {
    last = rl.take("k", spec);
    ok += last.allowed;
  }
  EXPECT_EQ(ok, 8);
  EXPECT_FALSE(last.allowed);
  EXPECT_EQ(last.limit, 5);
  EXPECT_EQ(last.remaining, 0);
  EXPECT_GT(last.retry_after_s, 5);    // one token per 12 s
  EXPECT_LE(last.retry_after_s, 12.01);
  EXPECT_GT(last.reset_s, 90);         // 8 tokens * 12 s
  EXPECT_TRUE(rl.take("other", spec).allowed);  // buckets are per key
}

TEST(RateLimit, RefillsAtTheRate) {
  RateLimiter rl({});
  BucketSpec spec{6000, 0};  // 100 per second
  int ok = 0;
  for (int i = 0; i < 7000; ++i) ok += rl.take("k", spec).allowed;
  EXPECT_GE(ok, 6000);
  EXPECT_LT(ok, 6100);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // ~5 tokens back
  ok = 0;
  for (int i = 0; i < 100; ++i) ok += rl.take("k", spec).allowed;
  EXPECT_GE(ok, 4);
  EXPECT_LE(ok, 30);
}

TEST(RateLimit, TokenBudgetGoesIntoDebt) {
  RateLimiter rl({});
  BucketSpec tpm{100, 0};
  EXPECT_TRUE(rl.take("t", tpm, 1e-9, 0).allowed);
  rl.charge("t", tpm, 250);  // usage beyond the budget: in debt
  Decision d = rl.take("t", tpm, 1e-9, 0);
  EXPECT_FALSE(d.allowed);
  EXPECT_GT(d.retry_after_s, 80);  // 150 tokens of debt at 100/min
  EXPECT_TRUE(rl.take("t", BucketSpec{0, 0}).allowed);  // 0 = unlimited
}

TEST(RateLimit, RedisSharesOneBucketBetweenLimiters) {
  if (!lmhost::testing::RedisServer::available()) GTEST_SKIP() << lmhost::testing::RedisServer::kSkip;
  lmhost::testing::RedisServer redis;
  RateLimiterOptions o;
  o.redis_url = redis.url();
  RateLimiter a(o), b(o);
  BucketSpec spec{10, 4};
  int ok = 0;
  for (int i = 0; i < 20; ++i) ok += (i % 2 ? a : b).take("shared", spec).allowed;
  EXPECT_EQ(ok, 14);
  EXPECT_TRUE(a.redis_up());
  Decision d = a.take("shared", spec);
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.degraded);
  EXPECT_EQ(d.limit, 10);
  EXPECT_NEAR(d.retry_after_s, 6, 0.5);
}

TEST(RateLimit, RedisDownFollowsTheSetting) {
  if (!lmhost::testing::RedisServer::available()) GTEST_SKIP() << lmhost::testing::RedisServer::kSkip;
  lmhost::testing::RedisServer redis;
  BucketSpec spec{2, 0};
  RateLimiterOptions o;
  o.redis_url = redis.url();
  o.backoff_min = std::chrono::milliseconds(10);
  o.backoff_max = std::chrono::milliseconds(20);
  o.on_redis_error = OnRedisError::Open;
  RateLimiter open(o);
  o.on_redis_error = OnRedisError::Local;
  RateLimiter local(o);
  o.on_redis_error = OnRedisError::Closed;
  RateLimiter closed(o);
  EXPECT_TRUE(open.take("x", spec).allowed);
  redis.stop();
  for (int i = 0; i < 5; ++i) {
    Decision d = open.take("x", spec);
    EXPECT_TRUE(d.allowed);
    EXPECT_TRUE(d.degraded);
  }
  EXPECT_EQ(open.redis_outages(), 1u);  // one outage, logged once
  EXPECT_GE(open.redis_errors(), 1u);
  int ok = 0;
  for (int i = 0; i < 5; ++i) ok += local.take("y", spec).allowed;
  EXPECT_EQ(ok, 2);  // per-process bucket
  Decision c = closed.take("z", spec);
  EXPECT_FALSE(c.allowed);
  EXPECT_TRUE(c.unavailable);
  // Back up: limits are global again.
  redis.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Decision d = open.take("x2", spec);
  EXPECT_TRUE(d.allowed);
  EXPECT_FALSE(d.degraded);
  EXPECT_TRUE(open.redis_up());
}

TEST(RateLimit, UnreachableRedisIsNotACrash) {
  RateLimiterOptions o;
  o.redis_url = "redis://127.0.0.1:1";
  RateLimiter rl(o);
  EXPECT_TRUE(rl.take("k", BucketSpec{1, 0}).allowed);
  EXPECT_FALSE(rl.redis_up());
  RateLimiterOptions bad;
  bad.redis_url = "http://x";
  EXPECT_THROW(RateLimiter{bad}, lmhost::Error);
}
