// Upstream specs, the circuit breaker and a pool with nothing reachable (the
// proxying itself is tested through real processes in cli_upstream_test.cpp).
#include <gtest/gtest.h>

#include <thread>

#include "gateway/upstream.h"
#include "util/error.h"

using namespace lmhost::gateway;

TEST(UpstreamSpec, ParsesKindsUrlsAndKeys) {
  auto a = parse_upstream("ollama:http://127.0.0.1:11434/");
  EXPECT_EQ(a.kind, UpstreamKind::Ollama);
  EXPECT_EQ(a.url, "http://127.0.0.1:11434");
  EXPECT_TRUE(a.key.empty());
  auto b = parse_upstream("openai:https://api.example.com/v1#sk-123");
  EXPECT_EQ(b.kind, UpstreamKind::OpenAI);
  EXPECT_EQ(b.url, "https://api.example.com");  // /v1 is added per request
  EXPECT_EQ(b.key, "sk-123");
  auto c = parse_upstream("openai:localhost:8000");
  EXPECT_EQ(c.url, "http://localhost:8000");
  auto d = parse_upstream("http://ollama:11434");  // a bare URL is an Ollama server
  EXPECT_EQ(d.kind, UpstreamKind::Ollama);
  EXPECT_EQ(d.url, "http://ollama:11434");
  EXPECT_THROW(parse_upstream("ftp://x"), lmhost::Error);
  EXPECT_THROW(parse_upstream("ollama:"), lmhost::Error);
  EXPECT_EQ(Upstream(b).name(), "openai:https://api.example.com");
}

TEST(UpstreamBreaker, OpensAfterThresholdThenProbesAfterCooldown) {
  Upstream u(parse_upstream("ollama:http://127.0.0.1:1"));
  const auto cool = std::chrono::milliseconds(150);
  u.failure(cool, 3);
  u.failure(cool, 3);
  EXPECT_TRUE(u.healthy());
  u.failure(cool, 3);
  EXPECT_FALSE(u.healthy());
  std::this_thread::sleep_for(cool + std::chrono::milliseconds(50));
  EXPECT_TRUE(u.healthy());  // half-open: tried again
  u.failure(cool, 3);        // still failing: open again at once
  EXPECT_FALSE(u.healthy());
  u.success();
  EXPECT_TRUE(u.healthy());
  EXPECT_TRUE(u.up());
}

TEST(UpstreamPool, UnreachableUpstreamIsDownAndProxyFailsCleanly) {
  UpstreamOptions o;
  o.connect_timeout = std::chrono::milliseconds(300);
  Upstreams ups({parse_upstream("ollama:http://127.0.0.1:1")}, o);
  ups.start();
  ASSERT_EQ(ups.all().size(), 1u);
  EXPECT_FALSE(ups.all()[0]->up());
  EXPECT_FALSE(ups.has("m"));
  EXPECT_TRUE(ups.models().empty());
  EXPECT_TRUE(ups.candidates("m", UpstreamKind::Ollama).empty());
  ProxyPlan plan;
  plan.build = [](const Upstream&) { return std::make_pair(std::string("/api/chat"), std::string("{}")); };
  auto st = ups.start_proxy("m", UpstreamKind::Ollama, plan);
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard lk(st->mu);
      if (st->done) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::lock_guard lk(st->mu);
  EXPECT_TRUE(st->done);
  EXPECT_TRUE(st->failed);
  EXPECT_FALSE(st->committed);
  EXPECT_NE(st->error.find("every upstream failed"), std::string::npos) << st->error;
}
