// Tool calls through the HTTP server on scripted generations: a byte-level
// backend that writes exactly the text given as the last user message, run
// by the real Scheduler, shaped by the real OpenAI / Ollama chat responses
// (api::openai_chat_response, api::ollama_chat_response) and served by the
// real HttpServer. Checks the exact JSON / SSE / NDJSON a client sees, and
// (when node and the npm clients in tests/integration are there) that the
// official `openai` and `ollama` packages read the calls.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "api/common.h"
#include "engine/scheduler.h"
#include "unit/engine_sched_fake.h"
#include "unit/http_test_client.h"

using namespace lmhost;
using namespace lmhost::testing;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// The prompt is SCRIPT + '\x01'; the model then writes SCRIPT byte by byte and EOS.
class ScriptBackend final : public Backend {
 public:
  explicit ScriptBackend(int n_seq, int n_ctx) : seqs_(n_seq), n_ctx_(n_ctx) {}
  int n_seq() const override { return static_cast<int>(seqs_.size()); }
  int n_ctx_per_seq() const override { return n_ctx_; }
  int n_vocab() const override { return 260; }
  std::span<const float> forward(std::span<const SeqToken> batch) override {
    out_.clear();
    for (const auto& e : batch) {
      auto& s = seqs_.at(e.seq);
      s.resize(e.pos);
      s.push_back(e.token);
      if (!e.logits) continue;
      out_.resize(out_.size() + 260, 0.0f);
      float* l = out_.data() + out_.size() - 260;
      size_t k = 0;
      while (k < s.size() && s[k] != 1) ++k;
      const size_t written = s.size() - std::min(s.size(), k + 1);
      l[written < k ? s[written] : 256] = 10.0f;
    }
    return out_;
  }
  void clear_seq(int seq) override { seqs_.at(seq).clear(); }
  void truncate_seq(int seq, int n_keep) override { seqs_.at(seq).resize(n_keep); }

 private:
  std::vector<std::vector<Token>> seqs_;
  int n_ctx_;
  std::vector<float> out_;
};

api::ToolFormat format_named(const std::string& model) {
  if (model == "hermes") return api::ToolFormat::Hermes;
  if (model == "llama3") return api::ToolFormat::Llama3;
  if (model == "mistral") return api::ToolFormat::Mistral;
  return api::ToolFormat::Json;
}

struct ScriptServer {
  ByteTokenizer tok;
  std::unique_ptr<Scheduler> sched = std::make_unique<Scheduler>(std::make_unique<ScriptBackend>(2, 4096), tok);
  std::shared_ptr<server::Router> router = std::make_shared<server::Router>();
  std::unique_ptr<server::HttpServer> http;

  std::shared_ptr<RequestHandle> submit(const ojson& b) {
    const std::string script = b.at("messages").back().at("content").get<std::string>();
    GenerateRequest g;
    for (unsigned char c : script) g.prompt.push_back(c);
    g.prompt.push_back(1);
    g.sampling.temperature = 0;
    g.max_tokens = 1000;
    return sched->submit(std::move(g));
  }
  static api::ToolMode mode(const ojson& b) {
    const json jb = json::parse(b.dump());
    auto t = b.find("tools");
    return api::tool_mode_of(format_named(b.value("model", "")), t == b.end() ? nullptr : &*t, jb);
  }

  ScriptServer() {
    router->add("POST", "/v1/chat/completions", [this](server::HttpRequest& req) {
      const ojson b = ojson::parse(req.body);
      api::OpenAIChatShape s;
      s.id = "chatcmpl-1";
      s.created = 1700000000;
      s.model = b.value("model", "");
      s.stream = b.value("stream", false);
      s.tools = mode(b);
      return api::openai_chat_response({submit(b)}, std::move(s));
    });
    router->add("POST", "/api/chat", [this](server::HttpRequest& req) {
      const ojson b = ojson::parse(req.body);
      return api::ollama_chat_response(submit(b), b.value("model", ""), b.value("stream", true), mode(b));
    });
    server::ServerOptions so;
    so.port = 0;
    so.log_requests = false;
    http = std::make_unique<server::HttpServer>(so, router);
    http->start();
  }
  ~ScriptServer() {
    http->stop();
    sched->stop();
  }
  ClientResponse post(const std::string& path, const json& body) {
    return HttpClient(http->port()).request("POST", path, body.dump());
  }
};

const json kTools = json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}])");

const char* kHermesTwo =
    "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
    "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";

json chat(const std::string& model, const std::string& script, bool stream, bool tools = true) {
  json b = {{"model", model}, {"stream", stream}, {"messages", json::array({{{"role", "user"}, {"content", script}}})}};
  if (tools) b["tools"] = kTools;
  return b;
}

std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  size_t i = 0;
  while ((i = body.find("data: ", i)) != std::string::npos) {
    const size_t e = body.find("\n\n", i);
    const std::string d = body.substr(i + 6, e - i - 6);
    if (d != "[DONE]") out.push_back(json::parse(d));
    i = e;
  }
  return out;
}

std::vector<json> ndjson(const std::string& body) {
  std::vector<json> out;
  size_t i = 0;
  while (i < body.size()) {
    const size_t e = body.find('\n', i);
    out.push_back(json::parse(body.substr(i, e - i)));
    i = e + 1;
  }
  return out;
}

// Replaces the random call ids (checked for their shape) with "ID".
void strip_ids(json& calls) {
  for (auto& c : calls) {
    ASSERT_TRUE(c["id"].is_string());
    const std::string id = c["id"];
    EXPECT_EQ(id.rfind("call_", 0), 0u) << id;
    EXPECT_EQ(id.size(), 29u) << id;
    c["id"] = "ID";
  }
}

}  // namespace

TEST(ToolCallHttp, OpenAINotStreamed) {
  ScriptServer s;
  auto r = s.post("/v1/chat/completions", chat("hermes", kHermesTwo, false));
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  json& m = j["choices"][0]["message"];
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(m["content"], "Checking.");
  strip_ids(m["tool_calls"]);
  EXPECT_EQ(m["tool_calls"], json::parse(R"([
    {"id": "ID", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
    {"id": "ID", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}])"));

  // Only a call: content null. Llama 3's format.
  r = s.post("/v1/chat/completions", chat("llama3", R"({"name": "get_time", "parameters": {}})", false));
  j = json::parse(r.body);
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_null()) << r.body;
  EXPECT_EQ(j["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_time") << r.body;

  // Mistral: the model's 9-character id is kept.
  r = s.post("/v1/chat/completions",
             chat("mistral", R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "Xy12345ab"}])", false));
  j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["message"]["tool_calls"][0]["id"], "Xy12345ab") << r.body;
  EXPECT_EQ(j["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], R"({"city":"Rome"})") << r.body;

  // Malformed call, plain text, no tools, tool_choice none: plain content, finish_reason stop.
  for (const json& b : {chat("hermes", "<tool_call>{\"name\": \"get_weather\", \"arguments\": {", false),
                        chat("hermes", "Sunny in Paris.", false),
                        chat("json", R"({"name": "get_time", "arguments": {}})", false, /*tools=*/false),
                        [] { json x = chat("json", R"({"name": "get_time", "arguments": {}})", false);
                             x["tool_choice"] = "none"; return x; }()}) {
    r = s.post("/v1/chat/completions", b);
    ASSERT_EQ(r.status, 200) << r.body;
    j = json::parse(r.body);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop") << r.body;
    EXPECT_EQ(j["choices"][0]["message"]["content"], b["messages"][0]["content"]) << r.body;
    EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << r.body;
  }

  // parallel_tool_calls false: the first call only; a bad tool_choice is a 400.
  json one = chat("hermes", kHermesTwo, false);
  one["parallel_tool_calls"] = false;
  j = json::parse(s.post("/v1/chat/completions", one).body);
  EXPECT_EQ(j["choices"][0]["message"]["tool_calls"].size(), 1u);
  json bad = chat("hermes", "x", false);
  bad["tool_choice"] = "sometimes";
  EXPECT_EQ(s.post("/v1/chat/completions", bad).status, 400);
}

TEST(ToolCallHttp, OpenAIStreamed) {
  ScriptServer s;
  auto r = s.post("/v1/chat/completions", chat("hermes", kHermesTwo, true));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find("tool_call>"), std::string::npos) << "the call's text must not stream as content: " << r.body;
  std::string content;
  json deltas = json::array();
  std::string finish;
  for (auto& e : sse_events(r.body)) {
    const json& c = e["choices"][0];
    if (c["delta"].contains("content")) content += c["delta"]["content"].get<std::string>();
    if (c["delta"].contains("tool_calls")) deltas.push_back(c["delta"]["tool_calls"][0]);
    if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  EXPECT_EQ(content, "Checking.");
  EXPECT_EQ(finish, "tool_calls");
  ASSERT_EQ(deltas.size(), 4u) << deltas.dump();
  for (int k : {0, 2}) {
    const std::string id = deltas[k].value("id", "");
    EXPECT_EQ(id.rfind("call_", 0), 0u) << id;
    EXPECT_EQ(id.size(), 29u) << id;
    deltas[k]["id"] = "ID";
  }
  EXPECT_EQ(deltas, json::parse(R"([
    {"index": 0, "id": "ID", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
    {"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}},
    {"index": 1, "id": "ID", "type": "function", "function": {"name": "get_time", "arguments": ""}},
    {"index": 1, "function": {"arguments": "{}"}}])"));

  // Plain text streams token by token as before; held JSON that is no call comes out whole at the end.
  r = s.post("/v1/chat/completions", chat("hermes", "Sunny, 21 C.", true));
  auto ev = sse_events(r.body);
  content.clear();
  int content_chunks = 0;
  for (auto& e : ev)
    if (e["choices"][0]["delta"].contains("content") && !e["choices"][0]["delta"]["content"].get<std::string>().empty()) {
      content += e["choices"][0]["delta"]["content"].get<std::string>();
      ++content_chunks;
    }
  EXPECT_EQ(content, "Sunny, 21 C.");
  EXPECT_GE(content_chunks, 8);
  EXPECT_EQ(ev.back()["choices"][0]["finish_reason"], "stop");
  r = s.post("/v1/chat/completions", chat("json", R"({"city": "Paris"})", true));
  ev = sse_events(r.body);
  EXPECT_EQ(ev.back()["choices"][0]["delta"]["content"], R"({"city": "Paris"})") << r.body;
  EXPECT_EQ(ev.back()["choices"][0]["finish_reason"], "stop");
}

TEST(ToolCallHttp, Ollama) {
  ScriptServer s;
  auto r = s.post("/api/chat", chat("hermes", kHermesTwo, false));
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["message"]["content"], "Checking.");
  EXPECT_EQ(j["message"]["tool_calls"], json::parse(R"([
    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
    {"function": {"name": "get_time", "arguments": {}}}])"));
  EXPECT_EQ(j["done_reason"], "stop");

  r = s.post("/api/chat", chat("hermes", kHermesTwo, true));
  ASSERT_EQ(r.status, 200) << r.body;
  auto lines = ndjson(r.body);
  std::string content;
  json calls;
  for (auto& l : lines) {
    content += l["message"]["content"].get<std::string>();
    if (l["message"].contains("tool_calls")) {
      EXPECT_FALSE(l["done"].get<bool>());
      calls = l["message"]["tool_calls"];
    }
  }
  EXPECT_EQ(content, "Checking.");
  EXPECT_EQ(calls, j["message"]["tool_calls"]);
  EXPECT_TRUE(lines.back()["done"].get<bool>());
  EXPECT_EQ(r.body.find("tool_call>"), std::string::npos) << r.body;

  // Without tools the same text is plain content.
  j = json::parse(s.post("/api/chat", chat("hermes", kHermesTwo, false, false)).body);
  EXPECT_EQ(j["message"]["content"], kHermesTwo);
  EXPECT_FALSE(j["message"].contains("tool_calls"));
}

// The official npm clients (tests/integration/node_modules) read the calls.
TEST(ToolCallHttp, OfficialNpmClients) {
  const auto dir = std::filesystem::path(__FILE__).parent_path().parent_path() / "integration";
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";
  if (!std::filesystem::exists(dir / "node_modules" / "openai") || !std::filesystem::exists(dir / "node_modules" / "ollama"))
    GTEST_SKIP() << "no openai/ollama npm packages in " << dir << " (tests/integration/run.sh installs them)";
  ScriptServer s;
  const std::string cmd = "node " + (dir / "toolcalls_client.mjs").string() + " " + std::to_string(s.http->port()) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ok 4 checks"), std::string::npos) << out;
}
