// Upstream specs, the circuit breaker and a pool with nothing reachable (the
// proxying itself is tested through real processes in cli_upstream_test.cpp).
#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "gateway/upstream.h"
#include "gateway/upstream_translate.h"
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

// ---- names, retry policy, balancing ----------------------------------------

TEST(UpstreamSpec, ParsesNamesPrefixAndModelMap) {
  auto a = parse_upstream("openai:http://h:8000/v1?prefix=cloud-&models=gpt-4o+chat=qwen2.5:0.5b#sk-1");
  EXPECT_EQ(a.url, "http://h:8000");
  EXPECT_EQ(a.key, "sk-1");
  EXPECT_EQ(a.prefix, "cloud-");
  ASSERT_EQ(a.models.size(), 2u);
  EXPECT_EQ(a.models[0], std::make_pair(std::string(), std::string("gpt-4o")));
  EXPECT_EQ(a.models[1], std::make_pair(std::string("chat"), std::string("qwen2.5:0.5b")));
  EXPECT_THROW(parse_upstream("ollama:http://host?color=red"), lmhost::Error);
  EXPECT_THROW(parse_upstream("ollama:http://host?models==x"), lmhost::Error);

  // Everything listed, under the prefix.
  Upstream p(parse_upstream("ollama:http://host?prefix=edge-"));
  p.set_listed({"qwen2.5:0.5b", "nomic"});
  EXPECT_EQ(p.models(), (std::vector<std::string>{"edge-qwen2.5:0.5b", "edge-nomic"}));
  EXPECT_EQ(p.remote_name("edge-nomic"), "nomic");
  EXPECT_EQ(p.remote_name("edge-nomic:latest"), "nomic");  // Ollama's NAME = NAME:latest
  EXPECT_FALSE(p.remote_name("nomic").has_value());          // only under its exposed name
  // Only the listed ones, renamed or prefixed; one the upstream lacks is not offered.
  Upstream m(parse_upstream("ollama:http://host?prefix=x-&models=chat=qwen2.5:0.5b+nomic+gone"));
  m.set_listed({"qwen2.5:0.5b", "nomic:latest", "other"});
  EXPECT_EQ(m.models(), (std::vector<std::string>{"chat", "x-nomic"}));
  EXPECT_EQ(m.remote_name("chat"), "qwen2.5:0.5b");
  EXPECT_EQ(m.remote_name("x-nomic"), "nomic:latest");
  EXPECT_FALSE(m.remote_name("other").has_value());
  EXPECT_FALSE(m.remote_name("qwen2.5:0.5b").has_value());
}

TEST(UpstreamPolicy, RetriesElsewhereOnlyWhatAnotherBackendCouldServe) {
  EXPECT_EQ(judge_status(200).verdict, Verdict::Serve);
  for (long s : {400L, 413L, 422L}) {  // the request's own fault: returned as is, not retried
    EXPECT_EQ(judge_status(s).verdict, Verdict::Serve) << s;
    EXPECT_FALSE(judge_status(s).health_failure) << s;
  }
  EXPECT_EQ(judge_status(404).verdict, Verdict::NextUpstream);  // the model is gone there
  EXPECT_FALSE(judge_status(404).health_failure);               // but the upstream is fine
  EXPECT_EQ(judge_status(429).verdict, Verdict::NextUpstream);
  EXPECT_EQ(judge_status(401).verdict, Verdict::NextUpstream);
  EXPECT_TRUE(judge_status(401).health_failure);
  for (long s : {0L, 500L, 502L, 503L, 408L}) {
    EXPECT_EQ(judge_status(s).verdict, Verdict::RetrySame) << s;
    EXPECT_TRUE(judge_status(s).health_failure) << s;
  }
}

TEST(UpstreamBalance, RoundRobinAndLeastOutstanding) {
  using K = UpstreamKind;
  const std::vector<CandidateInfo> same = {{true, 0, K::Ollama}, {true, 0, K::Ollama}, {true, 0, K::Ollama}};
  // Round-robin: each turn starts at the next one.
  EXPECT_EQ(balance_order(same, Balance::RoundRobin, K::Ollama, 0), (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(balance_order(same, Balance::RoundRobin, K::Ollama, 1), (std::vector<size_t>{1, 2, 0}));
  EXPECT_EQ(balance_order(same, Balance::RoundRobin, K::Ollama, 5), (std::vector<size_t>{2, 0, 1}));
  // Unhealthy last; the request's own flavour before the other (round-robin ignores load).
  const std::vector<CandidateInfo> mixed = {{false, 0, K::Ollama}, {true, 9, K::OpenAI}, {true, 5, K::Ollama}};
  EXPECT_EQ(balance_order(mixed, Balance::RoundRobin, K::Ollama, 0), (std::vector<size_t>{2, 1, 0}));
  EXPECT_EQ(balance_order(mixed, Balance::RoundRobin, K::OpenAI, 0), (std::vector<size_t>{1, 2, 0}));
  // Least outstanding: fewest in flight first, whatever the flavour; the unhealthy one still last.
  EXPECT_EQ(balance_order(mixed, Balance::LeastOutstanding, K::OpenAI, 0), (std::vector<size_t>{2, 1, 0}));
  const std::vector<CandidateInfo> load = {{true, 3, K::Ollama}, {true, 1, K::Ollama}, {true, 1, K::Ollama}};
  // Ties (1 and 2, one in flight each) go round.
  EXPECT_EQ(balance_order(load, Balance::LeastOutstanding, K::Ollama, 0), (std::vector<size_t>{1, 2, 0}));
  EXPECT_EQ(balance_order(load, Balance::LeastOutstanding, K::Ollama, 2), (std::vector<size_t>{2, 1, 0}));
  EXPECT_EQ(parse_balance("least_outstanding"), Balance::LeastOutstanding);
  EXPECT_THROW(parse_balance("random"), lmhost::Error);
}

// ---- translation -------------------------------------------------------------

namespace {

using nlohmann::json;

ResponseMeta meta(const std::string& model = "local") {
  ResponseMeta m;
  m.request_id = "r1";
  m.model = model;
  m.created = 1700000000;
  m.created_at = "2024-01-01T00:00:00Z";
  return m;
}

// The lines of an NDJSON body / the data of SSE events, parsed ("[DONE]" kept as a string).
std::vector<json> ndjson(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(json::parse(l));
  return out;
}
std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  size_t at = 0, end;
  while ((end = body.find("\n\n", at)) != std::string::npos) {
    const std::string ev = body.substr(at, end - at);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    const std::string data = ev.substr(6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
    at = end + 2;
  }
  EXPECT_EQ(at, body.size()) << "trailing bytes: " << body.substr(at);
  return out;
}

}  // namespace

TEST(UpstreamTranslate, CompletionsToGenerateRequest) {
  const json b = {{"model", "local"}, {"prompt", "Once"}, {"max_tokens", 5}, {"temperature", 0.5}, {"top_p", 0.9},
                  {"seed", 7}, {"stop", {"\n"}}, {"stream", true}};
  auto r = translate_request(Endpoint::OpenAICompletions, b, UpstreamKind::Ollama, "remote", true);
  ASSERT_TRUE(r.ok) << r.why;
  EXPECT_EQ(r.target, Endpoint::OllamaGenerate);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","prompt":"Once","raw":true,"stream":true,
      "options":{"num_predict":5,"temperature":0.5,"top_p":0.9,"seed":7,"stop":["\n"]}})"));
  // OpenAI's default length for completions (Ollama's is unbounded); a one-element prompt list.
  r = translate_request(Endpoint::OpenAICompletions, json{{"model", "local"}, {"prompt", {"x"}}}, UpstreamKind::Ollama,
                        "remote", false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","prompt":"x","raw":true,"stream":false,"options":{"num_predict":16}})"));
  // No Ollama form: token prompts, several prompts, n > 1.
  EXPECT_FALSE(translate_request(Endpoint::OpenAICompletions, json{{"prompt", {1, 2}}}, UpstreamKind::Ollama, "m", false).ok);
  EXPECT_FALSE(translate_request(Endpoint::OpenAICompletions, json{{"prompt", {"a", "b"}}}, UpstreamKind::Ollama, "m", false).ok);
  EXPECT_FALSE(
      translate_request(Endpoint::OpenAICompletions, json{{"prompt", "a"}, {"n", 2}}, UpstreamKind::Ollama, "m", false).ok);
  // Same flavour: as sent, renamed.
  r = translate_request(Endpoint::OpenAICompletions, b, UpstreamKind::OpenAI, "remote", true);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.target, Endpoint::OpenAICompletions);
  json same = b;
  same["model"] = "remote";
  EXPECT_EQ(r.body, same);
}

TEST(UpstreamTranslate, GenerateToOpenAIRequest) {
  // Templated: a chat with the system prompt and the prompt as the user's message.
  const json b = {{"model", "local"}, {"prompt", "Why?"}, {"system", "Be brief."}, {"format", "json"},
                  {"options", {{"num_predict", 8}, {"temperature", 0.2}, {"seed", 3}, {"top_k", 40}, {"stop", {"."}}}}};
  auto r = translate_request(Endpoint::OllamaGenerate, b, UpstreamKind::OpenAI, "remote", true);
  ASSERT_TRUE(r.ok) << r.why;
  EXPECT_EQ(r.target, Endpoint::OpenAIChat);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","stream":true,"stream_options":{"include_usage":true},
      "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Why?"}],
      "max_tokens":8,"temperature":0.2,"seed":3,"stop":["."],"response_format":{"type":"json_object"}})"));
  // raw: a plain completion.
  r = translate_request(Endpoint::OllamaGenerate, json{{"model", "local"}, {"prompt", "abc"}, {"raw", true}},
                        UpstreamKind::OpenAI, "remote", false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.target, Endpoint::OpenAICompletions);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","prompt":"abc","stream":false})"));
  // An Ollama context (token ids of one server) or an empty prompt (load/unload) has no OpenAI form.
  EXPECT_FALSE(translate_request(Endpoint::OllamaGenerate, json{{"prompt", "a"}, {"context", {1, 2}}},
                                 UpstreamKind::OpenAI, "m", false)
                   .ok);
  EXPECT_FALSE(translate_request(Endpoint::OllamaGenerate, json{{"prompt", ""}}, UpstreamKind::OpenAI, "m", false).ok);
}

TEST(UpstreamTranslate, ChatRequestsBothWays) {
  const json oa = json::parse(R"({"model":"local","max_completion_tokens":4,"top_p":0.5,
      "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}},
      "messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                  {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                   "function":{"name":"f","arguments":"{\"x\":1}"}}]}]})");
  auto r = translate_request(Endpoint::OpenAIChat, oa, UpstreamKind::Ollama, "remote", false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.target, Endpoint::OllamaChat);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","stream":false,"options":{"num_predict":4,"top_p":0.5},
      "format":{"type":"object"},
      "messages":[{"role":"user","content":"ab"},
                  {"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"x":1}}}]}]})"));
  const json ol = json::parse(R"({"model":"local","messages":[{"role":"user","content":"hi","images":["AAAA"]}],
      "options":{"num_predict":-1,"presence_penalty":0.1}})");
  r = translate_request(Endpoint::OllamaChat, ol, UpstreamKind::OpenAI, "remote", true);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","stream":true,"stream_options":{"include_usage":true},
      "presence_penalty":0.1,"messages":[{"role":"user","content":"hi"}]})"));
}

TEST(UpstreamTranslate, EmbeddingRequestsBothWays) {
  auto r = translate_request(Endpoint::OpenAIEmbeddings, json{{"model", "e"}, {"input", {"a", "b"}}, {"dimensions", 8}},
                             UpstreamKind::Ollama, "remote", false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.target, Endpoint::OllamaEmbed);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","input":["a","b"],"truncate":true,"dimensions":8})"));
  EXPECT_FALSE(translate_request(Endpoint::OpenAIEmbeddings, json{{"input", {{1, 2}}}}, UpstreamKind::Ollama, "m", false).ok);
  r = translate_request(Endpoint::OllamaEmbed, json{{"model", "e"}, {"input", "a"}, {"truncate", false}},
                        UpstreamKind::OpenAI, "remote", false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.target, Endpoint::OpenAIEmbeddings);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","input":"a","encoding_format":"float"})"));
  r = translate_request(Endpoint::OllamaEmbeddings, json{{"model", "e"}, {"prompt", "a"}}, UpstreamKind::OpenAI, "remote", false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.target, Endpoint::OpenAIEmbeddings);
  EXPECT_EQ(r.body, json::parse(R"({"model":"remote","input":"a","encoding_format":"float"})"));
}

TEST(UpstreamTranslate, GenerateAnswerToCompletion) {
  const std::string up = R"({"model":"remote","created_at":"x","response":"Hello","done":true,"done_reason":"length",
      "prompt_eval_count":3,"eval_count":5})";
  EXPECT_EQ(json::parse(translate_response(Endpoint::OpenAICompletions, Endpoint::OllamaGenerate, false, 200, meta(), up)),
            json::parse(R"({"id":"cmpl-r1","object":"text_completion","created":1700000000,"model":"local",
      "system_fingerprint":"lmhost","choices":[{"index":0,"text":"Hello","logprobs":null,"finish_reason":"length"}],
      "usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}})"));
  // The other way: a completion (or a chat answer) as a generate answer.
  const std::string oc = R"({"id":"x","object":"text_completion","model":"remote","choices":[{"index":0,"text":"Hi",
      "finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}})";
  EXPECT_EQ(json::parse(translate_response(Endpoint::OllamaGenerate, Endpoint::OpenAICompletions, false, 200, meta(), oc)),
            json::parse(R"({"model":"local","created_at":"2024-01-01T00:00:00Z","response":"Hi","done":true,
      "done_reason":"stop","prompt_eval_count":2,"eval_count":1})"));
  const std::string ch = R"({"choices":[{"index":0,"message":{"role":"assistant","content":"Yo"},"finish_reason":"length"}],
      "usage":{"prompt_tokens":9,"completion_tokens":4}})";
  EXPECT_EQ(json::parse(translate_response(Endpoint::OllamaGenerate, Endpoint::OpenAIChat, false, 200, meta(), ch)),
            json::parse(R"({"model":"local","created_at":"2024-01-01T00:00:00Z","response":"Yo","done":true,
      "done_reason":"length","prompt_eval_count":9,"eval_count":4})"));
}

TEST(UpstreamTranslate, GenerateStreamToCompletionSse) {
  auto m = meta();
  m.include_usage = true;
  auto plan = response_plan(Endpoint::OpenAICompletions, Endpoint::OllamaGenerate, true, 200, m, false);
  EXPECT_EQ(plan.content_type, "text/event-stream");
  // Bytes arrive in pieces that split lines.
  std::string out = plan.transform->feed(R"({"model":"remote","response":"He","done":false})" "\n" R"({"model":"re)");
  out += plan.transform->feed(R"(mote","response":"","done":false})" "\n");
  out += plan.transform->feed(R"({"model":"remote","response":"y","done":true,"done_reason":"stop","prompt_eval_count":2,"eval_count":3})" "\n");
  out += plan.transform->finish();
  const auto ev = sse_events(out);
  ASSERT_EQ(ev.size(), 4u) << out;  // "He", "y" + finish, usage, [DONE] (the empty piece is skipped)
  const json base = json::parse(R"({"id":"cmpl-r1","object":"text_completion","created":1700000000,"model":"local",
      "system_fingerprint":"lmhost"})");
  json e0 = base, e1 = base, e2 = base;
  e0["choices"] = json::parse(R"([{"index":0,"text":"He","logprobs":null,"finish_reason":null}])");
  e1["choices"] = json::parse(R"([{"index":0,"text":"y","logprobs":null,"finish_reason":"stop"}])");
  e2["choices"] = json::array();
  e2["usage"] = json::parse(R"({"prompt_tokens":2,"completion_tokens":3,"total_tokens":5})");
  EXPECT_EQ(ev[0], e0);
  EXPECT_EQ(ev[1], e1);
  EXPECT_EQ(ev[2], e2);
  EXPECT_EQ(ev[3], "[DONE]");
}

TEST(UpstreamTranslate, CompletionSseToGenerateNdjson) {
  const std::string up =
      "data: {\"choices\":[{\"index\":0,\"text\":\"A\",\"finish_reason\":null}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"text\":\"B\",\"finish_reason\":\"length\"}]}\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n"
      "data: [DONE]\n\n";
  const auto lines = ndjson(translate_response(Endpoint::OllamaGenerate, Endpoint::OpenAICompletions, true, 200, meta(), up));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], json::parse(R"({"model":"local","created_at":"2024-01-01T00:00:00Z","response":"A","done":false})"));
  EXPECT_EQ(lines[1], json::parse(R"({"model":"local","created_at":"2024-01-01T00:00:00Z","response":"B","done":false})"));
  EXPECT_EQ(lines[2], json::parse(R"({"model":"local","created_at":"2024-01-01T00:00:00Z","response":"","done":true,
      "done_reason":"length","prompt_eval_count":4,"eval_count":2})"));
  // A stream cut before its end is an error line, not a done line.
  const auto cut = ndjson(translate_response(Endpoint::OllamaGenerate, Endpoint::OpenAICompletions, true, 200, meta(),
                                             "data: {\"choices\":[{\"index\":0,\"text\":\"A\"}]}\n\n"));
  ASSERT_EQ(cut.size(), 2u);
  EXPECT_TRUE(cut[1].contains("error"));
}

TEST(UpstreamTranslate, ChatStreamsWithToolCalls) {
  // OpenAI deltas (name, then argument pieces) -> one Ollama done line with the call.
  const std::string up =
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c\","
      "\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"c\\\":\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
      "data: [DONE]\n\n";
  const auto lines = ndjson(translate_response(Endpoint::OllamaChat, Endpoint::OpenAIChat, true, 200, meta(), up));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], json::parse(R"({"model":"local","created_at":"2024-01-01T00:00:00Z","done":true,"done_reason":"stop",
      "message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get","arguments":{"c":1}}}]}})"));
  // Ollama NDJSON with a tool call -> OpenAI chunks.
  const std::string ol = R"({"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get","arguments":{"c":1}}}]},"done":false})"
                         "\n" R"({"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":7})" "\n";
  const auto ev = sse_events(translate_response(Endpoint::OpenAIChat, Endpoint::OllamaChat, true, 200, meta(), ol));
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(ev[0]["choices"][0]["delta"], json::parse(R"({"role":"assistant","tool_calls":[{"index":0,"id":"call_0",
      "type":"function","function":{"name":"get","arguments":"{\"c\":1}"}}]})"));
  EXPECT_EQ(ev[1]["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(ev[2], "[DONE]");
}

TEST(UpstreamTranslate, EmbeddingAnswersBothWays) {
  const std::string ol = R"({"model":"remote","embeddings":[[0.5,-1.0],[0.25,2.0]],"prompt_eval_count":6})";
  EXPECT_EQ(json::parse(translate_response(Endpoint::OpenAIEmbeddings, Endpoint::OllamaEmbed, false, 200, meta(), ol)),
            json::parse(R"({"object":"list","model":"local","usage":{"prompt_tokens":6,"total_tokens":6},"data":[
      {"object":"embedding","index":0,"embedding":[0.5,-1.0]},{"object":"embedding","index":1,"embedding":[0.25,2.0]}]})"));
  auto m = meta();
  m.base64 = true;  // little-endian float32: 0.5 = 00 00 00 3f, -1 = 00 00 80 bf
  const json b64 = json::parse(translate_response(Endpoint::OpenAIEmbeddings, Endpoint::OllamaEmbed, false, 200, m, ol));
  EXPECT_EQ(b64["data"][0]["embedding"], "AAAAPwAAgL8=");
  // OpenAI rows (in any order) -> Ollama /api/embed and legacy /api/embeddings.
  const std::string oa = R"({"object":"list","data":[{"index":1,"embedding":[3]},{"index":0,"embedding":[1,2]}],
      "usage":{"prompt_tokens":4,"total_tokens":4}})";
  EXPECT_EQ(json::parse(translate_response(Endpoint::OllamaEmbed, Endpoint::OpenAIEmbeddings, false, 200, meta(), oa)),
            json::parse(R"({"model":"local","embeddings":[[1,2],[3]],"prompt_eval_count":4})"));
  EXPECT_EQ(json::parse(translate_response(Endpoint::OllamaEmbeddings, Endpoint::OpenAIEmbeddings, false, 200, meta(), oa)),
            json::parse(R"({"embedding":[1,2]})"));
}

TEST(UpstreamTranslate, ErrorsInTheClientsShapeAndRenamedPassThrough) {
  EXPECT_EQ(json::parse(translate_response(Endpoint::OpenAICompletions, Endpoint::OllamaGenerate, false, 400, meta(),
                                           R"({"error":"bad option"})")),
            json::parse(R"({"error":{"message":"bad option","type":"invalid_request_error","param":null,"code":null}})"));
  EXPECT_EQ(json::parse(translate_response(Endpoint::OllamaEmbed, Endpoint::OpenAIEmbeddings, false, 400, meta(),
                                           R"({"error":{"message":"too long","type":"invalid_request_error"}})")),
            json::parse(R"({"error":"too long"})"));
  // Same flavour under another name: the model field shows the client's name, SSE framing kept.
  const std::string sse = "data: {\"model\":\"remote\",\"x\":1}\n\ndata: [DONE]\n\n";
  EXPECT_EQ(translate_response(Endpoint::OpenAIChat, Endpoint::OpenAIChat, true, 200, meta(), sse, true),
            "data: {\"model\":\"local\",\"x\":1}\n\ndata: [DONE]\n\n");
  EXPECT_EQ(translate_response(Endpoint::OllamaChat, Endpoint::OllamaChat, false, 200, meta(), R"({"model":"remote"})", true),
            R"({"model":"local"})");
  EXPECT_EQ(translate_response(Endpoint::OllamaChat, Endpoint::OllamaChat, false, 200, meta(), R"({"model":"remote"})", false),
            R"({"model":"remote"})");
}
