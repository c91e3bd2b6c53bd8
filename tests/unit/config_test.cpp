#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "config/config.h"

using namespace lmhost::config;

namespace {

std::string write_tmp(const std::string& text) {
  static int n = 0;
  const auto p = std::filesystem::temp_directory_path() /
                 ("lmhost-config-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v) s += x + "\n";
  return s;
}

}  // namespace

TEST(Config, DefaultsWithoutAnything) {
  Config c = load({});
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 8080);
  EXPECT_EQ(c.rate_limit_rpm, 0);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_TRUE(c.keys.empty());
}

TEST(Config, PrecedenceDefaultsFileEnvFlags) {
  const std::string f = write_tmp(
      "server:\n  port: 9000\n  host: 0.0.0.0\nlogging:\n  level: debug\ncache:\n  size: 5\n"
      "rate_limit:\n  requests_per_minute: 10\n");
  LoadInput in;
  in.file = f;
  in.env = {{"PORT", "9100"}, {"CACHE_SIZE", "7"}, {"LOG_LEVEL", "warn"}, {"OLLAMA_URL", "http://ollama:11434"}};
  in.overrides = {{"server.port", "9200"}};
  Config c = load(in);
  EXPECT_EQ(c.port, 9200);           // flag beats env beats file
  EXPECT_EQ(c.cache_size, 7);        // env beats file
  EXPECT_EQ(c.log_level, "warn");    // env beats file
  EXPECT_EQ(c.host, "0.0.0.0");      // file beats default
  EXPECT_EQ(c.rate_limit_rpm, 10);   // file
  EXPECT_EQ(c.batch_size, 32);       // default
  EXPECT_EQ(c.ollama_url, "http://ollama:11434");
}

TEST(Config, SeedEnvironmentNamesWork) {
  LoadInput in;
  in.env = {{"HOST", "0.0.0.0"},
            {"PORT", "3010"},
            {"LOG_LEVEL", "info"},
            {"DEFAULT_MODEL", "nomic-embed-text"},
            {"MODEL_PATH", "/models/a.gguf,b=/models/b.gguf"},
            {"MAX_CONCURRENT_REQUESTS", "100"},
            {"MAX_QUEUE", "128"},
            {"REQUEST_TIMEOUT_SECONDS", "60"},
            {"BATCH_SIZE", "32"},
            {"CACHE_SIZE", "1000"},
            {"REDIS_URL", "redis://localhost:6379"},
            {"CACHE_TTL_SECONDS", "3600"},
            {"RATE_LIMIT_REQUESTS_PER_MINUTE", "1000"},
            {"RATE_LIMIT_BURST", "100"},
            {"OLLAMA_URL", "http://localhost:11434"},
            {"OPENAI_API_KEY", "sk-secret"},
            {"INSTANCE_ID", "replica-7"},
            {"API_KEYS", "k1, k2"},
            {"API_KEYS_FILE", "/etc/lmhost/keys"},
            {"LOG_PROMPTS", "true"}};
  Config c = load(in);
  EXPECT_EQ(c.port, 3010);
  EXPECT_EQ(c.default_model, "nomic-embed-text");
  ASSERT_EQ(c.model_paths.size(), 2u);
  EXPECT_EQ(c.model_paths[1], "b=/models/b.gguf");
  EXPECT_EQ(c.max_concurrent_requests, 100);
  EXPECT_EQ(c.max_queue, 128);
  EXPECT_EQ(c.request_timeout_seconds, 60);
  EXPECT_EQ(c.redis_url, "redis://localhost:6379");
  EXPECT_EQ(c.limits_redis_url(), "redis://localhost:6379");
  EXPECT_EQ(c.rate_limit_rpm, 1000);
  EXPECT_EQ(c.rate_limit_burst, 100);
  EXPECT_EQ(c.instance_id, "replica-7");
  ASSERT_EQ(c.keys.size(), 2u);
  EXPECT_EQ(c.keys[1].key, "k2");
  EXPECT_EQ(c.keys_file, "/etc/lmhost/keys");
  EXPECT_TRUE(c.log_prompts);
}

TEST(Config, ConfigFileFromLmhostConfigEnv) {
  const std::string f = write_tmp("server:\n  port: 7001\n");
  LoadInput in;
  in.env = {{"LMHOST_CONFIG", f}};
  EXPECT_EQ(load(in).port, 7001);
}

TEST(Config, CheckReportsEveryProblemWithPathAndExpectation) {
  const std::string f = write_tmp(
      "server:\n"
      "  prot: 80\n"                       // line 2: unknown, suggestion
      "  port: eighty\n"                   // line 3: type
      "logging:\n"
      "  level: loud\n"                    // line 5: enum
      "rate_limit:\n"
      "  requests_per_minute: -5\n"        // line 7: range
      "colour: blue\n"                     // line 8: unknown section
      "auth:\n"
      "  keys:\n"
      "    - name: alice\n"
      "      key: a\n"
      "      sha256: abc\n"                // both key and sha256, bad hex
      "      model: x\n");                 // unknown field
  auto p = check_file(f);
  const std::string all = joined(p);
  EXPECT_NE(all.find(f + ":2: server.prot: unknown key (did you mean 'server.port'?)"), std::string::npos) << all;
  EXPECT_NE(all.find(":3: server.port: expected an integer from 0 to 65535, got \"eighty\""), std::string::npos) << all;
  EXPECT_NE(all.find(":5: logging.level: expected one of debug,info,warn,error, got \"loud\""), std::string::npos) << all;
  EXPECT_NE(all.find(":7: rate_limit.requests_per_minute: expected an integer from 0"), std::string::npos) << all;
  EXPECT_NE(all.find(":8: colour: unknown key"), std::string::npos) << all;
  EXPECT_NE(all.find("auth.keys[0].model: unknown key"), std::string::npos) << all;
  EXPECT_NE(all.find("auth.keys[0]: give exactly one of 'key'"), std::string::npos) << all;
  EXPECT_NE(all.find("auth.keys[0].sha256: expected 64 hex digits"), std::string::npos) << all;
  EXPECT_GE(p.size(), 8u);
  // load() throws with the same problems.
  LoadInput in;
  in.file = f;
  try {
    load(in);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_GE(e.problems().size(), 8u);
    EXPECT_NE(std::string(e.what()).find("server.prot"), std::string::npos);
  }
}

TEST(Config, BadYamlAndMissingFile) {
  auto p = check_file(write_tmp("server: [1, 2\n"));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].find("not valid YAML"), std::string::npos);
  p = check_file("/nonexistent/lmhost.yaml");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].find("cannot open"), std::string::npos);
  EXPECT_TRUE(check_file(write_tmp("")).empty());
}

TEST(Config, EnvironmentAndFlagProblemsNameTheirSource) {
  LoadInput in;
  in.env = {{"PORT", "abc"}, {"LOG_PROMPTS", "maybe"}};
  in.overrides = {{"server.threads", "3"}};
  try {
    load(in);
    FAIL();
  } catch (const ConfigError& e) {
    const std::string all = joined(e.problems());
    EXPECT_NE(all.find("environment PORT (server.port): expected an integer"), std::string::npos) << all;
    EXPECT_NE(all.find("environment LOG_PROMPTS (logging.prompts): expected true or false"), std::string::npos) << all;
    EXPECT_NE(all.find("command line: server.threads: unknown key"), std::string::npos) << all;
  }
}

TEST(Config, KeysFromFileWithLimitsAndModels) {
  const std::string f = write_tmp(
      "auth:\n  protect_metrics: true\n  keys:\n"
      "    - name: alice\n      key: secret-a\n      models: [demo]\n      requests_per_minute: 5\n      burst: 2\n"
      "    - name: bob\n      sha256: " + std::string(64, 'a') + "\n");
  LoadInput in;
  in.file = f;
  Config c = load(in);
  ASSERT_EQ(c.keys.size(), 2u);
  EXPECT_EQ(c.keys[0].models, std::vector<std::string>{"demo"});
  EXPECT_EQ(c.keys[0].limits.requests_per_minute, 5);
  EXPECT_EQ(c.keys[0].limits.burst, 2);
  EXPECT_EQ(c.keys[0].limits.tokens_per_minute, -1);
  EXPECT_TRUE(c.protect_metrics);
}

TEST(Config, PrintedConfigRedactsSecrets) {
  LoadInput in;
  in.env = {{"OPENAI_API_KEY", "sk-very-secret"}, {"API_KEYS", "plain-key-123"},
            {"REDIS_URL", "redis://:hunter2@redis:6379/1"}};
  Config c = load(in);
  const std::string y = to_yaml(c);
  EXPECT_EQ(y.find("sk-very-secret"), std::string::npos) << y;
  EXPECT_EQ(y.find("plain-key-123"), std::string::npos) << y;
  EXPECT_EQ(y.find("hunter2"), std::string::npos) << y;
  EXPECT_NE(y.find("redis://<redacted>@redis:6379/1"), std::string::npos) << y;
  EXPECT_NE(y.find("openai_api_key: \"<redacted>\""), std::string::npos) << y;
  EXPECT_NE(y.find("port: 8080"), std::string::npos);
  // The printed configuration is itself a valid config file (modulo redaction).
  Config c2 = c;
  c2.keys.clear();
  c2.openai_api_key.clear();
  c2.redis_url.clear();
  const std::string f = write_tmp(to_yaml(c2, false));
  EXPECT_TRUE(check_file(f).empty()) << joined(check_file(f)) << to_yaml(c2, false);
}

TEST(Config, SettingsTableListsSeedNames) {
  std::set<std::string> envs;
  for (const auto& s : settings()) envs.insert(s.env);
  for (const char* n : {"HOST", "PORT", "LOG_LEVEL", "DEFAULT_MODEL", "MODEL_PATH", "MAX_CONCURRENT_REQUESTS",
                        "MAX_QUEUE", "REQUEST_TIMEOUT_SECONDS", "BATCH_SIZE", "CACHE_SIZE", "REDIS_URL",
                        "CACHE_TTL_SECONDS", "RATE_LIMIT_REQUESTS_PER_MINUTE", "RATE_LIMIT_BURST", "OLLAMA_URL",
                        "OPENAI_API_KEY", "INSTANCE_ID", "API_KEYS", "API_KEYS_FILE", "LOG_PROMPTS"})
    EXPECT_TRUE(envs.count(n)) << n;
}

TEST(Config, UpstreamBackendsFromEnvironmentKeysRedacted) {
  LoadInput in;
  in.env = {{"UPSTREAMS", "ollama:http://a:11434,openai:https://api.example.com/v1#sk-upstream-secret"},
            {"UPSTREAM_HEALTH_INTERVAL_SECONDS", "2"}};
  Config c = load(in);
  ASSERT_EQ(c.upstreams.size(), 2u);
  EXPECT_EQ(c.upstreams[0], "ollama:http://a:11434");
  EXPECT_EQ(c.upstream_health_interval_seconds, 2);
  EXPECT_EQ(c.upstream_cooldown_seconds, 10);
  const std::string y = to_yaml(c);
  EXPECT_EQ(y.find("sk-upstream-secret"), std::string::npos) << y;
  EXPECT_NE(y.find("openai:https://api.example.com/v1#<redacted>"), std::string::npos) << y;
}
