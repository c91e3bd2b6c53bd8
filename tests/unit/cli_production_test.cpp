// The production layer through the real binary: config errors (exit 2),
// 401/403/413/429/400/503, the access log line, promtool on /metrics, and a
// rate limit shared by two processes through a real redis-server.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "serve_process.h"
#include "redis_test_server.h"

namespace {

using json = nlohmann::json;
using lmhost::testing::HttpClient;
using lmhost::testing::ServeOptions;
using lmhost::testing::ServeProcess;
using lmhost::testing::slurp;
namespace fs = std::filesystem;

std::string tmp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("lmhost-prod-" + std::to_string(::getpid()) + "-" + name)).string();
}

int run(const std::string& args, std::string* out = nullptr) {
  const std::string cmd = std::string(LMHOST_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string o;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.append(buf, n);
  const int st = pclose(p);
  if (out) *out = o;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// `lmhost serve --port 0 ARGS` with extra environment.
class Server : public ServeProcess {
 public:
  Server(std::vector<std::string> args, std::vector<std::string> env, bool wait_ready = true)
      : ServeProcess(std::move(args), ServeOptions{.wait_ready = wait_ready, .env = std::move(env)}) {}
};

const std::string kChat = R"({"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":4})";

}  // namespace

TEST(Production, ConfigCheckAndBadConfigExit2) {
  const std::string f = tmp_path("bad.yaml");
  std::ofstream(f) << "server:\n  prot: 80\nrate_limit:\n  burst: many\n";
  std::string out;
  EXPECT_EQ(run("config check " + f, &out), 2);
  EXPECT_NE(out.find(f + ":2: server.prot: unknown key (did you mean 'server.port'?)"), std::string::npos) << out;
  EXPECT_NE(out.find(f + ":4: rate_limit.burst: expected an integer"), std::string::npos) << out;
  EXPECT_EQ(run("serve --config " + f, &out), 2);
  EXPECT_NE(out.find("server.prot"), std::string::npos) << out;
  EXPECT_EQ(run("serve --set server.port=-3", &out), 2);
  EXPECT_NE(out.find("command line server.port: expected an integer from 0 to 65535"), std::string::npos) << out;
  std::ofstream(f) << "server:\n  port: 9100\n";
  EXPECT_EQ(run("config check " + f, &out), 0) << out;
  // Precedence: file < env < flag, secrets redacted.
  EXPECT_EQ(run("serve --config " + f + " --print-config", &out), 0);
  EXPECT_NE(out.find("port: 9100"), std::string::npos) << out;
  EXPECT_EQ(run("serve --config " + f + " --print-config --port 9300 --api-key sekrit-key", &out), 0);
  EXPECT_NE(out.find("port: 9300"), std::string::npos) << out;
  EXPECT_EQ(out.find("sekrit-key"), std::string::npos) << out;
  EXPECT_EQ(::setenv("PORT", "9200", 1), 0);
  EXPECT_EQ(run("serve --config " + f + " --print-config", &out), 0);
  EXPECT_NE(out.find("port: 9200"), std::string::npos) << out;
  ::unsetenv("PORT");
  fs::remove(f);
}

TEST(Production, AuthStatusesShapesAndLogLine) {
  const std::string keys = tmp_path("keys");
  fs::remove(keys);
  std::string embed_only;
  ASSERT_EQ(run("keys add embedder --file " + keys + " --models demo-embed", &embed_only), 0);
  embed_only = embed_only.substr(embed_only.find("lmh_"));  // stdout (the key) and stderr are merged here
  embed_only = embed_only.substr(0, embed_only.find('\n'));
  ASSERT_EQ(embed_only.rfind("lmh_", 0), 0u) << embed_only;
  EXPECT_EQ(slurp(keys).find(embed_only), std::string::npos);  // only the hash is stored
  Server s({"--api-key", "full-key-123"}, {"API_KEYS_FILE=" + keys});
  HttpClient c(s.port());
  // 401 in each API's shape.
  auto r = c.request("GET", "/v1/models");
  EXPECT_EQ(r.status, 401);
  EXPECT_TRUE(json::parse(r.body)["error"].contains("message")) << r.body;
  EXPECT_EQ(r.header("www-authenticate").rfind("Bearer", 0), 0u);
  r = c.request("GET", "/api/tags");
  EXPECT_EQ(r.status, 401);
  EXPECT_TRUE(json::parse(r.body)["error"].is_string()) << r.body;
  r = c.request("GET", "/v1/models", "", {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("not valid"), std::string::npos);
  // Accepted as Bearer and as x-api-key.
  EXPECT_EQ(c.request("GET", "/v1/models", "", {{"Authorization", "Bearer full-key-123"}}).status, 200);
  EXPECT_EQ(c.request("GET", "/v1/models", "", {{"x-api-key", embed_only}}).status, 200);
  // 403: the key may not use this model (OpenAI and Ollama shapes).
  r = c.request("POST", "/v1/chat/completions", kChat, {{"x-api-key", embed_only}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("'embedder' may not use the model 'demo'"),
            std::string::npos);
  r = c.request("POST", "/api/generate", R"({"model":"demo","prompt":"x","stream":false})", {{"x-api-key", embed_only}});
  EXPECT_EQ(r.status, 403);
  EXPECT_TRUE(json::parse(r.body)["error"].is_string());
  // /health, /ready, /info and /metrics are open by default.
  EXPECT_EQ(c.request("GET", "/health").status, 200);
  EXPECT_EQ(c.request("GET", "/ready").status, 200);
  auto info = json::parse(c.request("GET", "/info").body);
  EXPECT_FALSE(info["instance_id"].get<std::string>().empty());
  EXPECT_EQ(info["auth"], "api_key");
  EXPECT_EQ(c.request("GET", "/metrics").status, 200);
  // A generation with a request id: echoed, and one JSON log line with the fields.
  r = c.request("POST", "/v1/chat/completions", kChat, {{"Authorization", "Bearer full-key-123"}, {"X-Request-Id", "test-req-42"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-request-id"), "test-req-42");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  bool found = false;
  for (const auto& l : s.lines()) {
    if (l.value("request_id", "") != "test-req-42") continue;
    found = true;
    EXPECT_EQ(l["msg"], "request");
    EXPECT_EQ(l["level"], "info");
    EXPECT_TRUE(l.contains("time"));
    EXPECT_EQ(l["method"], "POST");
    EXPECT_EQ(l["path"], "/v1/chat/completions");
    EXPECT_EQ(l["status"], 200);
    EXPECT_EQ(l["model"], "demo");
    EXPECT_EQ(l["key"], "cli-0");
    EXPECT_GT(l["prompt_tokens"].get<int>(), 0);
    EXPECT_GE(l["completion_tokens"].get<int>(), 1);
    EXPECT_GT(l["duration_ms"].get<double>(), 0);
    EXPECT_GE(l["ttft_ms"].get<double>(), 0);
    EXPECT_EQ(l["client"].get<std::string>().rfind("127.0.0.1:", 0), 0u);
    EXPECT_FALSE(l.contains("prompt"));  // LOG_PROMPTS is off
  }
  EXPECT_TRUE(found) << s.log_text();
  const std::string log = s.log_text();
  EXPECT_EQ(log.find("full-key-123"), std::string::npos);
  EXPECT_EQ(log.find(embed_only), std::string::npos);
  fs::remove(keys);
}

TEST(Production, ProtectedMetricsAndOpenServerWarning) {
  Server s({"--set", "auth.protect_metrics=true", "--api-key", "k"}, {}, false);
  HttpClient c(s.port());
  EXPECT_EQ(c.request("GET", "/metrics").status, 401);
  EXPECT_EQ(c.request("GET", "/metrics", "", {{"x-api-key", "k"}}).status, 200);
  EXPECT_NE(c.request("GET", "/health").status, 401);
  Server open({}, {}, false);
  bool warned = false;
  for (const auto& l : open.lines())
    if (l.value("msg", "").find("no API keys configured") != std::string::npos) warned = l["level"] == "warn";
  EXPECT_TRUE(warned) << open.log_text();
}

TEST(Production, RateLimit429WithHeaders) {
  Server s({}, {"RATE_LIMIT_REQUESTS_PER_MINUTE=3", "RATE_LIMIT_BURST=2"}, false);
  HttpClient c(s.port());
  for (int i = 0; i < 5; ++i) {
    auto r = c.request("GET", "/v1/models");
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.header("x-ratelimit-limit"), "3");
    EXPECT_EQ(r.header("x-ratelimit-remaining"), std::to_string(4 - i));
  }
  auto r = c.request("GET", "/v1/models");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.header("x-ratelimit-limit"), "3");
  EXPECT_EQ(r.header("x-ratelimit-remaining"), "0");
  const int retry = std::stoi(r.header("retry-after"));
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 20);
  EXPECT_GE(std::stoi(r.header("x-ratelimit-reset")), retry);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("3 requests per minute"), std::string::npos);
  EXPECT_EQ(json::parse(c.request("GET", "/api/tags").body)["error"].is_string(), true);  // Ollama shape
  // Not limited (polled: the server was not waited for, and /health is 503
  // until the models have loaded and warmed up; a limited route would stay 429).
  EXPECT_TRUE(lmhost::testing::eventually([&] { return c.request("GET", "/health").status == 200; }));
  const std::string m = c.request("GET", "/metrics").body;
  EXPECT_NE(m.find("lmhost_rate_limited_requests_total{key=\"anonymous\",limit=\"requests\"} 2"), std::string::npos) << m;
}

TEST(Production, BodyAndTokenLimits) {
  Server s({"--body-limit", "2000"}, {"MAX_INPUT_TOKENS=8", "MAX_TOKENS=10"});
  HttpClient c(s.port());
  auto r = c.request("POST", "/v1/chat/completions", std::string(3000, ' '));
  EXPECT_EQ(r.status, 413);
  HttpClient c2(s.port());
  r = c2.request("POST", "/v1/chat/completions",
                 R"({"model":"demo","messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}],"max_tokens":4})");
  EXPECT_EQ(r.status, 400) << r.body;
  const std::string msg = json::parse(r.body)["error"]["message"];
  EXPECT_NE(msg.find("more than the 8 input tokens"), std::string::npos) << msg;
  r = c2.request("POST", "/v1/completions", R"({"model":"demo","prompt":"hi","max_tokens":50})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("max_tokens is 50, more than the 10"), std::string::npos) << r.body;
  r = c2.request("POST", "/v1/completions", R"({"model":"demo","prompt":"hi","max_tokens":3})");
  EXPECT_EQ(r.status, 200) << r.body;
}

// MAX_INPUT_TOKENS bounds each embedding input too: cut to the limit when
// truncating (the default), a 400 with the numbers when truncate is false.
TEST(Production, EmbeddingInputsHonourMaxInputTokens) {
  Server s({}, {"MAX_INPUT_TOKENS=8"});
  HttpClient c(s.port());
  const std::string long_text = "one two three four five six seven eight nine ten eleven twelve";
  auto r = c.request("POST", "/api/embed", json{{"model", "demo-embed"}, {"input", long_text}, {"truncate", false}}.dump());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(json::parse(r.body)["error"].get<std::string>().find("more than the 8 input tokens this server accepts"),
            std::string::npos) << r.body;
  r = c.request("POST", "/api/embed", json{{"model", "demo-embed"}, {"input", long_text}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["prompt_eval_count"], 8) << r.body;
  r = c.request("POST", "/api/embeddings", json{{"model", "demo-embed"}, {"prompt", long_text}}.dump());
  EXPECT_EQ(r.status, 200) << r.body;
  r = c.request("POST", "/v1/embeddings", json{{"model", "demo-embed"}, {"input", {long_text, long_text + " more"}}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 16) << r.body;
  EXPECT_EQ(j["data"][0]["embedding"], j["data"][1]["embedding"]) << "both cut to the same first 8 tokens";
  // A short input is untouched.
  r = c.request("POST", "/api/embed", json{{"model", "demo-embed"}, {"input", "hi"}, {"truncate", false}}.dump());
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_LT(json::parse(r.body)["prompt_eval_count"].get<int>(), 8);
}

// Token budgets (RATE_LIMIT_TOKENS_PER_MINUTE, a key's tpm): requests pass
// while the tokens used (prompt + completion) are under the budget; once it is
// spent the next one is a 429 with Retry-After and the token headers.
TEST(Production, TokenBudget429WithHeaders) {
  const std::string keys = tmp_path("tpm-keys");
  fs::remove(keys);
  std::string out;
  ASSERT_EQ(run("keys add small --file " + keys + " --tpm 10", &out), 0) << out;
  std::string small = out.substr(out.find("lmh_"));
  small = small.substr(0, small.find('\n'));
  {
    Server s({}, {"RATE_LIMIT_TOKENS_PER_MINUTE=40"});
    int64_t used = 0;
    int admitted = 0;
    lmhost::testing::ClientResponse r;
    for (int i = 0; i < 20; ++i) {
      HttpClient c(s.port());
      r = c.request("POST", "/v1/chat/completions", kChat);
      if (r.status != 200) break;
      ++admitted;
      const json u = json::parse(r.body)["usage"];
      used += u["prompt_tokens"].get<int64_t>() + u["completion_tokens"].get<int64_t>();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the charge follows the response
    }
    ASSERT_EQ(r.status, 429) << "after " << admitted << " requests using " << used << " tokens: " << r.body;
    EXPECT_GE(used, 40) << "admitted while under the budget";
    EXPECT_GE(admitted, 1);
    const int retry = std::stoi(r.header("retry-after"));
    EXPECT_GE(retry, 1);
    EXPECT_LE(retry, 61);
    EXPECT_EQ(r.header("x-ratelimit-limit-tokens"), "40");
    EXPECT_EQ(r.header("x-ratelimit-remaining-tokens"), "0");
    EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("40 tokens per minute"), std::string::npos)
        << r.body;
    HttpClient c(s.port());
    auto o = c.request("POST", "/api/chat", R"({"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":false})");
    EXPECT_EQ(o.status, 429);
    EXPECT_TRUE(json::parse(o.body)["error"].is_string()) << "Ollama shape: " << o.body;
    EXPECT_FALSE(o.header("retry-after").empty());
    const std::string m = c.request("GET", "/metrics").body;
    EXPECT_NE(m.find("limit=\"tokens\"}"), std::string::npos) << m;
  }
  {
    // A key's own budget: 10 tokens a minute for "small"; the other key has none.
    Server s({"--api-key", "other-key-1"}, {"API_KEYS_FILE=" + keys});
    HttpClient c(s.port());
    const std::map<std::string, std::string> as_small = {{"Authorization", "Bearer " + small}};
    auto r = c.request("POST", "/v1/chat/completions", kChat, as_small);
    ASSERT_EQ(r.status, 200) << r.body;  // the budget is not spent before it
    const json u = json::parse(r.body)["usage"];
    ASSERT_GE(u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>(), 10) << "one chat spends 10 tokens";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    r = c.request("POST", "/v1/chat/completions", kChat, as_small);
    EXPECT_EQ(r.status, 429) << r.body;
    EXPECT_EQ(r.header("x-ratelimit-limit-tokens"), "10");
    EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("API key 'small'"), std::string::npos) << r.body;
    HttpClient c2(s.port());
    EXPECT_EQ(c2.request("POST", "/v1/chat/completions", kChat, {{"x-api-key", "other-key-1"}}).status, 200)
        << "another key's budget is its own";
  }
  fs::remove(keys);
}

// MAX_CONNECTIONS: a connection beyond the limit gets a 503 (with
// Retry-After) and is closed; once one closes, a new one is served.
TEST(Production, MaxConnections503) {
  Server s({}, {"MAX_CONNECTIONS=2"});
  // Two connections kept alive (retried while the server still counts the
  // readiness probes' connections, closed a moment ago).
  auto open_one = [&](HttpClient& c) {
    for (int i = 0; i < 50; ++i) {
      if (c.request("GET", "/v1/models").status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      c.connect();
    }
    return false;
  };
  HttpClient a(s.port());
  ASSERT_TRUE(open_one(a));
  HttpClient b(s.port());
  ASSERT_TRUE(open_one(b));
  HttpClient over(s.port());
  auto r = over.request("GET", "/v1/models");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.header("retry-after"), "1");
  EXPECT_NE(r.body.find("too many open connections (the limit is 2)"), std::string::npos) << r.body;
  a.close();
  lmhost::testing::ClientResponse again;
  for (int i = 0; i < 50; ++i) {  // the server notices the close
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    HttpClient n(s.port());
    again = n.request("GET", "/v1/models");
    if (again.status == 200) break;
  }
  EXPECT_EQ(again.status, 200);
  auto rb = b.request("GET", "/v1/models");
  EXPECT_EQ(rb.status, 200) << rb.body;
}

// Start-up is JSON lines only: the model loads (engine), the demo notice and
// the listening line all go through the JSON logger.
TEST(Production, StartupAndModelLoadLinesAreJson) {
  Server s({}, {});
  bool chat_ready = false, embed_ready = false, demo_notice = false;
  std::istringstream in(s.log_text());
  for (std::string l; std::getline(in, l);) {
    const json j = json::parse(l, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not a JSON line: " << l;
    EXPECT_TRUE(j.contains("time") && j.contains("level")) << l;
    const std::string msg = j.value("msg", "");
    if (msg == "model ready" && j.value("model", "") == "demo") {
      chat_ready = true;
      EXPECT_GT(j.value("parameters", 0), 0) << l;
      EXPECT_GT(j.value("n_ctx", 0), 0) << l;
      EXPECT_TRUE(j.contains("load_ms")) << l;
    }
    if (msg == "embedding model ready" && j.value("model", "") == "demo-embed") embed_ready = true;
    if (msg.find("no model given") != std::string::npos) {
      demo_notice = true;
      EXPECT_EQ(j["level"], "warn");
      EXPECT_NE(j.value("hint", "").find("--model"), std::string::npos) << l;
    }
  }
  EXPECT_TRUE(chat_ready) << s.log_text();
  EXPECT_TRUE(embed_ready) << s.log_text();
  EXPECT_TRUE(demo_notice) << s.log_text();
  const std::string junk = tmp_path("junk.gguf");
  std::ofstream(junk) << "not a GGUF file";
  Server bad({"--model", "broken=" + junk}, {}, false);
  for (int i = 0; i < 100 && bad.log_text().find("model failed to load") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  bool failed_line = false;
  for (const auto& j : bad.lines())
    if (j.value("msg", "") == "model failed to load") failed_line = j["level"] == "error" && j.value("model", "") == "broken";
  EXPECT_TRUE(failed_line) << bad.log_text();
  fs::remove(junk);
}

TEST(Production, NotReadyIs503AndMetricsPassPromtool) {
  const std::string bad = tmp_path("broken.gguf");
  std::ofstream(bad) << "this is not a gguf file";
  Server s({"--model", "broken=" + bad}, {}, false);
  HttpClient c(s.port());
  lmhost::testing::ClientResponse r;
  for (int i = 0; i < 100; ++i) {
    r = c.request("GET", "/ready");
    if (json::parse(r.body)["models"]["broken"] == "error") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.header("retry-after"), "1");
  EXPECT_EQ(c.request("POST", "/v1/completions", R"({"prompt":"x"})").status, 503);
  fs::remove(bad);
  // promtool on a server that served some traffic.
  Server ok({}, {});
  HttpClient c2(ok.port());
  ASSERT_EQ(c2.request("POST", "/v1/chat/completions", kChat).status, 200);
  c2.request("GET", "/nope");
  const std::string metrics = c2.request("GET", "/metrics").body;
  for (const char* name : {"lmhost_http_requests_total{", "lmhost_http_request_duration_seconds_bucket{",
                           "lmhost_time_to_first_token_seconds_bucket{", "lmhost_time_per_output_token_seconds",
                           "lmhost_queue_wait_seconds_bucket{", "lmhost_queue_depth{", "lmhost_active_sequences{",
                           "lmhost_prompt_tokens_total{", "lmhost_completion_tokens_total{", "lmhost_models_loaded 2",
                           "lmhost_process_resident_memory_bytes", "lmhost_build_info{", "lmhost_cache_hits_total"})
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
  if (::access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool not installed (apt-get install prometheus)";
  const std::string f = tmp_path("metrics.txt");
  std::ofstream(f) << metrics;
  FILE* p = popen(("/usr/bin/promtool check metrics < " + f + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  EXPECT_EQ(WEXITSTATUS(st), 0) << out << "\n" << metrics;
  EXPECT_EQ(out, "") << out;  // no lint warnings either
  fs::remove(f);
}

TEST(Production, TwoProcessesShareOneKeyLimitThroughRedis) {
  if (!lmhost::testing::RedisServer::available()) GTEST_SKIP() << lmhost::testing::RedisServer::kSkip;
  lmhost::testing::RedisServer redis;
  std::vector<std::string> env = {"REDIS_URL=" + redis.url(), "RATE_LIMIT_REQUESTS_PER_MINUTE=4",
                                  "RATE_LIMIT_BURST=2", "API_KEYS=shared-key"};
  Server a({}, env, false), b({}, env, false);
  HttpClient ca(a.port()), cb(b.port());
  int ok = 0, limited = 0;
  for (int i = 0; i < 14; ++i) {
    auto r = (i % 2 ? ca : cb).request("GET", "/v1/models", "", {{"x-api-key", "shared-key"}});
    ok += r.status == 200;
    limited += r.status == 429;
  }
  EXPECT_EQ(ok, 6);  // limit + burst in total over both processes
  EXPECT_EQ(limited, 8);
  // Redis goes away: fail open (default), no crash, counted.
  redis.stop();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ((i % 2 ? ca : cb).request("GET", "/v1/models", "", {{"x-api-key", "shared-key"}}).status, 200);
  }
  EXPECT_TRUE(a.alive());
  EXPECT_TRUE(b.alive());
  const std::string m = ca.request("GET", "/metrics").body;
  EXPECT_NE(m.find("lmhost_rate_limiter_redis_outages_total 1"), std::string::npos) << m;
  EXPECT_NE(a.log_text().find("rate limiter: Redis unavailable"), std::string::npos);
}

TEST(Production, RedisDownClosedModeRefuses) {
  if (!lmhost::testing::RedisServer::available()) GTEST_SKIP() << lmhost::testing::RedisServer::kSkip;
  lmhost::testing::RedisServer redis;
  Server s({"--set", "rate_limit.on_redis_error=closed"},
           {"REDIS_URL=" + redis.url(), "RATE_LIMIT_REQUESTS_PER_MINUTE=100"}, false);
  HttpClient c(s.port());
  EXPECT_EQ(c.request("GET", "/v1/models").status, 200);
  redis.stop();
  auto r = c.request("GET", "/v1/models");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("rate limiter is unavailable"), std::string::npos);
  redis.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  bool back = false;
  for (int i = 0; i < 30 && !back; ++i) {
    back = c.request("GET", "/v1/models").status == 200;
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(back);
  EXPECT_TRUE(s.alive());
}
