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
  const std::string model = d / "m.gguf";
  ASSERT_EQ(std::system((std::string(LMHOST_BINARY) + " synth --shape demo --type Q8_0 --seed 1 -o " + model +
                         " >/dev/null 2>&1")
                            .c_str()),
            0);
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
    EXPECT_EQ(j["eval_count"], kTokens);
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
    EXPECT_EQ(lines.back()["eval_count"], kTokens);
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
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["completion_tokens"], kTokens);
  }
  r = front.req("POST", "/v1/chat/completions", openai_chat(true));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-backend"), a_name);
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  EXPECT_NE(r.body.find("\"object\":\"chat.completion.chunk\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"finish_reason\":\"length\""), std::string::npos) << r.body;
  EXPECT_EQ(r.body.substr(r.body.size() - 14), "data: [DONE]\n\n") << r.body;
  // The log line of the front names the backend.
  EXPECT_NE(front.log_text().find("\"backend\":\"" + a_name + "\""), std::string::npos);
}
