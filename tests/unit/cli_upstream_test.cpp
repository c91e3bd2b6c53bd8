// Upstreams through real processes: two lmhost instances serve the same model
// name ("shared"), one used as an Ollama upstream and one as an OpenAI
// upstream of a front lmhost that has no local model of that name. Checks the
// listing, pass-through and translation (JSON and streams), then a request
// loop while one upstream is killed (no failed client request) and restarted
// on its port (health recovers, traffic returns: its /metrics count rises).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "serve_process.h"

namespace {

using json = nlohmann::json;
using lmhost::testing::HttpClient;
using lmhost::testing::ServeOptions;
using lmhost::testing::ServeProcess;
using Dir = lmhost::testing::TempDir;
namespace fs = std::filesystem;

// `lmhost serve` on a fixed port (0: any), so a killed upstream can come back on the same one.
class Server : public ServeProcess {
 public:
  Server(int port, std::vector<std::string> args) : ServeProcess(std::move(args), ServeOptions{.port = port, .wait_ready = true, .env = {}}) {}
};

// 12 tokens: the demo model's random weights often pick byte tokens that print
// nothing on their own; with 12 a stream almost surely carries some text.
constexpr int kTokens = 12;
// The random-weight demo model may sample an end-of-generation token before
// the limit: then the reason is "stop" and the count lower. With "length" the
// count must be exactly the limit.
void expect_count(const json& reason, const json& count, int limit, const std::string& what = "") {
  ASSERT_TRUE(reason.is_string() && count.is_number_integer()) << what << " " << reason << " " << count;
  if (reason == "length") EXPECT_EQ(count.get<int>(), limit) << what;
  else EXPECT_TRUE(reason == "stop" && count.get<int>() > 0 && count.get<int>() < limit) << what << " " << reason << " " << count;
}
json openai_chat(bool stream) {
  return {{"model", "shared"}, {"messages", {{{"role", "user"}, {"content", "hello"}}}}, {"max_tokens", kTokens},
          {"stream", stream}};
}
json ollama_chat(bool stream) {
  return {{"model", "shared"}, {"messages", {{{"role", "user"}, {"content", "hello"}}}},
          {"options", {{"num_predict", kTokens}}}, {"stream", stream}};
}

// lmhost_http_requests_total of one route on a server (all models and statuses).
double requests_on(Server& s, const std::string& route) {
  std::istringstream in(s.req("GET", "/metrics").body);
  double total = 0;
  for (std::string l; std::getline(in, l);)
    if (l.rfind("lmhost_http_requests_total{", 0) == 0 && l.find("route=\"" + route + "\"") != std::string::npos)
      total += std::stod(l.substr(l.rfind(' ') + 1));
  return total;
}

bool lists(Server& s, const std::string& name) {
  std::set<std::string> tags, v1;
  const json tj = s.get("/api/tags"), vj = s.get("/v1/models");
  for (const auto& m : tj["models"]) tags.insert(m["name"].get<std::string>());
  for (const auto& m : vj["data"]) v1.insert(m["id"].get<std::string>());
  return tags.count(name) && v1.count(name);
}

}  // namespace

TEST(Upstream, PoolOfOllamaAndOpenAIUpstreamsFailoverAndRecovery) {
  Dir d;
  const std::string model = lmhost::testing::synth_demo(d, "m", 1);
  auto a = std::make_unique<Server>(0, std::vector<std::string>{"--model", "shared=" + model});
  Server b(0, {"-q", "--model", "shared=" + model});
  const int pa = a->port();
  const std::string a_name = "ollama:http://127.0.0.1:" + std::to_string(pa);
  const std::string b_name = "openai:http://127.0.0.1:" + std::to_string(b.port());
  Server front(0, {"--upstream", "ollama:http://127.0.0.1:" + std::to_string(pa), "--upstream",
                   "openai:127.0.0.1:" + std::to_string(b.port()) + "/v1", "--set",
                   "upstream.health_interval_seconds=1", "--set", "upstream.cooldown_seconds=1"});

  // Listed by the front in both APIs (besides its own demo models).
  EXPECT_TRUE(lists(front, "shared"));
  EXPECT_TRUE(lists(front, "demo"));
  {
    auto one = front.req("GET", "/v1/models/shared");
    ASSERT_EQ(one.status, 200) << one.body;
    EXPECT_EQ(json::parse(one.body)["owned_by"], "upstream");
  }

  // Each flavour goes to the upstream of its flavour (pass-through).
  auto r = front.req("POST", "/v1/chat/completions", openai_chat(false));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), b_name);
  EXPECT_EQ(json::parse(r.body)["object"], "chat.completion");
  r = front.req("POST", "/api/chat", ollama_chat(false));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), a_name);
  EXPECT_EQ(json::parse(r.body)["done"], true);
  r = front.req("POST", "/api/generate", json{{"model", "shared"}, {"prompt", "hi"}, {"stream", false},
                                              {"options", {{"num_predict", 3}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), a_name);
  r = front.req("POST", "/v1/completions", json{{"model", "shared"}, {"prompt", "hi"}, {"max_tokens", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), b_name);
  // Streams relayed: SSE ends with [DONE], NDJSON with done:true.
  r = front.req("POST", "/v1/chat/completions", openai_chat(true));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("data: [DONE]"), std::string::npos) << r.body;
  r = front.req("POST", "/api/chat", ollama_chat(true));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"done\":true"), std::string::npos) << r.body;
  // The request id reaches the upstream (its log line names the same request).
  {
    HttpClient c(front.port(), 60000);
    auto rr = c.request("POST", "/api/chat", ollama_chat(false).dump(), {{"X-Request-Id", "req-upstream-test-42"}});
    ASSERT_EQ(rr.status, 200) << rr.body;
    bool seen = false;  // the log line is written once the upstream's response is done
    for (int i = 0; i < 100 && !seen; ++i) {
      seen = a->log_text().find("\"request_id\":\"req-upstream-test-42\"") != std::string::npos;
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(seen) << a->log_text();
  }
  // Ollama's naming: NAME:latest is NAME.
  {
    json body = ollama_chat(false);
    body["model"] = "shared:latest";
    auto rl = front.req("POST", "/api/chat", body);
    EXPECT_EQ(rl.status, 200) << rl.body;
    EXPECT_EQ(rl.header("x-lmhost-backend"), a_name);
  }
  // An unknown model is still a 404.
  EXPECT_EQ(front.req("POST", "/api/chat", json{{"model", "nope"}, {"messages", json::array()}}).status, 404);

  // Backend in the metrics of the front.
  const std::string metrics = front.req("GET", "/metrics").body;
  EXPECT_NE(metrics.find("lmhost_upstream_requests_total{backend=\"" + a_name + "\""), std::string::npos);
  EXPECT_NE(metrics.find("lmhost_upstream_requests_total{backend=\"" + b_name + "\""), std::string::npos);
  // Token counts of proxied answers reach the front's metrics.
  EXPECT_NE(metrics.find("lmhost_completion_tokens_total{model=\"shared\"}"), std::string::npos) << metrics;

  // A request loop (both flavours, non-streaming) while the Ollama upstream is killed.
  std::atomic<int> failed{0}, done{0}, on_b_translated{0};
  std::string first_failure;
  std::mutex fm;
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    for (int i = 0; !stop.load() && i < 400; ++i) {
      const bool oai = i % 2 == 0;
      auto res = front.req("POST", oai ? "/v1/chat/completions" : "/api/chat", oai ? openai_chat(false) : ollama_chat(false));
      bool ok = res.status == 200;
      if (ok) {
        auto j = json::parse(res.body, nullptr, false);
        ok = oai ? j.is_object() && j.contains("choices") : j.is_object() && j.value("done", false);
        if (!oai && res.header("x-lmhost-backend") == b_name) ++on_b_translated;
      }
      if (!ok) {
        ++failed;
        std::lock_guard lk(fm);
        if (first_failure.empty()) first_failure = std::to_string(res.status) + " " + res.body;
      }
      ++done;
    }
  });
  while (done.load() < 10) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  a->kill();
  const int at_kill = done.load();
  while (done.load() < at_kill + 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(on_b_translated.load(), 0) << "Ollama requests should fail over to the OpenAI upstream (translated)";
  // Translated while only the OpenAI upstream is up: Ollama chat, JSON and NDJSON stream (from SSE).
  r = front.req("POST", "/api/chat", ollama_chat(false));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), b_name);
  {
    const json j = json::parse(r.body);
    EXPECT_EQ(j["done"], true);
    EXPECT_EQ(j["message"]["role"], "assistant");
    expect_count(j["done_reason"], j["eval_count"], kTokens);
  }
  r = front.req("POST", "/api/chat", ollama_chat(true));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), b_name);
  EXPECT_EQ(r.header("content-type"), "application/x-ndjson");
  {
    std::istringstream in(r.body);
    std::vector<json> lines;
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) lines.push_back(json::parse(l));
    ASSERT_GE(lines.size(), 2u) << r.body;
    EXPECT_EQ(lines.back()["done"], true);
    expect_count(lines.back()["done_reason"], lines.back()["eval_count"], kTokens);
    for (size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_EQ(lines[i]["done"], false);
  }

  // Restart it on its port: health recovers and Ollama requests return to it.
  a = std::make_unique<Server>(pa, std::vector<std::string>{"-q", "--model", "shared=" + model});
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    back = front.req("POST", "/api/chat", ollama_chat(false)).header("x-lmhost-backend") == a_name;
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop = true;
  loop.join();
  EXPECT_TRUE(back) << "the restarted upstream gets no traffic";
  EXPECT_GT(requests_on(*a, "/api/chat"), 0);
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_GE(done.load(), 30);
  EXPECT_TRUE(lists(front, "shared"));

  // The OpenAI upstream killed: OpenAI requests are translated to the Ollama one (JSON and SSE from NDJSON).
  b.kill();
  r = front.req("POST", "/v1/chat/completions", openai_chat(false));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), a_name);
  {
    const json j = json::parse(r.body);
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
    expect_count(j["choices"][0]["finish_reason"], j["usage"]["completion_tokens"], kTokens);
  }
  r = front.req("POST", "/v1/chat/completions", openai_chat(true));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), a_name);
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  EXPECT_NE(r.body.find("\"object\":\"chat.completion.chunk\""), std::string::npos) << r.body;
  EXPECT_TRUE(r.body.find("\"finish_reason\":\"length\"") != std::string::npos ||
              r.body.find("\"finish_reason\":\"stop\"") != std::string::npos)
      << r.body;
  EXPECT_EQ(r.body.substr(r.body.size() - 14), "data: [DONE]\n\n") << r.body;
  // The log line of the front names the backend.
  EXPECT_NE(front.log_text().find("\"backend\":\"" + a_name + "\""), std::string::npos);
}

namespace {

std::vector<json> ndjson_lines(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(json::parse(l));
  return out;
}

// The data of SSE events ("[DONE]" kept as a string).
std::vector<json> sse_data(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  for (std::string l; std::getline(in, l);)
    if (l.rfind("data: ", 0) == 0) out.push_back(l == "data: [DONE]" ? json("[DONE]") : json::parse(l.substr(6)));
  return out;
}

void expect_vectors_near(const json& got, const json& want, const std::string& what) {
  ASSERT_TRUE(got.is_array() && want.is_array()) << what;
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_GT(want.size(), 8u) << what;
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i].get<double>(), want[i].get<double>(), 1e-6) << what << " [" << i << "]";
}

// lmhost_http_requests_total of one route and status on a server.
double requests_with(Server& s, const std::string& route, const std::string& status) {
  std::istringstream in(s.req("GET", "/metrics").body);
  double total = 0;
  for (std::string l; std::getline(in, l);)
    if (l.rfind("lmhost_http_requests_total{", 0) == 0 && l.find("route=\"" + route + "\"") != std::string::npos &&
        l.find("status=\"" + status + "\"") != std::string::npos)
      total += std::stod(l.substr(l.rfind(' ') + 1));
  return total;
}

}  // namespace

// Every flavour reaches every backend: two lmhost replicas (built-in demo
// models "demo" and "demo-embed"), one used as an OpenAI upstream (names
// prefixed "o-") and one as an Ollama upstream ("l-"), so each model is only
// offered by an upstream of one flavour. Ollama generate / embed / embeddings
// requests are translated for the OpenAI one, OpenAI completions / embeddings
// for the Ollama one, streamed and not; same-flavour requests under a prefixed
// name are passed through with the name mapped both ways.
TEST(Upstream, CompletionsGenerateAndEmbeddingsTranslatedBothWays) {
  Server oa(0, {"-q"}), ol(0, {"-q"});
  const std::string oa_name = "openai:http://127.0.0.1:" + std::to_string(oa.port());
  const std::string ol_name = "ollama:http://127.0.0.1:" + std::to_string(ol.port());
  Server front(0, {"--upstream", oa_name + "?prefix=o-", "--upstream", ol_name + "?prefix=l-"});
  for (const char* m : {"o-demo", "o-demo-embed", "l-demo", "l-demo-embed"}) EXPECT_TRUE(lists(front, m)) << m;

  // Ollama /api/generate from the OpenAI upstream: templated -> chat, JSON and NDJSON.
  auto r = front.req("POST", "/api/generate", json{{"model", "o-demo"}, {"prompt", "hi"}, {"stream", false},
                                                   {"options", {{"num_predict", 6}, {"seed", 1}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), oa_name);
  {
    const json j = json::parse(r.body);
    EXPECT_EQ(j["model"], "o-demo");
    EXPECT_EQ(j["done"], true);
    expect_count(j["done_reason"], j["eval_count"], 6);
    EXPECT_GT(j["prompt_eval_count"].get<int>(), 0);
    EXPECT_TRUE(j["response"].is_string());
  }
  for (bool raw : {false, true}) {  // raw: a plain completion upstream
    r = front.req("POST", "/api/generate", json{{"model", "o-demo"}, {"prompt", "hi"}, {"raw", raw},
                                                {"options", {{"num_predict", 6}}}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/x-ndjson");
    const auto lines = ndjson_lines(r.body);
    ASSERT_GE(lines.size(), 1u) << r.body;
    for (size_t i = 0; i + 1 < lines.size(); ++i) {
      EXPECT_EQ(lines[i]["done"], false);
      EXPECT_EQ(lines[i]["model"], "o-demo");
      EXPECT_TRUE(lines[i]["response"].is_string());
    }
    EXPECT_EQ(lines.back()["done"], true) << r.body;
    expect_count(lines.back()["done_reason"], lines.back()["eval_count"], 6, raw ? "raw" : "templated");
  }
  // OpenAI /v1/completions from the Ollama upstream, JSON and SSE (with the usage chunk).
  r = front.req("POST", "/v1/completions", json{{"model", "l-demo"}, {"prompt", "hi"}, {"max_tokens", 6}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), ol_name);
  {
    const json j = json::parse(r.body);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["model"], "l-demo");
    EXPECT_TRUE(j["choices"][0]["text"].is_string());
    expect_count(j["choices"][0]["finish_reason"], j["usage"]["completion_tokens"], 6);
  }
  r = front.req("POST", "/v1/completions", json{{"model", "l-demo"}, {"prompt", "hi"}, {"max_tokens", 6}, {"stream", true},
                                                {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  {
    const auto ev = sse_data(r.body);
    ASSERT_GE(ev.size(), 3u) << r.body;
    EXPECT_EQ(ev.back(), "[DONE]");
    const json& usage = ev[ev.size() - 2];
    expect_count(ev[ev.size() - 3]["choices"][0]["finish_reason"], usage["usage"]["completion_tokens"], 6, r.body);
    for (size_t i = 0; i + 2 < ev.size(); ++i) {
      EXPECT_EQ(ev[i]["object"], "text_completion");
      EXPECT_EQ(ev[i]["model"], "l-demo");
    }
  }
  // Chat under a prefixed name, same flavour: passed through, the name mapped both ways.
  r = front.req("POST", "/api/chat", json{{"model", "l-demo"}, {"messages", {{{"role", "user"}, {"content", "x"}}}},
                                          {"options", {{"num_predict", 4}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  for (const auto& l : ndjson_lines(r.body)) EXPECT_EQ(l["model"], "l-demo");

  // Embeddings: the translated vectors are the upstream's own.
  const json inputs = {"alpha", "beta gamma"};
  // The reference vectors, from each upstream directly.
  auto ref_oa = oa.req("POST", "/v1/embeddings", json{{"model", "demo-embed"}, {"input", inputs}});
  auto ref_ol = ol.req("POST", "/api/embed", json{{"model", "demo-embed"}, {"input", inputs}});
  ASSERT_EQ(ref_oa.status, 200) << ref_oa.body;
  ASSERT_EQ(ref_ol.status, 200) << ref_ol.body;
  const json joa = json::parse(ref_oa.body), jol = json::parse(ref_ol.body);
  r = front.req("POST", "/api/embed", json{{"model", "o-demo-embed"}, {"input", inputs}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), oa_name);
  {
    const json j = json::parse(r.body);
    EXPECT_EQ(j["model"], "o-demo-embed");
    ASSERT_EQ(j["embeddings"].size(), 2u);
    expect_vectors_near(j["embeddings"][0], joa["data"][0]["embedding"], "/api/embed 0");
    expect_vectors_near(j["embeddings"][1], joa["data"][1]["embedding"], "/api/embed 1");
    EXPECT_EQ(j["prompt_eval_count"], joa["usage"]["prompt_tokens"]);
  }
  r = front.req("POST", "/api/embeddings", json{{"model", "o-demo-embed"}, {"prompt", "alpha"}});
  ASSERT_EQ(r.status, 200) << r.body;
  expect_vectors_near(json::parse(r.body)["embedding"], joa["data"][0]["embedding"], "/api/embeddings");
  r = front.req("POST", "/v1/embeddings", json{{"model", "l-demo-embed"}, {"input", inputs}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), ol_name);
  {
    const json j = json::parse(r.body);
    EXPECT_EQ(j["object"], "list");
    EXPECT_EQ(j["model"], "l-demo-embed");
    ASSERT_EQ(j["data"].size(), 2u);
    EXPECT_EQ(j["data"][1]["index"], 1);
    expect_vectors_near(j["data"][0]["embedding"], jol["embeddings"][0], "/v1/embeddings 0");
    expect_vectors_near(j["data"][1]["embedding"], jol["embeddings"][1], "/v1/embeddings 1");
    EXPECT_EQ(j["usage"]["prompt_tokens"], jol["prompt_eval_count"]);
  }
  // No Ollama form for token-id inputs, and no other upstream: a 400 that says why.
  r = front.req("POST", "/v1/embeddings", json{{"model", "l-demo-embed"}, {"input", {1, 2, 3}}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("token ids"), std::string::npos) << r.body;
  // Token counts of translated answers reach the front's metrics under the client's name.
  const std::string metrics = front.req("GET", "/metrics").body;
  EXPECT_NE(metrics.find("lmhost_completion_tokens_total{model=\"o-demo\"}"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("lmhost_upstream_in_flight{backend=\"" + oa_name + "\"} 0"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("lmhost_upstream_up{backend=\"" + ol_name + "\"} 1"), std::string::npos) << metrics;
}

// A model offered under a configured name by two Ollama-flavour replicas; one
// of them is restarted without it (its listing in the front is stale until
// the next health check, set far away): requests that go to it get a 404 there
// and are served by the other. A request the upstream rejects as bad input
// (400) is returned as is, not retried.
TEST(Upstream, StaleModelIsServedByTheOtherAndBadInputIsNotRetried) {
  Dir d;
  const std::string model = lmhost::testing::synth_demo(d, "m", 1);
  Server a(0, {"-q", "--model", "m=" + model});
  auto b = std::make_unique<Server>(0, std::vector<std::string>{"-q", "--model", "m=" + model});
  const int pb = b->port();
  const std::string a_name = "ollama:http://127.0.0.1:" + std::to_string(a.port());
  const std::string b_name = "ollama:http://127.0.0.1:" + std::to_string(pb);
  Server front(0, {"--upstream", a_name + "?models=chat=m", "--upstream", b_name + "?models=chat=m", "--set",
                   "upstream.health_interval_seconds=3600", "--set", "upstream.balance=least_outstanding"});
  EXPECT_TRUE(lists(front, "chat"));
  EXPECT_FALSE(lists(front, "m"));  // only the configured name
  const json chat = {{"model", "chat"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}, {"stream", false},
                     {"options", {{"num_predict", 3}}}};
  std::set<std::string> backends;
  for (int i = 0; i < 4; ++i) {
    auto r = front.req("POST", "/api/chat", chat);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["model"], "chat");  // the client's name, not the upstream's
    backends.insert(r.header("x-lmhost-backend"));
  }
  EXPECT_EQ(backends.size(), 2u) << "ties should go round";
  // The upstream's own log names its model.
  EXPECT_NE(a.log_text().find("\"model\":\"m\""), std::string::npos);

  // b comes back on its port without the model.
  b.reset();
  b = std::make_unique<Server>(pb, std::vector<std::string>{"-q", "--model", "other=" + model});
  for (int i = 0; i < 4; ++i) {
    auto r = front.req("POST", "/api/chat", chat);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("x-lmhost-backend"), a_name);
  }
  EXPECT_TRUE(lmhost::testing::eventually([&] { return requests_with(*b, "/api/chat", "404") >= 1; }))
      << "the stale upstream was never tried";

  // Bad input: one upstream answers 400, the client gets it, nobody else is asked.
  const double before = requests_with(a, "/api/chat", "400") + requests_with(*b, "/api/chat", "400");
  json bad = chat;
  bad["options"] = {{"num_predict", 3}, {"temperature", "hot"}};
  auto r = front.req("POST", "/api/chat", bad);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(json::parse(r.body).value("error", "").find("temperature"), std::string::npos) << r.body;
  // (an upstream counts a request once its response is done: it may trail the front's answer)
  auto bad_answers = [&] { return requests_with(a, "/api/chat", "400") + requests_with(*b, "/api/chat", "400"); };
  EXPECT_TRUE(lmhost::testing::eventually([&] { return bad_answers() >= before + 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(bad_answers(), before + 1);
}
