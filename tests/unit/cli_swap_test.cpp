// Hot swap, the admin API, SIGHUP reload and weighted versions through the
// real binary: a swap under a steady request loop fails no request and the
// answers switch version (X-Lmhost-Model-Version), a request in flight on the
// old model finishes on it; the admin key is enforced; SIGHUP adds a model and
// swaps a changed file; an alias splits traffic by weight; a failed swap
// leaves the old model serving. Models: `lmhost synth --shape demo` with
// different seeds (one file per version).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "serve_process.h"

namespace {

using json = nlohmann::json;
using lmhost::testing::HttpClient;
using lmhost::testing::ServeOptions;
using lmhost::testing::ServeProcess;
using lmhost::testing::eventually;
using Dir = lmhost::testing::TempDir;
using lmhost::testing::synth_demo;

const std::map<std::string, std::string> kAdmin = {{"authorization", "Bearer adm-key"}};

json chat(const std::string& model, int max_tokens = 2, bool stream = false) {
  return {{"model", model},
          {"messages", {{{"role", "user"}, {"content", "hello"}}}},
          {"max_tokens", max_tokens},
          {"stream", stream}};
}

}  // namespace

TEST(HotSwap, UnderALoadLoopNoRequestFailsAndAnswersSwitchVersion) {
  Dir d;
  const std::string v1 = synth_demo(d, "v1", 1), v2 = synth_demo(d, "v2", 2);
  ServeProcess s({"--model", "chat=" + v1}, ServeOptions{.env = {"ADMIN_KEY=adm-key"}});

  // A steady client loop (its own connection, one request after another).
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex mu;
  std::vector<std::string> versions;  // in order
  std::string first_failure;
  std::thread loop([&] {
    HttpClient c(s.port(), 60000);
    while (!stop.load()) {
      auto r = c.request("POST", "/v1/chat/completions", chat("chat").dump());
      std::lock_guard lk(mu);
      if (r.status == 200) {
        ++ok;
        versions.push_back(r.header("x-lmhost-model-version"));
      } else {
        if (failed++ == 0) first_failure = std::to_string(r.status) + " " + r.body;
      }
      if (r.closed) c.connect();
    }
  });
  ASSERT_TRUE(eventually([&] { return ok.load() >= 20; })) << "the loop runs";

  // A long streamed generation (1900 tokens, > 1 s) in flight on the old model while the swap happens.
  json long_body = chat("chat", 1900, true);
  long_body["ignore_eos"] = true;
  HttpClient sc(s.port(), 120000);
  sc.send_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: stream-on-old\r\n"
              "Content-Type: application/json\r\nContent-Length: " + std::to_string(long_body.dump().size()) +
              "\r\n\r\n" + long_body.dump());

  auto r = s.req("POST", "/admin/models/swap", {{"name", "chat"}, {"path", v2}}, kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["version"], "v2");
  EXPECT_EQ(j["swapped_from"], "v1");
  EXPECT_EQ(j["state"], "ready");
  EXPECT_GE(j["warmup_ms"].get<double>(), 0.0);
  const int at_swap = ok.load();
  ASSERT_TRUE(eventually([&] { return ok.load() >= at_swap + 20; }));
  stop = true;
  loop.join();

  // The streamed request started on v1 finishes on v1 (its header), complete.
  const auto streamed = sc.read_response();
  EXPECT_EQ(streamed.status, 200);
  EXPECT_EQ(streamed.header("x-lmhost-model-version"), "v1");
  EXPECT_NE(streamed.body.find("[DONE]"), std::string::npos) << streamed.body.substr(0, 300);
  // ... and it ended after the switch (its log line follows "model swapped" and names v1).
  // (the log line is written when the response is done, possibly just after the client read it)
  EXPECT_TRUE(eventually([&] { return s.log_text().find("\"request_id\":\"stream-on-old\"") != std::string::npos; }));
  int swapped_at = -1, stream_at = -1, i = 0;
  for (const auto& l : s.lines()) {
    if (l.value("msg", "") == "model swapped") swapped_at = i;
    if (l.value("request_id", "") == "stream-on-old") {
      stream_at = i;
      EXPECT_EQ(l.value("version", ""), "v1");
      EXPECT_EQ(l.value("status", 0), 200);
    }
    ++i;
  }
  EXPECT_GT(swapped_at, 0);
  EXPECT_GT(stream_at, swapped_at) << "the streamed request was still running on the old model after the switch";

  EXPECT_EQ(failed.load(), 0) << first_failure;
  std::lock_guard lk(mu);
  ASSERT_GE(versions.size(), 40u);
  EXPECT_EQ(versions.front(), "v1");
  EXPECT_EQ(versions.back(), "v2");
  // One switch: every v1 answer comes before every v2 answer.
  size_t first_v2 = versions.size();
  for (size_t i = 0; i < versions.size(); ++i)
    if (versions[i] == "v2" && first_v2 == versions.size()) first_v2 = i;
  for (size_t i = first_v2; i < versions.size(); ++i) EXPECT_EQ(versions[i], "v2") << i;
  // The old model is unloaded once its last request is done.
  EXPECT_TRUE(eventually([&] { return s.log_text().find("unloading the replaced model") != std::string::npos; }));
  EXPECT_NE(s.log_text().find("\"msg\":\"model swapped\""), std::string::npos);
}

TEST(HotSwap, AdminKeyEnforcedAndAFailedSwapKeepsTheOldModel) {
  Dir d;
  const std::string v1 = synth_demo(d, "v1", 1);
  const std::string bad = d / "bad.gguf";
  std::ofstream(bad) << "this is not a GGUF file";
  ServeProcess s({"--model", "m=" + v1}, ServeOptions{.env = {"ADMIN_KEY=adm-key", "API_KEYS=user-key"}});

  EXPECT_EQ(s.req("GET", "/admin/models").status, 401);
  EXPECT_EQ(s.req("GET", "/admin/models", nullptr, {{"authorization", "Bearer user-key"}}).status, 403)
      << "an API key is not an admin key";
  EXPECT_EQ(s.req("GET", "/admin/models", nullptr, {{"x-api-key", "wrong"}}).status, 403);
  EXPECT_EQ(s.req("POST", "/admin/models/unload", {{"name", "m"}}, {{"authorization", "Bearer user-key"}}).status, 403);
  auto r = s.req("GET", "/admin/models", nullptr, kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["models"][0]["version"], "v1");

  // A bad file: 422 with the load error, the old model keeps serving.
  r = s.req("POST", "/admin/models/swap", {{"name", "m"}, {"path", bad}}, kAdmin);
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("keeps serving"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("GGUF"), std::string::npos) << r.body;
  EXPECT_EQ(s.req("POST", "/admin/models/swap", {{"name", "m"}, {"path", d / "missing.gguf"}}, kAdmin).status, 400);
  EXPECT_EQ(s.req("POST", "/admin/models/swap", {{"name", "nope"}, {"path", v1}}, kAdmin).status, 404);
  r = s.req("POST", "/v1/chat/completions", chat("m"), {{"authorization", "Bearer user-key"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-model-version"), "v1");

  // Unload, then load again through the admin API.
  r = s.req("POST", "/admin/models/unload", {{"name", "m"}}, kAdmin);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["state"], "unloaded");
  r = s.req("POST", "/admin/models/load", {{"name", "m"}}, kAdmin);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["state"], "ready");
  // Adding a name from a file.
  r = s.req("POST", "/admin/models/load", {{"name", "extra"}, {"path", v1}, {"label", "x1"}}, kAdmin);
  EXPECT_EQ(r.status, 200) << r.body;
  r = s.req("POST", "/v1/chat/completions", chat("extra"), {{"authorization", "Bearer user-key"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-model-version"), "x1");

  // No admin key configured: the admin API is off, and says how to turn it on.
  ServeProcess off({"-q", "--model", "m=" + v1});
  r = off.req("GET", "/admin/models", nullptr, kAdmin);
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("ADMIN_KEY"), std::string::npos) << r.body;
}

TEST(HotSwap, SighupAddsAModelAndSwapsAChangedFile) {
  Dir d;
  const std::string v1 = synth_demo(d, "v1", 1), v2 = synth_demo(d, "v2", 2), v3 = synth_demo(d, "v3", 3);
  const std::string cfg = d / "lmhost.yaml";
  std::ofstream(cfg) << "models:\n  paths: [\"a=" << v1 << "\"]\n";
  ServeProcess s({"-q", "--config", cfg});
  auto r = s.req("POST", "/v1/chat/completions", chat("a"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-model-version"), "v1");

  std::ofstream(cfg, std::ios::trunc) << "models:\n  paths: [\"a=" << v2 << "\", \"b=" << v3
                                      << "\"]\n  aliases:\n    both: {a: 1, b: 1}\n";
  s.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return s.log_text().find("configuration reloaded") != std::string::npos; }));
  EXPECT_TRUE(s.alive());
  std::set<std::string> ids;
  const json listed = s.get("/v1/models");
  for (const auto& m : listed["data"]) ids.insert(m["id"].get<std::string>());
  EXPECT_EQ(ids, (std::set<std::string>{"a", "b", "both"}));
  r = s.req("POST", "/v1/chat/completions", chat("a"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-model-version"), "v2");
  r = s.req("POST", "/v1/chat/completions", chat("b"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-lmhost-model-version"), "v3");
  const std::string log = s.log_text();
  EXPECT_NE(log.find("added b"), std::string::npos) << log;
  EXPECT_NE(log.find("swapped a"), std::string::npos) << log;

  // A broken configuration: logged, the running one stays.
  std::ofstream(cfg, std::ios::trunc) << "models:\n  paths: [\"a=" << v1 << "\"]\n  no_such_key: 1\n";
  s.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return s.log_text().find("configuration reload failed") != std::string::npos; }));
  r = s.req("POST", "/v1/chat/completions", chat("b"));
  EXPECT_EQ(r.status, 200) << r.body;
  r = s.req("POST", "/v1/chat/completions", chat("a"));
  EXPECT_EQ(r.header("x-lmhost-model-version"), "v2");
}

TEST(HotSwap, WeightedVersionsSplitTrafficAndReweightWithoutReload) {
  Dir d;
  const std::string v1 = synth_demo(d, "v1", 1), v2 = synth_demo(d, "v2", 2);
  ServeProcess s({"--model", "chat@v1=" + v1, "--model", "chat@v2=" + v2, "--alias", "chat=chat@v1:50,chat@v2:50"},
                 ServeOptions{.env = {"ADMIN_KEY=adm-key"}});
  std::map<std::string, int> seen;
  HttpClient c(s.port(), 60000);
  for (int i = 0; i < 100; ++i) {
    auto r = c.request("POST", "/v1/chat/completions", chat("chat", 1).dump());
    ASSERT_EQ(r.status, 200) << r.body;
    ++seen[r.header("x-lmhost-model-version")];
    if (r.closed) c.connect();
  }
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen["chat@v1"], 20);
  EXPECT_GT(seen["chat@v2"], 20);
  // The request log line names the version; the alias is what was asked for.
  bool logged = false;
  for (const auto& l : s.lines())
    if (l.value("msg", "") == "request" && l.value("model", "") == "chat")
      logged = logged || l.value("version", "") == "chat@v1" || l.value("version", "") == "chat@v2";
  EXPECT_TRUE(logged);
  // Both APIs list the alias.
  std::set<std::string> ids, tags;
  const json vj = s.get("/v1/models"), tj = s.get("/api/tags");  // named: a range-for over a temporary's member dangles
  for (const auto& m : vj["data"]) ids.insert(m["id"].get<std::string>());
  for (const auto& m : tj["models"]) tags.insert(m["name"].get<std::string>());
  EXPECT_TRUE(ids.count("chat"));
  EXPECT_TRUE(tags.count("chat"));
  // Ollama API too.
  auto r = s.req("POST", "/api/chat", {{"model", "chat"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                       {"stream", false}, {"options", {{"num_predict", 1}}}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.header("x-lmhost-model-version").find("chat@v"), std::string::npos);

  // Re-weight to v2 only through the admin API: no model is reloaded.
  const auto loaded_at = [&] {
    std::map<std::string, std::string> out;
    const json all = json::parse(s.req("GET", "/admin/models", nullptr, kAdmin).body);
    for (const auto& m : all["models"])
      out[m["name"]] = m.value("loaded_at", "");
    return out;
  };
  const auto before = loaded_at();
  r = s.req("POST", "/admin/aliases", {{"name", "chat"}, {"versions", {{"chat@v1", 0}, {"chat@v2", 100}}}}, kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  for (int i = 0; i < 20; ++i) {
    auto x = c.request("POST", "/v1/chat/completions", chat("chat", 1).dump());
    EXPECT_EQ(x.header("x-lmhost-model-version"), "chat@v2");
    if (x.closed) c.connect();
  }
  EXPECT_EQ(loaded_at(), before);
  EXPECT_EQ(s.req("POST", "/admin/aliases", {{"name", "chat"}, {"versions", {{"nope", 1}}}}, kAdmin).status, 400);
}

namespace {
// The names /api/ps lists as loaded.
std::set<std::string> loaded_models(ServeProcess& s) {
  std::set<std::string> out;
  const json ps = s.get("/api/ps");
  for (const auto& m : ps["models"]) out.insert(m["name"].get<std::string>());
  return out;
}
}  // namespace

TEST(HotSwap, MemoryBudgetEvictsTheLeastRecentlyUsedIdleModel) {
  Dir d;
  const std::string a = synth_demo(d, "a", 1), b = synth_demo(d, "b", 2);  // ~0.9 MB each: only one fits in 1.5 MB
  ServeProcess s({"-q", "--model", "a=" + a, "--model", "b=" + b, "--set", "models.memory_budget=1.5MB"});
  auto loaded = [&] { return loaded_models(s); };
  ASSERT_EQ(s.req("POST", "/v1/chat/completions", chat("a")).status, 200);
  EXPECT_TRUE(eventually([&] { return loaded() == std::set<std::string>{"a"}; }));
  ASSERT_EQ(s.req("POST", "/v1/chat/completions", chat("b")).status, 200);
  EXPECT_TRUE(eventually([&] { return loaded() == std::set<std::string>{"b"}; }));
  EXPECT_NE(s.log_text().find("\"reason\":\"memory_budget\""), std::string::npos);
}

// The budget counts a loaded model's KV cache too (here 2 MiB next to a
// ~0.9 MB file): two files fit in 3.5 MB, two loaded models do not.
TEST(HotSwap, MemoryBudgetCountsTheKvCache) {
  Dir d;
  const std::string a = synth_demo(d, "a", 1), b = synth_demo(d, "b", 2);
  ServeProcess s({"-q", "--model", "a=" + a, "--model", "b=" + b, "--set", "models.memory_budget=3.5MB"});
  auto loaded = [&] { return loaded_models(s); };
  ASSERT_EQ(s.req("POST", "/v1/chat/completions", chat("a")).status, 200);
  const uint64_t a_size = s.get("/api/ps")["models"][0]["size"].get<uint64_t>();
  ASSERT_GT(2 * a_size, 3500000u) << "the test needs two loaded models over the budget";
  ASSERT_LT(2 * std::filesystem::file_size(a), 3500000u) << "... and two files under it";
  ASSERT_EQ(s.req("POST", "/v1/chat/completions", chat("b")).status, 200);
  EXPECT_TRUE(eventually([&] { return loaded() == std::set<std::string>{"b"}; })) << "a should have been evicted";
}
