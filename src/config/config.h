// One validated configuration for `lmhost serve`, merged in rising precedence
// from built-in defaults, a YAML file (--config FILE or LMHOST_CONFIG), the
// environment (HOST, PORT, LOG_LEVEL, ... as the users' deployment files
// write them) and command-line flags. Every problem is reported with where it
// came from and the key path, and unknown keys are errors. yaml-cpp stays
// inside config.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "util/error.h"

namespace lmhost::config {

// Per-key limits; -1 = inherit the server-wide value.
struct KeyLimits {
  int64_t requests_per_minute = -1;
  int64_t burst = -1;
  int64_t tokens_per_minute = -1;
};

// An API key from the config file (auth.keys) or API_KEYS. Exactly one of
// key (plain text) and sha256 (hex digest) is set.
struct ApiKeyConfig {
  std::string name;
  std::string key;     // secret (redacted when printed)
  std::string sha256;  // lower-case hex
  std::vector<std::string> models;  // empty: every model
  KeyLimits limits;
};

// A served name pointing at weighted model versions (models.aliases,
// MODEL_ALIASES, --alias NAME=VERSION:WEIGHT,...): canary releases.
struct AliasConfig {
  std::string name;
  std::vector<std::pair<std::string, int64_t>> versions;  // (model name, weight)
};

struct Config {
  // server.*
  std::string host = "127.0.0.1";
  int64_t port = 8080;
  int64_t http_threads = 4;
  int64_t max_connections = 1024;
  int64_t max_body_bytes = 8 << 20;
  int64_t header_timeout_seconds = 10;
  int64_t idle_timeout_seconds = 60;
  int64_t write_timeout_seconds = 60;
  int64_t request_timeout_seconds = 600;
  int64_t max_concurrent_requests = 256;  // 0: no bound
  int64_t drain_timeout_seconds = 30;
  std::string instance_id;  // default: host name
  // models.*
  std::string default_model;
  std::vector<std::string> model_paths;  // MODEL_PATH (comma-separated), --model
  std::string models_dir;
  int64_t parallel = 4;
  int64_t ctx = 0;
  int64_t threads = 0;
  int64_t max_queue = 64;
  int64_t max_input_tokens = 0;  // 0: the model's context
  int64_t max_tokens_cap = 0;    // 0: no cap beyond the context
  // embeddings.*
  int64_t batch_size = 32;
  // cache.*
  int64_t cache_size = 1000;
  std::string redis_url;
  int64_t cache_ttl_seconds = 3600;
  // rate_limit.*
  int64_t rate_limit_rpm = 0;  // 0: no request limit
  int64_t rate_limit_burst = 0;
  int64_t rate_limit_tpm = 0;  // 0: no token limit
  std::string rate_limit_redis_url;  // default: redis_url
  std::string rate_limit_on_redis_error = "open";  // open | local | closed
  // auth.*
  std::vector<ApiKeyConfig> keys;
  std::string keys_file;
  bool protect_health = false;
  bool protect_metrics = false;
  // logging.*
  std::string log_level = "info";
  bool log_prompts = false;
  bool log_requests = true;
  // upstream.*: other servers whose models lmhost serves (gateway/upstream.h)
  std::string ollama_url;       // OLLAMA_URL: comma-separated Ollama base URLs
  std::string openai_api_key;   // OPENAI_API_KEY: key for openai: upstreams given without #KEY
  std::vector<std::string> upstreams;  // --upstream ollama:URL | openai:URL[#KEY]
  int64_t upstream_health_interval_seconds = 15;
  int64_t upstream_cooldown_seconds = 10;
  int64_t upstream_failure_threshold = 3;
  std::string upstream_balance = "round_robin";  // round_robin | least_outstanding
  // Model lifecycle (engine/model_pool.h), aliases and the admin API.
  std::string keep_alive;            // models.keep_alive (KEEP_ALIVE; "" = OLLAMA_KEEP_ALIVE, else 5m)
  int64_t max_loaded_models = 0;     // models.max_loaded (MAX_LOADED_MODELS; 0 = OLLAMA_MAX_LOADED_MODELS, else no bound)
  std::string memory_budget;         // models.memory_budget (MAX_MODEL_MEMORY: "8GiB"; "" = no bound)
  std::string ollama_store;          // models.ollama_store (OLLAMA_MODELS)
  std::vector<std::string> preload;  // models.preload (PRELOAD_MODELS; "*" = all)
  std::vector<AliasConfig> aliases;  // models.aliases (MODEL_ALIASES, --alias)
  int64_t embed_max_batch_tokens = 8192;  // embeddings.max_batch_tokens (MAX_BATCH_TOKENS)
  int64_t embed_batch_wait_us = 2000;     // embeddings.batch_wait_us (BATCH_WAIT_US)
  int64_t embed_max_queue = 1024;         // embeddings.max_queue (EMBED_MAX_QUEUE)
  std::string admin_key;             // auth.admin_key (ADMIN_KEY): enables /admin/*
  std::string admin_key_sha256;      // auth.admin_key_sha256 (ADMIN_KEY_SHA256): the same as its hash

  // The Redis used for rate limits (rate_limit.redis_url, else cache.redis_url).
  const std::string& limits_redis_url() const { return rate_limit_redis_url.empty() ? redis_url : rate_limit_redis_url; }
};

// All problems found, one per line in what().
class ConfigError : public Error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

struct LoadInput {
  std::string file;  // YAML file ("" = none; LMHOST_CONFIG in env is used when empty)
  std::map<std::string, std::string> env;  // environment (see environment())
  // From command-line flags, highest precedence: (key path, value as text),
  // e.g. {"server.port", "9000"}. Lists are comma-separated.
  std::vector<std::pair<std::string, std::string>> overrides;
};

// Builds the configuration; throws ConfigError listing every problem.
Config load(const LoadInput& in);

// Problems in a YAML file on its own (unknown keys, wrong types, ranges).
// Empty when the file is valid.
std::vector<std::string> check_file(const std::string& path);

// The process environment (only the names the configuration reads).
std::map<std::string, std::string> environment();

// The effective configuration as YAML, secrets replaced by "<redacted>".
std::string to_yaml(const Config& c, bool redact = true);

// One documented setting (key path, environment name, help).
struct SettingInfo {
  std::string path;
  std::string env;  // "" when it has none
  std::string help;
  bool secret = false;
};
std::vector<SettingInfo> settings();

// "chat=chat@v1:90,chat@v2:10" (a version without :WEIGHT weighs 1) -> alias;
// "" on success, else the problem.
std::string parse_alias(const std::string& text, AliasConfig& out);

}  // namespace lmhost::config
