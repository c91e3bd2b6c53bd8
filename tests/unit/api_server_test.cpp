// The whole server in-process on an ephemeral port, serving the synthesized
// demo model: every endpoint, streaming framing, bad input, concurrency,
// disconnects, backpressure, and greedy HTTP == greedy engine.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "api/api.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "unit/http_test_client.h"

using namespace lmhost;
using namespace lmhost::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

ModelConfig model_config(std::string name, std::string path, bool demo = false) {
  ModelConfig c;
  c.name = std::move(name);
  c.path = std::move(path);
  c.demo = demo;
  return c;
}

std::string demo_file() {
  static std::string path = [] {
    const std::string p = (std::filesystem::temp_directory_path() / ("lmhost-api-test-" + std::to_string(getpid()) + ".gguf")).string();
    auto spec = model::synth_shape("demo");
    spec->type = "Q8_0";
    model::synth_model(*spec, p, 1);
    return p;
  }();
  static struct Remover {
    ~Remover() { std::filesystem::remove(path); }
  } remover;
  return path;
}

EngineOptions engine_options(int parallel, int max_queue, int n_ctx) {
  EngineOptions eo;
  eo.n_parallel = parallel;
  eo.n_ctx = n_ctx;
  eo.n_threads = 1;
  eo.max_queue = max_queue;
  return eo;
}

struct Served {
  std::shared_ptr<ModelPool> pool;
  std::shared_ptr<server::Router> router = std::make_shared<server::Router>();
  std::unique_ptr<server::HttpServer> http;
  // The demo model with these engine bounds.
  Served(int parallel, int max_queue, int n_ctx = 1024, size_t body_limit = 1 << 20)
      : Served(engine_options(parallel, max_queue, n_ctx), {model_config("demo", demo_file(), true)}, 2, body_limit) {}
  Served(const EngineOptions& eo, const std::vector<ModelConfig>& models, int io_threads, size_t body_limit = 1 << 20) {
    pool = std::make_shared<ModelPool>(eo);
    for (const auto& m : models) pool->add(m);
    api::register_routes(*router, pool);
    server::ServerOptions so;
    so.port = 0;
    so.threads = io_threads;
    so.body_limit = body_limit;
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
  int port() const { return http->port(); }
};

class Api : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { s_ = new Served(4, 64); }
  static void TearDownTestSuite() {
    delete s_;
    s_ = nullptr;
  }
  static Served* s_;
  int port() const { return s_->port(); }
  ClientResponse post(const std::string& path, const json& body) {
    HttpClient c(port());
    return c.request("POST", path, body.dump());
  }
  ClientResponse get(const std::string& path) {
    HttpClient c(port());
    return c.request("GET", path);
  }
};
Served* Api::s_ = nullptr;

// Splits an SSE body into its data payloads.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < body.size()) {
    size_t end = body.find("\n\n", i);
    if (end == std::string::npos) break;
    std::string ev = body.substr(i, end - i);
    if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
    i = end + 2;
  }
  return out;
}

std::vector<json> ndjson(const std::string& body) {
  std::vector<json> out;
  size_t i = 0;
  while (i < body.size()) {
    size_t end = body.find('\n', i);
    if (end == std::string::npos) end = body.size();
    if (end > i) out.push_back(json::parse(body.substr(i, end - i)));
    i = end + 1;
  }
  return out;
}

}  // namespace

TEST_F(Api, HealthAndModels) {
  auto h = get("/health");
  EXPECT_EQ(h.status, 200);
  auto hj = json::parse(h.body);
  EXPECT_EQ(hj["status"], "ok");
  EXPECT_EQ(hj["models"][0]["name"], "demo");
  EXPECT_EQ(hj["models"][0]["state"], "ready");
  auto m = json::parse(get("/v1/models").body);
  EXPECT_EQ(m["object"], "list");
  EXPECT_EQ(m["data"][0]["id"], "demo");
  EXPECT_EQ(json::parse(get("/v1/models/demo").body)["id"], "demo");
  auto nf = get("/v1/models/nope");
  EXPECT_EQ(nf.status, 404);
  EXPECT_TRUE(json::parse(nf.body)["error"].contains("message"));
}

// /api/ps reports what a loaded model holds in memory (as Ollama): its file
// plus its KV cache (n_ctx 1024 x 4 sequences, F16); /api/tags the file.
TEST_F(Api, PsSizeIsTheFilePlusTheKvCache) {
  auto f = gguf::File::open(demo_file());
  const HParams hp = HParams::from_gguf(*f);
  const uint64_t file = std::filesystem::file_size(demo_file());
  const uint64_t kv = static_cast<uint64_t>(hp.n_layer) * static_cast<uint64_t>(hp.n_embd_k_gqa() + hp.n_embd_v_gqa()) *
                      1024 * 4 * 2;
  const json ps = json::parse(get("/api/ps").body)["models"][0];
  EXPECT_EQ(ps["size"].get<uint64_t>(), file + kv) << ps.dump();
  const json tags = json::parse(get("/api/tags").body)["models"][0];
  EXPECT_EQ(tags["size"].get<uint64_t>(), file) << tags.dump();
}

TEST_F(Api, ChatCompletionNonStreaming) {
  auto r = post("/v1/chat/completions", {{"model", "demo"},
                                         {"messages", {{{"role", "system"}, {"content", "Be brief."}},
                                                       {{"role", "user"}, {"content", "Hello!"}}}},
                                         {"max_tokens", 8},
                                         {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_string());
  const std::string fr = j["choices"][0]["finish_reason"];
  EXPECT_TRUE(fr == "stop" || fr == "length");
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_LE(j["usage"]["completion_tokens"].get<int>(), 8);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
}

TEST_F(Api, ChatCompletionStreamingFraming) {
  auto r = post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "Tell me"}}}},
                                         {"max_tokens", 10},
                                         {"stream", true},
                                         {"logprobs", true},
                                         {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  auto data = sse_data(r.body);
  ASSERT_GE(data.size(), 4u);
  EXPECT_EQ(data.back(), "[DONE]");
  auto first = json::parse(data[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  auto usage = json::parse(data[data.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  const int completion = usage["usage"]["completion_tokens"];
  int token_chunks = 0;
  std::string finish;
  for (size_t i = 1; i + 2 < data.size(); ++i) {
    auto c = json::parse(data[i]);
    if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
    else ++token_chunks;
  }
  EXPECT_EQ(token_chunks, completion) << "every token exactly once (logprobs on: one chunk per token)";
  EXPECT_TRUE(finish == "length" || finish == "stop");
}

TEST_F(Api, CompletionsStringAndList) {
  auto r = post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 5}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_TRUE(j["choices"][0]["text"].is_string());
  auto l = json::parse(post("/v1/completions", {{"prompt", {"a", "b"}}, {"max_tokens", 3}, {"n", 2}}).body);
  ASSERT_EQ(l["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(l["choices"][i]["index"], i);
  auto s = post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 3}, {"stream", true}});
  auto d = sse_data(s.body);
  EXPECT_EQ(d.back(), "[DONE]");
  EXPECT_EQ(json::parse(d[0])["object"], "text_completion");
}

TEST_F(Api, StopStringsAndSeed) {
  json body = {{"prompt", "The"}, {"max_tokens", 20}, {"temperature", 0.9}, {"seed", 7}};
  auto a = json::parse(post("/v1/completions", body).body);
  auto b = json::parse(post("/v1/completions", body).body);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]) << "same seed, same text";
  const std::string text = a["choices"][0]["text"];
  if (text.size() > 6) {
    body["stop"] = text.substr(3, 2);
    auto c = json::parse(post("/v1/completions", body).body);
    EXPECT_EQ(c["choices"][0]["text"], text.substr(0, text.find(text.substr(3, 2))));
    EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
  }
}

TEST_F(Api, OllamaGenerateStreamsNdjsonByDefault) {
  auto r = post("/api/generate", {{"model", "demo"}, {"prompt", "Why is the sky blue?"}, {"options", {{"num_predict", 6}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/x-ndjson");
  auto lines = ndjson(r.body);
  ASSERT_GE(lines.size(), 1u);
  auto last = lines.back();
  EXPECT_TRUE(last["done"].get<bool>());
  for (const char* k : {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                        "eval_duration", "done_reason", "context"})
    EXPECT_TRUE(last.contains(k)) << k;
  for (size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_FALSE(lines[i]["done"].get<bool>());
  auto ns = json::parse(post("/api/generate", {{"model", "demo:latest"}, {"prompt", "Hi"}, {"stream", false},
                                               {"options", {{"num_predict", 4}, {"temperature", 0}}}})
                            .body);
  EXPECT_TRUE(ns["done"].get<bool>());
  EXPECT_TRUE(ns["response"].is_string());
  EXPECT_LE(ns["eval_count"].get<int>(), 4);
}

TEST_F(Api, OllamaChatAndMetadataEndpoints) {
  auto r = post("/api/chat", {{"model", "demo"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                              {"stream", false}, {"options", {{"num_predict", 4}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["message"]["role"], "assistant");
  EXPECT_TRUE(j["done"].get<bool>());
  auto s = post("/api/chat", {{"model", "demo"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                              {"options", {{"num_predict", 4}}}});
  auto lines = ndjson(s.body);
  EXPECT_TRUE(lines.back()["done"].get<bool>());
  auto tags = json::parse(get("/api/tags").body);
  EXPECT_EQ(tags["models"][0]["name"], "demo");
  EXPECT_EQ(tags["models"][0]["details"]["format"], "gguf");
  auto show = post("/api/show", {{"model", "demo"}});
  ASSERT_EQ(show.status, 200);
  auto sj = json::parse(show.body);
  EXPECT_EQ(sj["model_info"]["general.architecture"], "llama");
  EXPECT_FALSE(sj["template"].get<std::string>().empty());
  EXPECT_EQ(post("/api/show", {{"model", "nope"}}).status, 404);
  EXPECT_EQ(json::parse(post("/api/show", {{"model", "nope"}}).body)["error"].is_string(), true);
  EXPECT_EQ(json::parse(get("/api/ps").body)["models"][0]["name"], "demo");
  EXPECT_TRUE(json::parse(get("/api/version").body)["version"].is_string());
  auto root = get("/");
  EXPECT_EQ(root.body, "Ollama is running");
  HttpClient c(port());
  auto head = c.request("HEAD", "/");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
}

TEST_F(Api, NativeEndpoints) {
  auto t = json::parse(post("/tokenize", {{"content", "Hello world"}}).body);
  ASSERT_TRUE(t["tokens"].is_array());
  ASSERT_FALSE(t["tokens"].empty());
  auto d = json::parse(post("/detokenize", {{"tokens", t["tokens"]}}).body);
  EXPECT_EQ(d["content"], "Hello world");
  EXPECT_EQ(post("/detokenize", {{"tokens", {1, 99999999}}}).status, 400);
  auto s = post("/v1/summarize", {{"text", "A long text about many things. It goes on."}, {"max_tokens", 8},
                                  {"temperature", 0}});
  ASSERT_EQ(s.status, 200) << s.body;
  auto sj = json::parse(s.body);
  EXPECT_TRUE(sj["summary"].is_string());
  EXPECT_EQ(sj["model"], "demo");
  EXPECT_EQ(sj["usage"]["total_tokens"].get<int>(),
            sj["usage"]["input_tokens"].get<int>() + sj["usage"]["output_tokens"].get<int>());
  EXPECT_LE(sj["usage"]["output_tokens"].get<int>(), 8);
}

TEST_F(Api, BadInputGets4xxAndServerSurvives) {
  HttpClient c(port());
  auto mal = c.request("POST", "/v1/chat/completions", "{\"messages\": [");
  EXPECT_EQ(mal.status, 400);
  EXPECT_NE(json::parse(mal.body)["error"]["message"].get<std::string>().find("JSON"), std::string::npos);
  EXPECT_EQ(c.request("POST", "/v1/chat/completions", "[1,2]").status, 400);
  EXPECT_EQ(c.request("POST", "/v1/chat/completions", "").status, 400);
  const json msgs = {{{"role", "user"}, {"content", "x"}}};
  EXPECT_EQ(post("/v1/chat/completions", {{"messages", "hi"}}).status, 400);
  EXPECT_EQ(post("/v1/chat/completions", {{"messages", msgs}, {"temperature", "hot"}}).status, 400);
  EXPECT_EQ(post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", -5}}).status, 400);
  EXPECT_EQ(post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 1e12}}).status, 400);
  EXPECT_EQ(post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 1.5}}).status, 400);
  EXPECT_EQ(post("/v1/chat/completions", {{"messages", msgs}, {"stop", 5}}).status, 400);
  EXPECT_EQ(post("/v1/chat/completions", {{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}).status, 400);
  auto unk = post("/v1/chat/completions", {{"model", "gpt-17"}, {"messages", msgs}});
  EXPECT_EQ(unk.status, 404);
  EXPECT_EQ(post("/api/generate", {{"model", "nope"}, {"prompt", "x"}}).status, 404);
  auto o = post("/api/generate", {{"model", "demo"}, {"prompt", "x"}, {"options", {{"num_predict", "many"}}}});
  EXPECT_EQ(o.status, 400);
  EXPECT_TRUE(json::parse(o.body)["error"].is_string()) << "Ollama error shape";
  auto big = c.request("POST", "/v1/chat/completions", std::string(2 << 20, ' '));
  EXPECT_EQ(big.status, 413);
  HttpClient c2(port());
  auto m405 = c2.request("GET", "/v1/chat/completions");
  EXPECT_EQ(m405.status, 405);
  EXPECT_EQ(c2.request("DELETE", "/api/tags").status, 405);
  EXPECT_EQ(c2.request("GET", "/no/such/path").status, 404);
  // Prompt longer than the context.
  std::string huge;
  for (int i = 0; i < 3000; ++i) huge += "word ";
  EXPECT_EQ(post("/v1/completions", {{"prompt", huge}, {"max_tokens", 2}}).status, 400);
  EXPECT_EQ(get("/health").status, 200);
}

TEST_F(Api, SixteenConcurrentStreamsAllComplete) {
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  std::mutex mu;
  std::vector<std::string> failures;
  for (int i = 0; i < 16; ++i)
    ts.emplace_back([&, i] {
      std::string stage = "connect", body_so_far;
      try {
        HttpClient c(port(), 10000);
        json body = {{"messages", {{{"role", "user"}, {"content", "client " + std::to_string(i)}}}},
                     {"max_tokens", 24}, {"stream", true}, {"logprobs", true},
                     {"stream_options", {{"include_usage", true}}}};
        stage = "send";
        c.send_request("POST", "/v1/chat/completions", body.dump());
        stage = "head";
        auto r = c.read_head();
        stage = "body";
        std::string chunk;
        while (c.read_chunk(chunk)) body_so_far += chunk;
        stage = "check";
        auto d = sse_data(body_so_far);
        if (r.status != 200 || d.size() < 3 || d.back() != "[DONE]") throw std::runtime_error("bad stream");
        const int completion = json::parse(d[d.size() - 2])["usage"]["completion_tokens"];
        int tokens = 0;
        for (size_t k = 1; k + 2 < d.size(); ++k)
          if (json::parse(d[k])["choices"][0]["finish_reason"].is_null()) ++tokens;
        if (tokens != completion) throw std::runtime_error("token chunks != usage.completion_tokens");
        ++ok;
      } catch (const std::exception& e) {
        std::lock_guard lk(mu);
        failures.push_back("client " + std::to_string(i) + " at " + stage + ": " + e.what() + " after " +
                           std::to_string(body_so_far.size()) + " bytes: " + body_so_far.substr(0, 400));
      }
    });
  for (auto& t : ts) t.join();
  std::string why;
  for (const auto& f : failures) why += f + "\n";
  EXPECT_EQ(ok.load(), 16) << why << "health: " << get("/health").body;
}

TEST_F(Api, DisconnectFreesTheSlot) {
  auto generated = [&] { return json::parse(get("/health").body)["models"][0]["tokens_generated_total"].get<int64_t>(); };
  const int64_t before = generated();
  {
    HttpClient c(port());
    json body = {{"prompt", "go on forever"}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true}};
    c.send_request("POST", "/v1/completions", body.dump());
    auto h = c.read_head();
    ASSERT_EQ(h.status, 200);
    std::string chunk;
    ASSERT_TRUE(c.read_chunk(chunk));
  }
  const auto t0 = std::chrono::steady_clock::now();
  int active = -1;
  while (std::chrono::steady_clock::now() - t0 < 3s) {
    active = json::parse(get("/health").body)["models"][0]["slots"]["active"];
    if (active == 0) break;
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(active, 0);
  // The generation was cut short, not run to its 1000 tokens.
  EXPECT_LT(generated() - before, 1000);
}

TEST_F(Api, GreedyOverHttpEqualsEngine) {
  const std::string prompt = "The quick brown fox";
  const int n = 24;
  auto r = post("/v1/completions", {{"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}, {"logprobs", 1}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  // Direct: the same file, one sequence, argmax each step.
  auto file = gguf::File::open(demo_file());
  auto model = Model::load(file);
  auto tok = Tokenizer::from_gguf(*file);
  std::vector<Token> toks = tok->encode(prompt, true, true);
  Context ctx(model, 1024, 1, 1);
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < toks.size(); ++i) batch.push_back({toks[i], static_cast<int32_t>(i), 0, i + 1 == toks.size()});
  auto logits = ctx.forward(batch);
  std::vector<Token> out;
  for (int i = 0; i < n; ++i) {
    const Token t = argmax(logits);
    if (tok->is_eog(t)) break;
    out.push_back(t);
    const BatchEntry e{t, static_cast<int32_t>(toks.size() + out.size() - 1), 0, true};
    logits = ctx.forward(std::span<const BatchEntry>(&e, 1));
  }
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>(), tok->decode(out, false).substr(0)) << "text";
  ASSERT_EQ(j["choices"][0]["logprobs"]["tokens"].size(), out.size());
  for (size_t i = 0; i < out.size(); ++i)
    EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"][i].get<std::string>(), tok->token_to_piece(out[i])) << i;
}

TEST(ApiBackpressure, FullQueueGets503AtOnce) {
  Served s(/*parallel=*/1, /*max_queue=*/0, /*n_ctx=*/2048);
  HttpClient c(s.port());
  json body = {{"prompt", "busy"}, {"max_tokens", 2040}, {"ignore_eos", true}, {"stream", true}};
  c.send_request("POST", "/v1/completions", body.dump());
  auto head = c.read_head();
  if (head.status != 200) {
    std::string b;
    c.read_chunk(b);
    FAIL() << head.status << " " << b;
  }
  HttpClient c2(s.port());
  const auto t0 = std::chrono::steady_clock::now();
  auto o = c2.request("POST", "/api/generate", json{{"model", "demo"}, {"prompt", "me too"}}.dump());
  auto r = c2.request("POST", "/v1/completions", json{{"prompt", "me too"}, {"max_tokens", 2}}.dump());
  const auto took = std::chrono::steady_clock::now() - t0;
  const bool still_busy = json::parse(HttpClient(s.port()).request("GET", "/health").body)["models"][0]["slots"]["active"] == 1;
  if (!still_busy) GTEST_SKIP() << "the blocking generation ended too soon on this machine";
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.header("retry-after"), "1");
  EXPECT_TRUE(json::parse(r.body)["error"].is_object()) << "OpenAI error shape";
  EXPECT_LT(took, 500ms);
  EXPECT_EQ(o.status, 503);
  EXPECT_TRUE(json::parse(o.body)["error"].is_string()) << "Ollama error shape";
  c.close();
}

namespace {
// The demo model file with another tokenizer.chat_template (everything else copied).
std::string demo_with_template(const std::string& name, const std::string& tpl) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("lmhost-api-test-" + std::to_string(getpid()) + "-" + name + ".gguf")).string();
  auto f = gguf::File::open(demo_file());
  gguf::Writer w;
  for (const auto& v : f->metadata()) {
    if (v.key == "tokenizer.chat_template") continue;
    const size_t hdr = v.is_string() ? 8 : v.is_array() ? 12 : 0;  // length / element type + count
    w.set_raw(v.key, v.type(), std::vector<uint8_t>(v.data_ - hdr, v.data_ + v.size_));
  }
  w.set_string("tokenizer.chat_template", tpl);
  for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.dims, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  w.write(path);
  return path;
}
}  // namespace

// A template's own raise_exception (Gemma refusing a system role) is the
// client's 400 with the template's message, in OpenAI and Ollama shapes; a
// template our interpreter cannot run falls back to ChatML and still answers.
TEST(ApiTemplates, RaiseExceptionIs400AndOurFailuresFallBack) {
  const std::string strict = demo_with_template(
      "strict",
      "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
      "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
      "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}");
  const std::string odd = demo_with_template("odd", "{% for m in messages %}{{ m['content'] | frobnicate }}{% endfor %}");
  auto served = std::make_unique<Served>(engine_options(1, 64, 512),
                                         std::vector<ModelConfig>{model_config("strict", strict), model_config("odd", odd)}, 2);
  auto post = [&](const std::string& path, const json& body) { return HttpClient(served->port()).request("POST", path, body.dump()); };
  const json with_system = {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}};
  const json user_only = {{{"role", "user"}, {"content", "Hi"}}};

  auto r = post("/v1/chat/completions", {{"model", "strict"}, {"messages", with_system}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("System role not supported"), std::string::npos) << r.body;
  auto o = post("/api/chat", {{"model", "strict"}, {"messages", with_system}, {"stream", false}, {"options", {{"num_predict", 2}}}});
  EXPECT_EQ(o.status, 400) << o.body;
  EXPECT_NE(json::parse(o.body)["error"].get<std::string>().find("System role not supported"), std::string::npos) << o.body;
  auto ok = post("/v1/chat/completions", {{"model", "strict"}, {"messages", user_only}, {"max_tokens", 2}});
  EXPECT_EQ(ok.status, 200) << ok.body;

  auto fb = post("/v1/chat/completions", {{"model", "odd"}, {"messages", with_system}, {"max_tokens", 2}});
  EXPECT_EQ(fb.status, 200) << "our interpreter's limitation falls back to ChatML: " << fb.body;
  served.reset();
  std::filesystem::remove(strict);
  std::filesystem::remove(odd);
}

// Templates that paste a call's arguments as text (DeepSeek, functionary)
// get OpenAI's JSON string; templates that `tojson` them get the object (each
// test template refuses the other form with raise_exception, which is a 400,
// so a 200 means the template itself rendered the history).
TEST(ApiTemplates, ToolCallArgumentsAsTheTemplateUsesThem) {
  const std::string pastes = demo_with_template(
      "pastes", "{% for m in messages %}{% if m.tool_calls %}{% for t in m.tool_calls %}"
                "{% if t['function']['arguments'] is not string %}{{ raise_exception('arguments as text, please') }}{% endif %}"
                "{{ '<call>' + t['function']['name'] + '\n' + t['function']['arguments'] + '</call>' }}{% endfor %}"
                "{% else %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endif %}{% endfor %}assistant:");
  const std::string dumps = demo_with_template(
      "dumps", "{% for m in messages %}{% if m.tool_calls %}{% for t in m.tool_calls %}"
               "{% if t['function']['arguments'] is not mapping %}{{ raise_exception('arguments as an object, please') }}{% endif %}"
               "{{ '<call>' + t['function']['name'] + ' ' + t['function']['arguments']|tojson + '</call>' }}{% endfor %}"
               "{% else %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endif %}{% endfor %}assistant:");
  auto served = std::make_unique<Served>(engine_options(1, 64, 512),
                                         std::vector<ModelConfig>{model_config("pastes", pastes), model_config("dumps", dumps)}, 2);
  const json history = json::parse(R"([{"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}])");
  for (const char* model : {"pastes", "dumps"}) {
    const auto r = HttpClient(served->port()).request(
        "POST", "/v1/chat/completions", json{{"model", model}, {"messages", history}, {"max_tokens", 2}}.dump());
    EXPECT_EQ(r.status, 200) << model << ": " << r.body;
  }
  served.reset();
  std::filesystem::remove(pastes);
  std::filesystem::remove(dumps);
}

// format "json": the output is one valid JSON object, whatever the seed and
// temperature, non-streaming and streaming, generate and chat.
TEST_F(Api, OllamaFormatJsonYieldsAJsonObject) {
  for (int seed : {1, 2, 3}) {
    for (double temp : {0.0, 0.8, 1.5}) {
      for (bool chat : {false, true}) {
        for (bool stream : {false, true}) {
          json body = {{"model", "demo"}, {"format", "json"}, {"stream", stream},
                       {"options", {{"seed", seed}, {"temperature", temp}, {"num_predict", 160}}}};
          if (chat) body["messages"] = {{{"role", "user"}, {"content", "Reply in JSON"}}};
          else body["prompt"] = "Reply in JSON";
          auto r = post(chat ? "/api/chat" : "/api/generate", body);
          ASSERT_EQ(r.status, 200) << r.body;
          std::string text;
          json last;
          if (stream) {
            auto lines = ndjson(r.body);
            ASSERT_FALSE(lines.empty());
            for (auto& l : lines) text += chat ? l["message"]["content"].get<std::string>() : l["response"].get<std::string>();
            last = lines.back();
          } else {
            last = json::parse(r.body);
            text = chat ? last["message"]["content"].get<std::string>() : last["response"].get<std::string>();
          }
          SCOPED_TRACE("seed " + std::to_string(seed) + " temp " + std::to_string(temp) + (chat ? " chat" : " generate") +
                       (stream ? " stream" : ""));
          EXPECT_TRUE(last["done"].get<bool>());
          EXPECT_EQ(last["done_reason"], "stop");
          json parsed;
          ASSERT_NO_THROW(parsed = json::parse(text)) << text;
          EXPECT_TRUE(parsed.is_object()) << text;
        }
      }
    }
  }
  // A schema also turns the constraint on (the schema itself is not enforced).
  auto r = post("/api/generate", {{"model", "demo"}, {"prompt", "x"}, {"stream", false},
                                  {"format", {{"type", "object"}, {"properties", {{"a", {{"type", "string"}}}}}}},
                                  {"options", {{"seed", 7}, {"num_predict", 160}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(json::parse(json::parse(r.body)["response"].get<std::string>()).is_object());
  EXPECT_EQ(post("/api/generate", {{"model", "demo"}, {"prompt", "x"}, {"format", "yaml"}}).status, 400);
}

TEST_F(Api, OpenAIResponseFormatJsonObject) {
  for (int seed : {1, 2}) {
    auto r = post("/v1/chat/completions", {{"model", "demo"}, {"messages", {{{"role", "user"}, {"content", "JSON please"}}}},
                                           {"response_format", {{"type", "json_object"}}}, {"seed", seed},
                                           {"max_tokens", 160}});
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = json::parse(r.body);
    const std::string text = j["choices"][0]["message"]["content"].get<std::string>();
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
    EXPECT_TRUE(json::parse(text).is_object()) << text;
  }
  EXPECT_EQ(post("/v1/chat/completions", {{"model", "demo"}, {"messages", {{{"role", "user"}, {"content", "x"}}}},
                                          {"response_format", {{"type", "xml"}}}})
                .status,
            400);
}

// A model loading on demand must not hold an HTTP I/O thread: with a single
// I/O thread, /health and /v1/models answer while three requests wait for a
// slow load (held open until they have answered), and the waiting requests
// then complete — OpenAI streamed and not, and Ollama.
TEST(ApiOnDemandLoad, WaitsWithoutHoldingAnIoThread) {
  std::mutex mu;
  std::condition_variable cv;
  bool health_answered = false, load_started = false;
  ModelConfig cfg = model_config("slow", demo_file());
  cfg.preload = false;
  cfg.prepare = [&](const std::string&) {  // on the pool's loader thread, before the file is read
    std::unique_lock lk(mu);
    load_started = true;
    cv.notify_all();
    cv.wait_for(lk, std::chrono::seconds(20), [&] { return health_answered; });
  };
  Served served(engine_options(2, 64, 256), {cfg}, 1);  // one I/O thread
  const int port = served.port();

  const json gen = {{"model", "slow"}, {"prompt", "Once"}, {"max_tokens", 3}};
  std::vector<ClientResponse> answers(3);
  std::vector<std::thread> clients;
  clients.emplace_back([&] { answers[0] = HttpClient(port).request("POST", "/v1/completions", gen.dump()); });
  clients.emplace_back([&] {
    json s = gen;
    s["stream"] = true;
    answers[1] = HttpClient(port).request("POST", "/v1/completions", s.dump());
  });
  clients.emplace_back([&] {
    answers[2] = HttpClient(port).request("POST", "/api/generate",
                                          json{{"model", "slow"}, {"prompt", "Once"}, {"stream", false},
                                               {"options", {{"num_predict", 3}}}}.dump());
  });
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(20), [&] { return load_started; })) << "the load never started";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the three requests reach the server
  auto ask = [&](const char* path) {
    try {
      return HttpClient(port, 5000).request("GET", path);
    } catch (const std::exception& e) {  // timed out: the I/O thread is stuck
      ClientResponse r;
      r.body = e.what();
      return r;
    }
  };
  const ClientResponse health = ask("/health"), models = ask("/v1/models");
  {
    std::lock_guard lk(mu);
    health_answered = true;  // only now may the load go on
  }
  cv.notify_all();
  for (auto& c : clients) c.join();
  ASSERT_NE(health.status, 0) << "the only I/O thread was held by a request waiting for the load: " << health.body;
  EXPECT_EQ(json::parse(health.body)["models"][0]["state"], "loading") << health.body;
  EXPECT_EQ(health.status, 200) << "a load a request asked for must not fail the liveness probe: " << health.body;
  EXPECT_EQ(models.status, 200) << models.body;
  EXPECT_EQ(answers[0].status, 200) << answers[0].body;
  EXPECT_EQ(json::parse(answers[0].body)["choices"][0]["finish_reason"], "length") << answers[0].body;
  EXPECT_EQ(answers[1].status, 200) << answers[1].body;
  const auto events = sse_data(answers[1].body);
  ASSERT_FALSE(events.empty()) << answers[1].body;
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(answers[2].status, 200) << answers[2].body;
  EXPECT_TRUE(json::parse(answers[2].body)["done"].get<bool>()) << answers[2].body;
}

// A load that fails while requests wait for it: each gets the load's error
// (not a hang), and the pool keeps answering for the model afterwards.
TEST(ApiOnDemandLoad, AFailedLoadAnswersEveryWaitingRequest) {
  ModelConfig cfg = model_config("broken", demo_file());
  cfg.preload = false;
  cfg.prepare = [](const std::string&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the requests are waiting by now
    throw Error("the disk holding this model went away", 500);
  };
  Served served(engine_options(1, 64, 256), {cfg}, 1);  // one I/O thread
  const int port = served.port();
  const json gen = {{"model", "broken"}, {"prompt", "Once"}, {"max_tokens", 2}};
  std::vector<ClientResponse> answers(2);
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i)
    clients.emplace_back([&, i] { answers[i] = HttpClient(port, 20000).request("POST", "/v1/completions", gen.dump()); });
  for (auto& c : clients) c.join();
  for (const auto& a : answers) {
    EXPECT_GE(a.status, 500) << a.body;
    EXPECT_NE(a.body.find("the disk holding this model went away"), std::string::npos) << a.body;
  }
  const ClientResponse again = HttpClient(port, 20000).request("POST", "/v1/completions", gen.dump());
  EXPECT_GE(again.status, 500) << again.body;
}
