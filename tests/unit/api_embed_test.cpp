// Embedding endpoints through the real HTTP server with a synthesized bert
// model: OpenAI / Ollama shapes, token inputs, base64, dimensions, truncate,
// errors, the cache (memory and a real redis-server shared by two servers,
// Redis killed and restarted under load with no failed request) and batching
// of concurrent requests.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <unistd.h>

#include "api/api.h"
#include "gguf/gguf.h"
#include "model/bert.h"
#include "model/synth.h"
#include "tokenizer/tokenizer.h"
#include "unit/http_test_client.h"
#include "unit/redis_test_server.h"

using namespace lmhost;
using namespace lmhost::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string embed_file() {
  static std::string path = [] {
    const std::string p =
        (std::filesystem::temp_directory_path() / ("lmhost-api-embed-" + std::to_string(getpid()) + ".gguf")).string();
    auto spec = model::synth_shape("demo-embed");
    spec->type = "F32";
    spec->ctx = 64;  // short context: truncation is easy to reach
    model::synth_model(*spec, p, 1);
    return p;
  }();
  static struct Remover {
    ~Remover() { std::filesystem::remove(path); }
  } remover;
  return path;
}

struct Served {
  std::shared_ptr<ModelPool> pool;
  std::shared_ptr<server::Router> router = std::make_shared<server::Router>();
  std::unique_ptr<server::HttpServer> http;
  std::shared_ptr<gateway::EmbeddingCache> cache;
  explicit Served(const std::string& redis_url = "", int batch = 32) {
    EngineOptions eo;
    eo.n_threads = 1;
    eo.embed.batch_size = batch;
    eo.embed.n_threads = 1;
    pool = std::make_shared<ModelPool>(eo);
    ModelConfig mc;
    mc.name = "embed";
    mc.path = embed_file();
    pool->add(mc);
    gateway::CacheOptions co;
    co.lru_entries = 100;
    co.redis_url = redis_url;
    co.redis_timeout = 200ms;
    cache = std::make_shared<gateway::EmbeddingCache>(co);
    api::ApiOptions ao;
    ao.embed_cache = cache;
    api::register_routes(*router, pool, ao);
    server::ServerOptions so;
    so.port = 0;
    so.threads = 2;
    so.log_requests = false;
    http = std::make_unique<server::HttpServer>(so, router);
    http->start();
    pool->load_async();
    pool->wait_loaded();
  }
  ~Served() {
    http->stop();
    pool->stop();
  }
  ClientResponse post(const std::string& path, const json& body) {
    HttpClient c(http->port());
    return c.request("POST", path, body.dump());
  }
  ClientResponse req(const std::string& method, const std::string& path) {
    HttpClient c(http->port());
    return c.request(method, path, "");
  }
};

double norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s);
}

std::vector<float> reference(const std::string& text) {
  static auto file = gguf::File::open(embed_file());
  static auto model = EmbeddingModel::load(file);
  static auto tok = Tokenizer::from_gguf(*file);
  return model->embed({tok->encode(text, true, true)}, 1)[0];
}

class EmbedApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { s_ = new Served(); }
  static void TearDownTestSuite() {
    delete s_;
    s_ = nullptr;
  }
  static Served* s_;
};
Served* EmbedApi::s_ = nullptr;

TEST_F(EmbedApi, OpenAIStringsAndOrder) {
  auto r = s_->post("/v1/embeddings", {{"model", "embed"}, {"input", {"the cat sat on the mat", "hello world", ""}}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "embed");
  ASSERT_EQ(j["data"].size(), 3u);
  const char* texts[] = {"the cat sat on the mat", "hello world", ""};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(j["data"][i]["index"], i);
    EXPECT_EQ(j["data"][i]["object"], "embedding");
    const auto v = j["data"][i]["embedding"].get<std::vector<float>>();
    ASSERT_EQ(v.size(), 128u);
    EXPECT_NEAR(norm(v), 1.0, 1e-5);
    const auto ref = reference(texts[i]);
    for (size_t k = 0; k < v.size(); ++k) EXPECT_NEAR(v[k], ref[k], 1e-6) << texts[i];
  }
  auto file = gguf::File::open(embed_file());
  auto tok = Tokenizer::from_gguf(*file);
  const size_t n = tok->encode(texts[0], true, true).size() + tok->encode(texts[1], true, true).size() + 2;
  EXPECT_EQ(j["usage"]["prompt_tokens"], n);
  EXPECT_EQ(j["usage"]["total_tokens"], n);
}

TEST_F(EmbedApi, OpenAITokensBase64Dimensions) {
  auto file = gguf::File::open(embed_file());
  auto tok = Tokenizer::from_gguf(*file);
  const auto ids = tok->encode("hello world", true, true);
  auto r = s_->post("/v1/embeddings", {{"input", ids}});  // model omitted: the embedding model
  ASSERT_EQ(r.status, 200) << r.body;
  const auto v_tok = json::parse(r.body)["data"][0]["embedding"].get<std::vector<float>>();
  r = s_->post("/v1/embeddings", {{"input", {ids, ids}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["data"].size(), 2u);
  const auto ref = reference("hello world");
  for (size_t k = 0; k < ref.size(); ++k) EXPECT_NEAR(v_tok[k], ref[k], 1e-6);

  r = s_->post("/v1/embeddings", {{"input", "hello world"}, {"encoding_format", "base64"}});
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string b64 = json::parse(r.body)["data"][0]["embedding"];
  // decode
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::string bytes;
  for (size_t i = 0; i + 4 <= b64.size(); i += 4) {
    const int a = val(b64[i]), b = val(b64[i + 1]), c = val(b64[i + 2]), d = val(b64[i + 3]);
    bytes += static_cast<char>((a << 2) | (b >> 4));
    if (c >= 0) bytes += static_cast<char>(((b & 15) << 4) | (c >> 2));
    if (d >= 0) bytes += static_cast<char>(((c & 3) << 6) | d);
  }
  ASSERT_EQ(bytes.size(), 128u * 4);
  std::vector<float> dec(128);
  std::memcpy(dec.data(), bytes.data(), bytes.size());
  for (size_t k = 0; k < ref.size(); ++k) EXPECT_NEAR(dec[k], ref[k], 1e-6);

  r = s_->post("/v1/embeddings", {{"input", "hello world"}, {"dimensions", 16}});
  ASSERT_EQ(r.status, 200) << r.body;
  const auto d16 = json::parse(r.body)["data"][0]["embedding"].get<std::vector<float>>();
  ASSERT_EQ(d16.size(), 16u);
  EXPECT_NEAR(norm(d16), 1.0, 1e-5);
  const double n16 = norm(std::vector<float>(ref.begin(), ref.begin() + 16));
  for (int k = 0; k < 16; ++k) EXPECT_NEAR(d16[k], ref[k] / n16, 1e-5);
}

TEST_F(EmbedApi, OpenAIErrors) {
  auto check = [](const ClientResponse& r, int status, const std::string& needle) {
    EXPECT_EQ(r.status, status) << r.body;
    auto j = json::parse(r.body);
    ASSERT_TRUE(j.contains("error")) << r.body;
    EXPECT_TRUE(j["error"].is_object()) << r.body;  // OpenAI shape
    EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << r.body;
  };
  check(s_->post("/v1/embeddings", json::object()), 400, "input");
  check(s_->post("/v1/embeddings", {{"input", json::array()}}), 400, "empty");
  check(s_->post("/v1/embeddings", {{"input", 5}}), 400, "input");
  check(s_->post("/v1/embeddings", {{"input", {"a", {1, 2}}}}), 400, "mixes");
  check(s_->post("/v1/embeddings", {{"input", {1, 999999}}}), 400, "out of range");
  check(s_->post("/v1/embeddings", {{"input", "x"}, {"encoding_format", "hex"}}), 400, "encoding_format");
  check(s_->post("/v1/embeddings", {{"input", "x"}, {"dimensions", 0}}), 400, "dimensions");
  check(s_->post("/v1/embeddings", {{"input", "x"}, {"model", "nope"}}), 404, "nope");
}

TEST_F(EmbedApi, OllamaEmbedTruncateAndLegacy) {
  auto r = s_->post("/api/embed", {{"model", "embed"}, {"input", {"hello world", "the cat"}}, {"keep_alive", "5m"},
                                   {"options", {{"temperature", 0}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["model"], "embed");
  ASSERT_EQ(j["embeddings"].size(), 2u);
  EXPECT_GT(j["prompt_eval_count"].get<int>(), 4);
  EXPECT_TRUE(j.contains("total_duration"));
  const auto ref = reference("hello world");
  const auto v = j["embeddings"][0].get<std::vector<float>>();
  for (size_t k = 0; k < ref.size(); ++k) EXPECT_NEAR(v[k], ref[k], 1e-6);

  std::string longtext;
  for (int i = 0; i < 100; ++i) longtext += "cat dog ";
  r = s_->post("/api/embed", {{"input", longtext}});  // truncate defaults to true
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["prompt_eval_count"], 64);
  r = s_->post("/api/embed", {{"input", longtext}, {"truncate", false}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_TRUE(json::parse(r.body)["error"].is_string()) << r.body;  // Ollama shape
  EXPECT_NE(r.body.find("context length"), std::string::npos);
  EXPECT_EQ(s_->post("/api/embed", {{"input", {1, 2}}}).status, 400);

  r = s_->post("/api/embeddings", {{"model", "embed"}, {"prompt", "hello world"}});
  ASSERT_EQ(r.status, 200) << r.body;
  const auto lv = json::parse(r.body)["embedding"].get<std::vector<float>>();
  for (size_t k = 0; k < ref.size(); ++k) EXPECT_NEAR(lv[k], ref[k], 1e-6);
  EXPECT_EQ(s_->post("/api/embeddings", {{"model", "embed"}}).status, 400);
}

TEST_F(EmbedApi, MemoryCacheHitsAndClear) {
  s_->req("DELETE", "/api/v1/cache");
  const auto before = s_->cache->stats();
  ASSERT_EQ(s_->post("/v1/embeddings", {{"input", {"cache me", "and me"}}}).status, 200);
  auto mid = s_->cache->stats();
  EXPECT_EQ(mid.memory_misses - before.memory_misses, 2u);
  // One cached, one new: only the new one is computed.
  auto r = s_->post("/v1/embeddings", {{"input", {"cache me", "something new"}}});
  ASSERT_EQ(r.status, 200);
  auto after = s_->cache->stats();
  EXPECT_EQ(after.memory_hits - mid.memory_hits, 1u);
  EXPECT_EQ(after.memory_size, 3u);
  // Cached vectors are the same as computed ones.
  EXPECT_EQ(json::parse(r.body)["data"][0]["embedding"].get<std::vector<float>>().size(), 128u);
  auto h = json::parse(s_->req("GET", "/health").body);
  EXPECT_GE(h["cache"]["memory"]["hits"].get<int>(), 1);
  auto c = s_->req("GET", "/api/v1/cache?format=prometheus");
  EXPECT_NE(c.body.find("lmhost_cache_hits_total{cache=\"memory\"}"), std::string::npos);
  r = s_->req("DELETE", "/api/v1/cache");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(s_->cache->stats().memory_size, 0u);
}

TEST_F(EmbedApi, ConcurrentRequestsAreBatched) {
  s_->req("DELETE", "/api/v1/cache");
  const auto h0 = json::parse(s_->req("GET", "/health").body)["models"][0];
  constexpr int kClients = 24;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kClients; ++i)
    ts.emplace_back([&, i] {
      auto r = s_->post("/v1/embeddings", {{"input", "concurrent request number " + std::to_string(i)}});
      if (r.status == 200) ++ok;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), kClients);
  const auto h1 = json::parse(s_->req("GET", "/health").body)["models"][0];
  const int seqs = h1["sequences_total"].get<int>() - h0["sequences_total"].get<int>();
  const int batches = h1["batches_total"].get<int>() - h0["batches_total"].get<int>();
  EXPECT_EQ(seqs, kClients);
  EXPECT_LT(batches, kClients) << "no two concurrent requests shared a forward pass";
}

TEST(EmbedApiRedis, SharedBetweenServersAndSurvivesRedisRestart) {
  if (!RedisServer::available()) GTEST_SKIP() << RedisServer::kSkip;
  RedisServer redis;
  Served a(redis.url()), b(redis.url());
  auto r = a.post("/v1/embeddings", {{"input", "shared text"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(a.cache->stats().redis_misses, 1u);
  auto r2 = b.post("/v1/embeddings", {{"input", "shared text"}});
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(b.cache->stats().redis_hits, 1u) << "the second server did not find the first one's entry in Redis";
  EXPECT_EQ(json::parse(r.body)["data"][0]["embedding"], json::parse(r2.body)["data"][0]["embedding"]);
  auto h = json::parse(b.req("GET", "/health").body);
  EXPECT_EQ(h["cache"]["redis"]["up"], true);

  // Redis killed mid-run and restarted: every request still succeeds.
  int failed = 0;
  for (int i = 0; i < 60; ++i) {
    if (i == 15) redis.stop();
    if (i == 40) redis.start();
    if (i >= 40) std::this_thread::sleep_for(30ms);
    auto x = a.post("/v1/embeddings", {{"input", "request " + std::to_string(i)}});
    if (x.status != 200) ++failed;
  }
  EXPECT_EQ(failed, 0);
  auto s = a.cache->stats();
  EXPECT_EQ(s.redis_outages, 1u);
  EXPECT_TRUE(s.redis_up) << "Redis was not used again after it came back";
  // And after the restart, entries written by a are visible to b again.
  ASSERT_EQ(a.post("/v1/embeddings", {{"input", "after restart"}}).status, 200);
  const auto hits = b.cache->stats().redis_hits;
  bool hit = false;
  for (int i = 0; i < 40 && !hit; ++i) {
    ASSERT_EQ(b.post("/v1/embeddings", {{"input", "after restart"}}).status, 200);
    hit = b.cache->stats().redis_hits > hits;
    if (!hit) {
      b.req("DELETE", "/api/v1/cache");  // clears b's memory (and Redis): write again through a
      a.cache->clear();
      ASSERT_EQ(a.post("/v1/embeddings", {{"input", "after restart"}}).status, 200);
      std::this_thread::sleep_for(100ms);
    }
  }
  EXPECT_TRUE(hit);
}

}  // namespace
