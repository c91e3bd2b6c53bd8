// Model management through the real binary: an Ollama store built in a temp
// folder (manifests + blobs) served under its Ollama names, a corrupted blob
// refused by its checksum, keep_alive (0 unloads, durations expire),
// MAX_LOADED_MODELS eviction and /api/ps.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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
using lmhost::testing::eventually;
using lmhost::testing::slurp;
using Dir = lmhost::testing::TempDir;
using lmhost::testing::synth_demo;
namespace fs = std::filesystem;

std::string sha256_hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  char buf[3];
  std::string out;
  for (unsigned char c : md) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    out += buf;
  }
  return out;
}

// Adds NAME:TAG to the store at root with the file as its model blob; returns the blob path.
std::string add_to_store(const std::string& root, const std::string& name, const std::string& tag,
                         const std::string& file) {
  const std::string data = slurp(file);
  const std::string hex = sha256_hex(data);
  fs::create_directories(root + "/blobs");
  const std::string blob = root + "/blobs/sha256-" + hex;
  std::ofstream(blob, std::ios::binary) << data;
  const std::string mdir = root + "/manifests/registry.ollama.ai/library/" + name;
  fs::create_directories(mdir);
  json m = {{"schemaVersion", 2},
            {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
            {"config", {{"mediaType", "application/vnd.docker.container.image.v1+json"}, {"digest", "sha256:00"}}},
            {"layers",
             {{{"mediaType", "application/vnd.ollama.image.model"}, {"digest", "sha256:" + hex}, {"size", data.size()}},
              {{"mediaType", "application/vnd.ollama.image.template"}, {"digest", "sha256:11"}, {"size", 3}}}}};
  std::ofstream(mdir + "/" + tag) << m.dump();
  return blob;
}

// The server, plus the names /api/ps lists as loaded.
class Server : public ServeProcess {
 public:
  Server(std::vector<std::string> args, std::vector<std::string> env = {})
      : ServeProcess(with_quiet(std::move(args)), ServeOptions{.env = std::move(env)}) {}
  std::set<std::string> loaded() {
    std::set<std::string> out;
    const json ps = get("/api/ps");
    for (const auto& m : ps["models"]) out.insert(m["name"].get<std::string>());
    return out;
  }

 private:
  static std::vector<std::string> with_quiet(std::vector<std::string> a) {
    a.insert(a.begin(), "-q");
    return a;
  }
};

json gen(const std::string& model, const std::string& prompt, json extra = json::object()) {
  json b = {{"model", model}, {"prompt", prompt}, {"stream", false}, {"options", {{"num_predict", 3}}}};
  b.update(extra);
  return b;
}

}  // namespace

TEST(OllamaStore, DiscoveredAndServedUnderOllamaNamesCorruptBlobRefused) {
  Dir d;
  const std::string store = d / "store";
  add_to_store(store, "qwen2.5", "0.5b", synth_demo(d, "a", 1));
  add_to_store(store, "tiny", "latest", synth_demo(d, "b", 2));
  const std::string bad = add_to_store(store, "broken", "7b", synth_demo(d, "c", 3));
  {  // flip a byte in the middle of the blob: its content no longer matches its name
    std::string data = slurp(bad);
    data[data.size() / 2] ^= 0x5a;
    std::ofstream(bad, std::ios::binary | std::ios::trunc) << data;
  }
  Server s({"--ollama-models", store});

  std::set<std::string> tags, v1;
  const json tj = s.get("/api/tags"), vj = s.get("/v1/models");
  for (const auto& m : tj["models"]) tags.insert(m["name"].get<std::string>());
  for (const auto& m : vj["data"]) v1.insert(m["id"].get<std::string>());
  const std::set<std::string> want = {"broken:7b", "qwen2.5:0.5b", "tiny:latest"};
  EXPECT_EQ(tags, want);  // the corrupt one is listed (not hashed until used) ...
  EXPECT_EQ(v1, want);
  EXPECT_TRUE(s.loaded().empty()) << "store models load on first use";

  auto r = s.req("POST", "/api/generate", gen("qwen2.5:0.5b", "hello"));
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["model"], "qwen2.5:0.5b");
  EXPECT_EQ(j["eval_count"], 3);
  // NAME means NAME:latest; the OpenAI API serves the same names.
  r = s.req("POST", "/api/generate", gen("tiny", "hello"));
  EXPECT_EQ(r.status, 200) << r.body;
  r = s.req("POST", "/v1/chat/completions",
            {{"model", "qwen2.5:0.5b"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(s.loaded(), (std::set<std::string>{"qwen2.5:0.5b", "tiny:latest"}));

  // ... but refused by its checksum on use, in both API shapes, with a clear message.
  r = s.req("POST", "/api/generate", gen("broken:7b", "hello"));
  EXPECT_EQ(r.status, 500) << r.body;
  EXPECT_NE(r.body.find("checksum mismatch"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("sha256-"), std::string::npos) << r.body;
  r = s.req("POST", "/v1/chat/completions",
            {{"model", "broken:7b"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 500) << r.body;
  EXPECT_NE(r.body.find("checksum mismatch"), std::string::npos) << r.body;
  EXPECT_EQ(s.loaded().count("broken:7b"), 0u);
  // The digest reported is the blob's.
  const json tj2 = s.get("/api/tags");
  for (const auto& m : tj2["models"]) {
    EXPECT_EQ(m["digest"].get<std::string>().size(), 64u);
    EXPECT_EQ(m["size"], fs::file_size(d / "a.gguf")) << "size on disk, loaded or not";
  }
}

TEST(OllamaStore, ConfiguredChecksumVerified) {
  Dir d;
  const std::string a = synth_demo(d, "a", 1);
  const std::string good = sha256_hex(slurp(a));
  std::string wrong = good;
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  Server s({"--model", "ok=" + a + "@sha256:" + good, "--model", "bad=" + a + "@sha256:" + wrong});
  EXPECT_EQ(s.req("POST", "/api/generate", gen("ok", "hi")).status, 200);
  auto r = s.req("POST", "/api/generate", gen("bad", "hi"));
  EXPECT_EQ(r.status, 500) << r.body;
  EXPECT_NE(r.body.find("checksum mismatch"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(wrong), std::string::npos) << r.body;
}

TEST(Lifecycle, KeepAliveZeroUnloadsDurationsExpireAndPsShowsExpiry) {
  Dir d;
  Server s({"--model", "m=" + synth_demo(d, "a", 1)});
  EXPECT_EQ(s.loaded(), std::set<std::string>{"m"}) << "--model files are preloaded";
  auto ps = s.get("/api/ps")["models"][0];
  // As Ollama: what the model holds in memory, its file plus its KV cache (exact figure: api_server_test).
  EXPECT_GT(ps["size"].get<uint64_t>(), fs::file_size(d / "a.gguf"));
  EXPECT_GE(ps["expires_at"].get<std::string>(), "2100") << "preloaded: kept until a request says otherwise";

  // Ollama's documented unload: empty prompt + keep_alive 0 (generate and chat).
  auto r = s.req("POST", "/api/generate", {{"model", "m"}, {"prompt", ""}, {"keep_alive", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["done_reason"], "unload");
  EXPECT_TRUE(s.loaded().empty());
  EXPECT_EQ(s.get("/health")["status"], "ok") << "an unloaded model is still available";
  EXPECT_EQ(s.req("GET", "/ready").status, 200);

  // First use loads it again; keep_alive "2s" sets its expiry.
  r = s.req("POST", "/api/generate", gen("m", "hello", {{"keep_alive", "2s"}}));
  ASSERT_EQ(r.status, 200) << r.body;
  // The expiry is set when the request lets go of the model, which may be a
  // moment after the client has its response.
  EXPECT_TRUE(eventually([&] {
    auto models = s.get("/api/ps")["models"];
    return models.size() == 1 && models[0]["expires_at"].get<std::string>() < "2100";
  })) << "keep_alive 2s gives a near expiry";
  EXPECT_TRUE(eventually([&] { return s.loaded().empty(); })) << "keep_alive 2s expired";

  r = s.req("POST", "/api/chat", {{"model", "m"}, {"messages", json::array()}, {"keep_alive", "-1"}});
  EXPECT_EQ(json::parse(r.body)["done_reason"], "load");
  EXPECT_EQ(s.loaded(), std::set<std::string>{"m"});
  r = s.req("POST", "/api/chat", {{"model", "m"}, {"messages", json::array()}, {"keep_alive", "0s"}});
  EXPECT_EQ(json::parse(r.body)["done_reason"], "unload");
  EXPECT_TRUE(s.loaded().empty());

  // keep_alive 0 on a real request: unloads once it is done.
  r = s.req("POST", "/api/generate", gen("m", "hello", {{"keep_alive", 0}}));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(eventually([&] { return s.loaded().empty(); }));

  r = s.req("POST", "/api/generate", gen("m", "hello", {{"keep_alive", "soon"}}));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("keep_alive"), std::string::npos) << r.body;
}

TEST(Lifecycle, MaxLoadedModelsEvictsLeastRecentlyUsed) {
  Dir d;
  const std::string store = d / "store";
  add_to_store(store, "a", "latest", synth_demo(d, "a", 1));
  add_to_store(store, "b", "latest", synth_demo(d, "b", 2));
  add_to_store(store, "c", "latest", synth_demo(d, "c", 3));
  Server s({"--ollama-models", store, "--max-loaded-models", "2"});
  auto use = [&](const std::string& m) { return s.req("POST", "/api/generate", gen(m, "hi")).status; };
  ASSERT_EQ(use("a"), 200);
  ASSERT_EQ(use("b"), 200);
  EXPECT_EQ(s.loaded(), (std::set<std::string>{"a:latest", "b:latest"}));
  ASSERT_EQ(use("a"), 200);  // b is now the least recently used
  ASSERT_EQ(use("c"), 200);
  EXPECT_EQ(s.loaded(), (std::set<std::string>{"a:latest", "c:latest"}));
  ASSERT_EQ(use("b"), 200);
  EXPECT_EQ(s.loaded(), (std::set<std::string>{"b:latest", "c:latest"}));
  EXPECT_NE(s.log_text().find("evicting model 'a:latest'"), std::string::npos);
}
