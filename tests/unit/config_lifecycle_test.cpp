// Model lifecycle settings, aliases and the admin key as configuration keys:
// YAML, environment and flag forms, validation with key paths, and the
// printed configuration reading back.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "config/config.h"

using namespace lmhost::config;

namespace {

std::string tmp_yaml(const std::string& text) {
  static int n = 0;
  const auto p = std::filesystem::temp_directory_path() /
                 ("lmhost-cfglife-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

std::string all(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

}  // namespace

TEST(ConfigLifecycle, AliasesFromYamlEnvAndFlags) {
  LoadInput in;
  in.file = tmp_yaml(
      "models:\n"
      "  keep_alive: 10m\n"
      "  max_loaded: 2\n"
      "  memory_budget: 8GiB\n"
      "  preload: [a, b]\n"
      "  aliases:\n"
      "    chat: {\"chat@v1\": 90, \"chat@v2\": 10}\n"
      "    fast: qwen2.5:0.5b\n"
      "embeddings:\n"
      "  max_batch_tokens: 4096\n"
      "auth:\n"
      "  admin_key: s3cret\n");
  Config c = load(in);
  EXPECT_EQ(c.keep_alive, "10m");
  EXPECT_EQ(c.max_loaded_models, 2);
  EXPECT_EQ(c.memory_budget, "8GiB");
  EXPECT_EQ(c.preload, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.embed_max_batch_tokens, 4096);
  EXPECT_EQ(c.admin_key, "s3cret");
  ASSERT_EQ(c.aliases.size(), 2u);
  EXPECT_EQ(c.aliases[0].name, "chat");
  EXPECT_EQ(c.aliases[0].versions, (std::vector<std::pair<std::string, int64_t>>{{"chat@v1", 90}, {"chat@v2", 10}}));
  // An Ollama tag is a name, not a weight.
  EXPECT_EQ(c.aliases[1].versions, (std::vector<std::pair<std::string, int64_t>>{{"qwen2.5:0.5b", 1}}));

  // Environment: MODEL_ALIASES (; between aliases), KEEP_ALIVE, MAX_LOADED_MODELS, the batcher.
  LoadInput e;
  e.env = {{"MODEL_ALIASES", "chat=chat@v1:50,chat@v2:50;x=y"}, {"KEEP_ALIVE", "-1"}, {"MAX_LOADED_MODELS", "3"},
           {"MAX_BATCH_TOKENS", "100"}, {"BATCH_WAIT_US", "0"}, {"EMBED_MAX_QUEUE", "7"},
           {"MAX_MODEL_MEMORY", "512MiB"}, {"PRELOAD_MODELS", "*"}, {"OLLAMA_MODELS", "/store"}};
  Config ce = load(e);
  ASSERT_EQ(ce.aliases.size(), 2u);
  EXPECT_EQ(ce.aliases[0].versions[1], (std::pair<std::string, int64_t>{"chat@v2", 50}));
  EXPECT_EQ(ce.keep_alive, "-1");
  EXPECT_EQ(ce.max_loaded_models, 3);
  EXPECT_EQ(ce.embed_max_batch_tokens, 100);
  EXPECT_EQ(ce.embed_batch_wait_us, 0);
  EXPECT_EQ(ce.embed_max_queue, 7);
  EXPECT_EQ(ce.memory_budget, "512MiB");
  EXPECT_EQ(ce.preload, std::vector<std::string>{"*"});
  EXPECT_EQ(ce.ollama_store, "/store");

  // A flag replaces the alias of the same name.
  e.overrides = {{"models.aliases", "chat=chat@v2"}};
  Config cf = load(e);
  ASSERT_EQ(cf.aliases.size(), 2u);
  EXPECT_EQ(cf.aliases.back().name, "chat");
  EXPECT_EQ(cf.aliases.back().versions, (std::vector<std::pair<std::string, int64_t>>{{"chat@v2", 1}}));
}

TEST(ConfigLifecycle, BadValuesNameTheKey) {
  const auto problems = check_file(tmp_yaml(
      "models:\n"
      "  keep_alive: soon\n"
      "  memory_budget: lots\n"
      "  aliases:\n"
      "    zero: {\"a\": 0}\n"
      "auth:\n"
      "  admin_key_sha256: nothex\n"));
  const std::string p = all(problems) + all(check_file(tmp_yaml("models:\n  aliases:\n    chat: {\"chat@v1\": -5}\n")));
  EXPECT_NE(p.find("models.keep_alive"), std::string::npos) << p;
  EXPECT_NE(p.find("models.memory_budget"), std::string::npos) << p;
  EXPECT_NE(p.find("models.aliases.chat.chat@v1"), std::string::npos) << p;
  EXPECT_NE(p.find("models.aliases.zero"), std::string::npos) << p;
  EXPECT_NE(p.find("auth.admin_key_sha256"), std::string::npos) << p;

  AliasConfig a;
  EXPECT_NE(parse_alias("no-equals", a), "");
  EXPECT_NE(parse_alias("chat=", a), "");
  EXPECT_EQ(parse_alias("chat=v1:3, v2", a), "");
  EXPECT_EQ(a.versions, (std::vector<std::pair<std::string, int64_t>>{{"v1", 3}, {"v2", 1}}));
  for (const char* ok : {"5m", "30s", "1h30m", "0", "-1", "3600", "500ms"}) {
    LoadInput in;
    in.env = {{"KEEP_ALIVE", ok}};
    EXPECT_NO_THROW(load(in)) << ok;
  }
}

TEST(ConfigLifecycle, PrintedConfigReadsBackAndHidesTheAdminKey) {
  LoadInput in;
  in.env = {{"ADMIN_KEY", "admin-very-secret"}, {"MODEL_ALIASES", "chat=chat@v1:90,chat@v2:10"}};
  Config c = load(in);
  const std::string y = to_yaml(c);
  EXPECT_EQ(y.find("admin-very-secret"), std::string::npos) << y;
  EXPECT_NE(y.find("aliases: {\"chat\": {\"chat@v1\": 90, \"chat@v2\": 10}}"), std::string::npos) << y;
  LoadInput back;
  back.file = tmp_yaml(to_yaml(c, false));
  Config c2 = load(back);
  ASSERT_EQ(c2.aliases.size(), 1u);
  EXPECT_EQ(c2.aliases[0].versions, c.aliases[0].versions);
  EXPECT_EQ(c2.admin_key, "admin-very-secret");
  bool listed = false;
  for (const auto& s : settings()) listed = listed || (s.path == "models.aliases" && s.env == "MODEL_ALIASES");
  EXPECT_TRUE(listed);
}
