// The only file that includes yaml-cpp.
#include "config/config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <variant>

#include <unistd.h>
#include <yaml-cpp/yaml.h>

extern char** environ;

namespace lmhost::config {

namespace {

using Member = std::variant<std::string Config::*, int64_t Config::*, bool Config::*, std::vector<std::string> Config::*>;

struct Setting {
  const char* path;
  const char* env;  // nullptr: none
  Member member;
  int64_t lo = 0, hi = 0;      // integers
  const char* choices = nullptr;  // strings: "a|b|c"
  bool secret = false;
  const char* help = "";
};

constexpr int64_t kMaxI = INT64_C(1) << 40;

const std::vector<Setting>& table() {
  static const std::vector<Setting> t = {
      {"server.host", "HOST", &Config::host, 0, 0, nullptr, false, "address to listen on"},
      {"server.port", "PORT", &Config::port, 0, 65535, nullptr, false, "TCP port (0: any free port)"},
      {"server.http_threads", "HTTP_THREADS", &Config::http_threads, 1, 256, nullptr, false, "HTTP I/O threads"},
      {"server.max_connections", "MAX_CONNECTIONS", &Config::max_connections, 1, 1000000, nullptr, false,
       "open connections at most; more are closed at once"},
      {"server.max_body_bytes", "MAX_BODY_BYTES", &Config::max_body_bytes, 1, kMaxI, nullptr, false,
       "largest request body (413 beyond)"},
      {"server.header_timeout_seconds", "HEADER_TIMEOUT_SECONDS", &Config::header_timeout_seconds, 1, 3600, nullptr,
       false, "a request's headers and body must arrive within this (slow clients are dropped)"},
      {"server.idle_timeout_seconds", "IDLE_TIMEOUT_SECONDS", &Config::idle_timeout_seconds, 1, 86400, nullptr, false,
       "idle keep-alive connections are closed after this"},
      {"server.write_timeout_seconds", "WRITE_TIMEOUT_SECONDS", &Config::write_timeout_seconds, 1, 86400, nullptr,
       false, "a client that does not read for this long is dropped"},
      {"server.request_timeout_seconds", "REQUEST_TIMEOUT_SECONDS", &Config::request_timeout_seconds, 0, 86400 * 7,
       nullptr, false, "a generation ends (finish reason timeout) after this; 0: never"},
      {"server.max_concurrent_requests", "MAX_CONCURRENT_REQUESTS", &Config::max_concurrent_requests, 0, 1000000,
       nullptr, false, "API requests in flight at most (503 beyond); 0: no bound"},
      {"server.drain_timeout_seconds", "DRAIN_TIMEOUT_SECONDS", &Config::drain_timeout_seconds, 0, 86400, nullptr,
       false, "on SIGTERM, in-flight requests may finish for this long"},
      {"server.instance_id", "INSTANCE_ID", &Config::instance_id, 0, 0, nullptr, false,
       "this replica's name in /info and logs (default: the host name)"},
      {"models.default", "DEFAULT_MODEL", &Config::default_model, 0, 0, nullptr, false,
       "model used when a request names none"},
      {"models.paths", "MODEL_PATH", &Config::model_paths, 0, 0, nullptr, false,
       "GGUF files to serve, PATH or NAME=PATH (comma-separated in the environment)"},
      {"models.dir", "MODELS_DIR", &Config::models_dir, 0, 0, nullptr, false, "serve every .gguf file in this folder"},
      {"models.parallel", "PARALLEL", &Config::parallel, 1, 256, nullptr, false, "sequences decoded together per model"},
      {"models.ctx", "CTX_SIZE", &Config::ctx, 0, 1 << 20, nullptr, false, "context per sequence (0: the model's, at most 4096)"},
      {"models.threads", "THREADS", &Config::threads, 0, 1024, nullptr, false, "compute threads (0: physical cores)"},
      {"models.max_queue", "MAX_QUEUE", &Config::max_queue, 0, 1000000, nullptr, false,
       "waiting requests per model before 503"},
      {"models.max_input_tokens", "MAX_INPUT_TOKENS", &Config::max_input_tokens, 0, 1 << 24, nullptr, false,
       "longest prompt in tokens (400 beyond); 0: the context"},
      {"models.max_tokens", "MAX_TOKENS", &Config::max_tokens_cap, 0, 1 << 24, nullptr, false,
       "largest max_tokens / num_predict a request may ask (400 beyond); 0: no cap"},
      {"models.keep_alive", "KEEP_ALIVE", &Config::keep_alive, 0, 0, nullptr, false,
       "how long a model loaded on demand stays loaded when idle: 5m, 30s, 1h, 0 (unload at once), -1 (forever); "
       "default OLLAMA_KEEP_ALIVE, else 5m"},
      {"models.max_loaded", "MAX_LOADED_MODELS", &Config::max_loaded_models, 0, 100000, nullptr, false,
       "models loaded at once, the least recently used idle one is unloaded for another; 0: "
       "OLLAMA_MAX_LOADED_MODELS, else no bound"},
      {"models.memory_budget", "MAX_MODEL_MEMORY", &Config::memory_budget, 0, 0, nullptr, false,
       "model file bytes loaded at once (8GiB, 512MiB, 2GB, bytes); idle models are unloaded least recently used "
       "first to make room; empty: no bound"},
      {"models.ollama_store", "OLLAMA_MODELS", &Config::ollama_store, 0, 0, nullptr, false,
       "an Ollama model store served in place (default ~/.ollama/models when it exists; --ollama-models)"},
      {"models.preload", "PRELOAD_MODELS", &Config::preload, 0, 0, nullptr, false,
       "models loaded at start-up (comma-separated, * = all); default: model files yes, Ollama store models on "
       "first use"},
      {"embeddings.batch_size", "BATCH_SIZE", &Config::batch_size, 1, 4096, nullptr, false,
       "embedding inputs computed together"},
      {"embeddings.max_batch_tokens", "MAX_BATCH_TOKENS", &Config::embed_max_batch_tokens, 1, 1 << 24, nullptr, false,
       "tokens of one embedding batch at most"},
      {"embeddings.batch_wait_us", "BATCH_WAIT_US", &Config::embed_batch_wait_us, 0, 10000000, nullptr, false,
       "how long (microseconds) a small embedding batch waits for company"},
      {"embeddings.max_queue", "EMBED_MAX_QUEUE", &Config::embed_max_queue, 1, 10000000, nullptr, false,
       "embedding inputs waiting per model before 503"},
      {"cache.size", "CACHE_SIZE", &Config::cache_size, 0, 100000000, nullptr, false,
       "embedding cache entries in memory (0: off)"},
      {"cache.redis_url", "REDIS_URL", &Config::redis_url, 0, 0, nullptr, true,
       "redis://[:password@]host[:port][/db]: shared embedding cache and global rate limits"},
      {"cache.ttl_seconds", "CACHE_TTL_SECONDS", &Config::cache_ttl_seconds, 1, 86400 * 365, nullptr, false,
       "lifetime of embedding cache entries in Redis"},
      {"rate_limit.requests_per_minute", "RATE_LIMIT_REQUESTS_PER_MINUTE", &Config::rate_limit_rpm, 0, 100000000,
       nullptr, false, "requests per minute per key (per client address without keys); 0: no limit"},
      {"rate_limit.burst", "RATE_LIMIT_BURST", &Config::rate_limit_burst, 0, 100000000, nullptr, false,
       "requests allowed at once on top of the per-minute rate"},
      {"rate_limit.tokens_per_minute", "RATE_LIMIT_TOKENS_PER_MINUTE", &Config::rate_limit_tpm, 0, INT64_C(1) << 40,
       nullptr, false, "prompt + completion tokens per minute per key; 0: no limit"},
      {"rate_limit.redis_url", "RATE_LIMIT_REDIS_URL", &Config::rate_limit_redis_url, 0, 0, nullptr, true,
       "Redis for global limits (default: cache.redis_url)"},
      {"rate_limit.on_redis_error", "RATE_LIMIT_ON_REDIS_ERROR", &Config::rate_limit_on_redis_error, 0, 0,
       "open|local|closed", false,
       "when Redis is down: open (admit), local (per-process limits) or closed (503)"},
      {"auth.keys_file", "API_KEYS_FILE", &Config::keys_file, 0, 0, nullptr, false,
       "file of API key hashes (lmhost keys add NAME)"},
      {"auth.protect_health", "AUTH_PROTECT_HEALTH", &Config::protect_health, 0, 0, nullptr, false,
       "/health, /ready and /info need a key"},
      {"auth.protect_metrics", "AUTH_PROTECT_METRICS", &Config::protect_metrics, 0, 0, nullptr, false,
       "/metrics needs a key"},
      {"auth.admin_key", "ADMIN_KEY", &Config::admin_key, 0, 0, nullptr, true,
       "the key of the admin API (/admin/*: load, unload, swap models, aliases, reload); unset: admin API off"},
      {"auth.admin_key_sha256", "ADMIN_KEY_SHA256", &Config::admin_key_sha256, 0, 0, nullptr, false,
       "the admin key as its SHA-256 (64 hex digits; sha256sum of the key), instead of auth.admin_key"},
      {"logging.level", "LOG_LEVEL", &Config::log_level, 0, 0, "debug|info|warn|error", false, "least severe level logged"},
      {"logging.prompts", "LOG_PROMPTS", &Config::log_prompts, 0, 0, nullptr, false,
       "include prompt text in request log lines"},
      {"logging.requests", "LOG_REQUESTS", &Config::log_requests, 0, 0, nullptr, false, "one log line per request"},
      {"upstream.ollama_url", "OLLAMA_URL", &Config::ollama_url, 0, 0, nullptr, false,
       "Ollama servers (comma-separated base URLs) whose models are served as upstreams"},
      {"upstream.openai_api_key", "OPENAI_API_KEY", &Config::openai_api_key, 0, 0, nullptr, true,
       "bearer key for openai: upstreams given without #KEY (never printed)"},
      {"upstream.backends", "UPSTREAMS", &Config::upstreams, 0, 0, nullptr, false,
       "upstream servers: KIND:URL[?prefix=P&models=NAME+LOCAL=REMOTE][#KEY] with KIND ollama or openai, or in YAML "
       "maps {url, kind, key, prefix, models} (comma-separated in the environment; --upstream)"},
      {"upstream.health_interval_seconds", "UPSTREAM_HEALTH_INTERVAL_SECONDS", &Config::upstream_health_interval_seconds,
       1, 3600, nullptr, false, "how often upstreams' model lists are fetched (the health check)"},
      {"upstream.cooldown_seconds", "UPSTREAM_COOLDOWN_SECONDS", &Config::upstream_cooldown_seconds, 0, 3600, nullptr,
       false, "a failing upstream is skipped this long before it is probed again"},
      {"upstream.failure_threshold", "UPSTREAM_FAILURE_THRESHOLD", &Config::upstream_failure_threshold, 1, 1000,
       nullptr, false, "consecutive failed requests that start an upstream's cool-down"},
      {"upstream.balance", "UPSTREAM_BALANCE", &Config::upstream_balance, 0, 0, "round_robin|least_outstanding", false,
       "how requests are spread over the healthy upstreams of a model"},
  };
  return t;
}

// auth.keys is a list of maps, handled on its own.
constexpr const char* kKeysPath = "auth.keys";
// models.aliases is a map (alias -> {version: weight} or one version), handled on its own.
constexpr const char* kAliasesPath = "models.aliases";
const std::set<std::string> kKeyFields = {"name", "key", "sha256", "models", "requests_per_minute", "burst",
                                          "tokens_per_minute"};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, ',')) {
    cur = trim(cur);
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggestion(const std::string& path) {
  std::string best;
  size_t best_d = 4;
  auto consider = [&](const std::string& cand) {
    const size_t d = edit_distance(path, cand);
    if (d < best_d) best_d = d, best = cand;
  };
  for (const auto& s : table()) consider(s.path);
  consider(kKeysPath);
  consider(kAliasesPath);
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

const Setting* find_setting(const std::string& path) {
  for (const auto& s : table())
    if (path == s.path) return &s;
  return nullptr;
}

std::optional<bool> parse_bool(const std::string& v) {
  const std::string l = lower(trim(v));
  if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "0" || l == "no" || l == "off") return false;
  return std::nullopt;
}

std::optional<int64_t> parse_int(const std::string& v) {
  const std::string t = trim(v);
  if (t.empty()) return std::nullopt;
  size_t i = 0;
  if (t[0] == '-' || t[0] == '+') i = 1;
  if (i >= t.size()) return std::nullopt;
  for (size_t k = i; k < t.size(); ++k)
    if (!std::isdigit(static_cast<unsigned char>(t[k]))) return std::nullopt;
  try {
    return std::stoll(t);
  } catch (...) {
    return std::nullopt;
  }
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') { out += "\\n"; continue; }
    out.push_back(c);
  }
  return out + "\"";
}

// Sets one setting from text (environment, flags, YAML scalars). Returns the
// problem ("" when fine).
std::string set_text(Config& c, const Setting& s, const std::string& value) {
  return std::visit(
      [&](auto m) -> std::string {
        using M = decltype(m);
        if constexpr (std::is_same_v<M, std::string Config::*>) {
          const std::string v = trim(value);
          if (s.choices) {
            const std::string l = lower(v);
            std::string choices = s.choices;
            bool ok = false;
            std::istringstream in(choices);
            std::string one;
            while (std::getline(in, one, '|'))
              if (one == l) ok = true;
            if (!ok) {
              std::string shown = choices;
              std::replace(shown.begin(), shown.end(), '|', ',');
              return "expected one of " + shown + ", got " + quoted(value);
            }
            c.*m = l;
            return "";
          }
          c.*m = v;
          return "";
        } else if constexpr (std::is_same_v<M, int64_t Config::*>) {
          auto n = parse_int(value);
          if (!n || *n < s.lo || *n > s.hi)
            return "expected an integer from " + std::to_string(s.lo) + " to " + std::to_string(s.hi) + ", got " +
                   quoted(value);
          c.*m = *n;
          return "";
        } else if constexpr (std::is_same_v<M, bool Config::*>) {
          auto b = parse_bool(value);
          if (!b) return "expected true or false, got " + quoted(value);
          c.*m = *b;
          return "";
        } else {
          c.*m = split_list(value);
          return "";
        }
      },
      s.member);
}

std::string where_yaml(const std::string& file, const YAML::Node& n) {
  const auto mark = n.Mark();
  return mark.line >= 0 ? file + ":" + std::to_string(mark.line + 1) : file;
}

std::string node_text(const YAML::Node& n) {
  try {
    return n.as<std::string>();
  } catch (...) {
    return "?";
  }
}

void read_key_entry(const std::string& file, const YAML::Node& e, size_t idx, Config& c,
                    std::vector<std::string>& problems) {
  const std::string base = std::string(kKeysPath) + "[" + std::to_string(idx) + "]";
  if (!e.IsMap()) {
    problems.push_back(where_yaml(file, e) + ": " + base +
                       ": expected a map with name, and key or sha256 (optional models, requests_per_minute, burst, "
                       "tokens_per_minute)");
    return;
  }
  ApiKeyConfig k;
  for (const auto& kv : e) {
    const std::string f = node_text(kv.first);
    const std::string path = base + "." + f;
    const YAML::Node& v = kv.second;
    if (!kKeyFields.count(f)) {
      problems.push_back(where_yaml(file, kv.first) + ": " + path +
                         ": unknown key (expected name, key, sha256, models, requests_per_minute, burst, "
                         "tokens_per_minute)");
      continue;
    }
    if (f == "models") {
      if (v.IsSequence()) {
        for (const auto& m : v) {
          if (!m.IsScalar()) problems.push_back(where_yaml(file, m) + ": " + path + ": expected a list of model names");
          else k.models.push_back(m.as<std::string>());
        }
      } else if (v.IsScalar()) {
        k.models = split_list(v.as<std::string>());
      } else {
        problems.push_back(where_yaml(file, v) + ": " + path + ": expected a list of model names");
      }
      continue;
    }
    if (!v.IsScalar()) {
      problems.push_back(where_yaml(file, v) + ": " + path + ": expected a single value");
      continue;
    }
    const std::string text = v.as<std::string>();
    if (f == "name") k.name = trim(text);
    else if (f == "key") k.key = trim(text);
    else if (f == "sha256") k.sha256 = lower(trim(text));
    else {
      auto n = parse_int(text);
      if (!n || *n < 0) {
        problems.push_back(where_yaml(file, v) + ": " + path + ": expected a non-negative integer, got " + quoted(text));
        continue;
      }
      (f == "requests_per_minute" ? k.limits.requests_per_minute : f == "burst" ? k.limits.burst
                                                                                 : k.limits.tokens_per_minute) = *n;
    }
  }
  if (k.name.empty()) problems.push_back(where_yaml(file, e) + ": " + base + ".name: required (a label for logs)");
  if (k.key.empty() == k.sha256.empty())
    problems.push_back(where_yaml(file, e) + ": " + base + ": give exactly one of 'key' (the key) or 'sha256' (its hash)");
  if (!k.sha256.empty() && (k.sha256.size() != 64 || k.sha256.find_first_not_of("0123456789abcdef") != std::string::npos))
    problems.push_back(where_yaml(file, e) + ": " + base + ".sha256: expected 64 hex digits");
  c.keys.push_back(std::move(k));
}

// models.aliases: {chat: {"chat@v1": 90, "chat@v2": 10}, fast: qwen2, c2: "chat@v1:90,chat@v2:10"}
void read_aliases(const std::string& file, const YAML::Node& v, Config& c, std::vector<std::string>& problems) {
  const std::string base = kAliasesPath;
  if (!v.IsMap()) {
    problems.push_back(where_yaml(file, v) + ": " + base +
                       ": expected a map of alias -> {version: weight, ...} (or alias -> one model name)");
    return;
  }
  for (const auto& kv : v) {
    const std::string name = trim(node_text(kv.first));
    const YAML::Node& t = kv.second;
    AliasConfig a;
    a.name = name;
    if (t.IsScalar()) {
      if (auto p = parse_alias(name + "=" + t.as<std::string>(), a); !p.empty())
        problems.push_back(where_yaml(file, t) + ": " + base + "." + name + ": " + p);
      else
        c.aliases.push_back(std::move(a));
      continue;
    }
    if (!t.IsMap()) {
      problems.push_back(where_yaml(file, t) + ": " + base + "." + name +
                         ": expected {version: weight, ...} or one model name");
      continue;
    }
    for (const auto& e : t) {
      const std::string ver = trim(node_text(e.first));
      auto w = e.second.IsScalar() ? parse_int(e.second.as<std::string>()) : std::nullopt;
      if (!w || *w < 0 || *w > 1000000) {
        problems.push_back(where_yaml(file, e.second) + ": " + base + "." + name + "." + ver +
                           ": expected a weight from 0 to 1000000");
        continue;
      }
      a.versions.emplace_back(ver, *w);
    }
    c.aliases.push_back(std::move(a));
  }
}

// One upstream.backends entry written as a map, turned into the compact form
// KIND:URL[?prefix=P&models=NAME+LOCAL=REMOTE][#KEY] that --upstream takes.
std::string upstream_from_yaml(const std::string& file, const YAML::Node& e, const std::string& path,
                               std::vector<std::string>& problems) {
  std::string url, kind = "ollama", key, prefix;
  std::vector<std::string> models;
  auto bad_chars = [](const std::string& s) { return s.find_first_of("+&#?,") != std::string::npos; };
  for (const auto& kv : e) {
    const std::string f = node_text(kv.first);
    const YAML::Node& v = kv.second;
    const std::string where = where_yaml(file, v) + ": " + path + "." + f;
    if (f == "models") {
      if (v.IsMap()) {
        for (const auto& m : v) models.push_back(node_text(m.first) + "=" + node_text(m.second));
      } else if (v.IsSequence()) {
        for (const auto& m : v) {
          if (m.IsScalar()) models.push_back(m.as<std::string>());
          else problems.push_back(where + ": expected model names (NAME or LOCAL=REMOTE)");
        }
      } else if (!v.IsNull()) {
        problems.push_back(where + ": expected a map {local name: upstream name} or a list of names");
      }
      for (const auto& m : models)
        if (bad_chars(m)) problems.push_back(where + ": the name '" + m + "' holds one of + & # ? ,");
      continue;
    }
    if (!v.IsScalar()) {
      problems.push_back(where + ": expected a single value");
      continue;
    }
    const std::string text = trim(v.as<std::string>());
    if (f == "url") url = text;
    else if (f == "kind") kind = lower(text);
    else if (f == "key") key = text;
    else if (f == "prefix") prefix = text;
    else problems.push_back(where_yaml(file, kv.first) + ": " + path + "." + f +
                            ": unknown key (expected url, kind, key, prefix, models)");
  }
  if (url.empty()) problems.push_back(where_yaml(file, e) + ": " + path + ": an upstream needs a url");
  if (kind != "ollama" && kind != "openai")
    problems.push_back(where_yaml(file, e) + ": " + path + ".kind: expected ollama or openai, got " + quoted(kind));
  if (bad_chars(prefix)) problems.push_back(where_yaml(file, e) + ": " + path + ".prefix: holds one of + & # ? ,");
  std::string out = kind + ":" + url, query;
  if (!prefix.empty()) query += "prefix=" + prefix;
  if (!models.empty()) {
    query += std::string(query.empty() ? "" : "&") + "models=";
    for (size_t i = 0; i < models.size(); ++i) query += (i ? "+" : "") + models[i];
  }
  if (!query.empty()) out += "?" + query;
  if (!key.empty()) out += "#" + key;
  return out;
}

void walk(const std::string& file, const YAML::Node& node, const std::string& prefix, Config& c,
          std::vector<std::string>& problems) {
  for (const auto& kv : node) {
    const std::string name = node_text(kv.first);
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& v = kv.second;
    if (path == kKeysPath) {
      if (v.IsNull()) continue;
      if (!v.IsSequence()) {
        problems.push_back(where_yaml(file, v) + ": " + path + ": expected a list of keys");
        continue;
      }
      size_t i = 0;
      for (const auto& e : v) read_key_entry(file, e, i++, c, problems);
      continue;
    }
    if (path == kAliasesPath) {
      if (v.IsNull()) continue;
      read_aliases(file, v, c, problems);
      continue;
    }
    if (const Setting* s = find_setting(path)) {
      if (v.IsNull()) continue;  // "key:" with no value keeps the default
      if (std::holds_alternative<std::vector<std::string> Config::*>(s->member) && v.IsSequence()) {
        std::vector<std::string> items;
        for (const auto& e : v) {
          if (path == "upstream.backends" && e.IsMap()) {  // {url, kind, key, prefix, models}: the compact form
            items.push_back(upstream_from_yaml(file, e, path, problems));
            continue;
          }
          if (!e.IsScalar()) problems.push_back(where_yaml(file, e) + ": " + path + ": expected a list of strings");
          else items.push_back(e.as<std::string>());
        }
        c.*std::get<std::vector<std::string> Config::*>(s->member) = std::move(items);
        continue;
      }
      if (!v.IsScalar()) {
        problems.push_back(where_yaml(file, v) + ": " + path + ": expected a single value, got a " +
                           (v.IsMap() ? "map" : "list"));
        continue;
      }
      if (auto p = set_text(c, *s, v.as<std::string>()); !p.empty())
        problems.push_back(where_yaml(file, v) + ": " + path + ": " + p);
      continue;
    }
    // A section?
    bool is_section = false;
    for (const auto& s : table())
      if (std::string_view(s.path).rfind(path + ".", 0) == 0) is_section = true;
    if (std::string_view(kKeysPath).rfind(path + ".", 0) == 0) is_section = true;
    if (is_section) {
      if (v.IsNull()) continue;
      if (!v.IsMap()) {
        problems.push_back(where_yaml(file, v) + ": " + path + ": expected a map (a section)");
        continue;
      }
      walk(file, v, path, c, problems);
      continue;
    }
    problems.push_back(where_yaml(file, kv.first) + ": " + path + ": unknown key" + suggestion(path));
  }
}

void read_file_into(const std::string& file, Config& c, std::vector<std::string>& problems) {
  YAML::Node root;
  try {
    std::ifstream in(file);
    if (!in) {
      problems.push_back(file + ": cannot open the configuration file");
      return;
    }
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    problems.push_back(file + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
    return;
  }
  if (root.IsNull()) return;  // empty file
  if (!root.IsMap()) {
    problems.push_back(file + ": expected a map of sections (server:, models:, ...) at the top");
    return;
  }
  walk(file, root, "", c, problems);
}

// "5m", "30s", "1h30m", "500ms", "0", "-1", "3600" (seconds): as engine's parse_keep_alive reads them.
bool valid_duration(const std::string& text) {
  std::string t = trim(text);
  if (!t.empty() && (t[0] == '-' || t[0] == '+')) t.erase(0, 1);
  if (t.empty()) return false;
  size_t i = 0;
  bool bare = false;
  int parts = 0;
  while (i < t.size()) {
    const size_t d = i;
    while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
    if (i == d) return false;
    const size_t u = i;
    while (i < t.size() && std::isalpha(static_cast<unsigned char>(t[i]))) ++i;
    const std::string unit = t.substr(u, i - u);
    if (unit.empty()) bare = true;
    else if (unit != "h" && unit != "m" && unit != "s" && unit != "ms" && unit != "us" && unit != "ns") return false;
    ++parts;
  }
  return !bare || parts == 1;
}

bool valid_size(const std::string& text) {
  const std::string t = lower(trim(text));
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  if (i == 0) return false;
  const std::string unit = trim(t.substr(i));
  for (const char* u : {"", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib", "t", "tb", "tib"})
    if (unit == u) return true;
  return false;
}

void validate(const Config& c, std::vector<std::string>& problems) {
  std::set<std::string> names;
  for (const auto& k : c.keys)
    if (!k.name.empty() && !names.insert(k.name).second)
      problems.push_back("auth.keys: the name '" + k.name + "' is used twice (names label logs and metrics)");
  if (c.host.empty()) problems.push_back("server.host: must not be empty");
  for (const char* url : {"cache.redis_url", "rate_limit.redis_url"}) {
    const std::string& v = std::string_view(url) == "cache.redis_url" ? c.redis_url : c.rate_limit_redis_url;
    if (!v.empty() && v.rfind("redis://", 0) != 0)
      problems.push_back(std::string(url) + ": expected redis://[:password@]host[:port][/db], got " +
                         (v.find('@') != std::string::npos ? std::string("a URL with credentials") : quoted(v)));
  }
  std::set<std::string> alias_names;
  for (const auto& a : c.aliases) {
    if (a.name.empty()) problems.push_back(std::string(kAliasesPath) + ": an alias needs a name");
    else if (!alias_names.insert(a.name).second)
      problems.push_back(std::string(kAliasesPath) + ": the alias '" + a.name + "' is defined twice");
    int64_t total = 0;
    for (const auto& [v, w] : a.versions) total += w;
    if (a.versions.empty() || total <= 0)
      problems.push_back(std::string(kAliasesPath) + "." + a.name + ": needs at least one version with a weight above 0");
  }
  if (!c.keep_alive.empty() && !valid_duration(c.keep_alive))
    problems.push_back("models.keep_alive: expected a duration such as 5m, 30s, 1h30m, 0 or -1, got " +
                       quoted(c.keep_alive));
  if (!c.memory_budget.empty() && !valid_size(c.memory_budget))
    problems.push_back("models.memory_budget: expected a size such as 8GiB, 512MiB, 2GB or a number of bytes, got " +
                       quoted(c.memory_budget));
  if (!c.admin_key_sha256.empty() &&
      (c.admin_key_sha256.size() != 64 || lower(c.admin_key_sha256).find_first_not_of("0123456789abcdef") != std::string::npos))
    problems.push_back("auth.admin_key_sha256: expected 64 hex digits (sha256sum of the admin key)");
  if (c.rate_limit_burst > 0 && c.rate_limit_rpm == 0)
    problems.push_back("rate_limit.burst: set without rate_limit.requests_per_minute (the burst is on top of that rate)");
}

}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : Error(
          [&] {
            std::string s = "invalid configuration:";
            for (const auto& p : problems) s += "\n  " + p;
            return s;
          }(),
          400),
      problems_(std::move(problems)) {}

Config load(const LoadInput& in) {
  Config c;
  std::vector<std::string> problems;
  std::string file = in.file;
  if (file.empty()) {
    auto it = in.env.find("LMHOST_CONFIG");
    if (it != in.env.end()) file = it->second;
  }
  if (!file.empty()) read_file_into(file, c, problems);
  for (const auto& s : table()) {
    if (!s.env) continue;
    auto it = in.env.find(s.env);
    if (it == in.env.end() || it->second.empty()) continue;
    if (auto p = set_text(c, s, it->second); !p.empty())
      problems.push_back(std::string("environment ") + s.env + " (" + s.path + "): " + p);
  }
  if (auto it = in.env.find("MODEL_ALIASES"); it != in.env.end() && !it->second.empty()) {
    std::istringstream list(it->second);  // NAME=V1:W1,V2:W2;NAME2=...
    for (std::string one; std::getline(list, one, ';');) {
      if (trim(one).empty()) continue;
      AliasConfig a;
      if (auto p = parse_alias(one, a); !p.empty()) problems.push_back("environment MODEL_ALIASES (models.aliases): " + p);
      else c.aliases.push_back(std::move(a));
    }
  }
  if (auto it = in.env.find("API_KEYS"); it != in.env.end() && !it->second.empty()) {
    int i = 0;
    for (auto& key : split_list(it->second)) {
      ApiKeyConfig k;
      k.name = "API_KEYS[" + std::to_string(i++) + "]";
      k.key = key;
      c.keys.push_back(std::move(k));
    }
  }
  for (const auto& [path, value] : in.overrides) {
    if (path == "auth.api_keys") {  // --api-key (repeatable)
      ApiKeyConfig k;
      k.name = "cli-" + std::to_string(c.keys.size());
      k.key = value;
      c.keys.push_back(std::move(k));
      continue;
    }
    if (path == kAliasesPath) {  // --alias NAME=VERSION:WEIGHT,... (repeatable; replaces an alias of that name)
      AliasConfig a;
      if (auto p = parse_alias(value, a); !p.empty()) {
        problems.push_back("command line " + path + ": " + p);
        continue;
      }
      std::erase_if(c.aliases, [&](const AliasConfig& x) { return x.name == a.name; });
      c.aliases.push_back(std::move(a));
      continue;
    }
    const Setting* s = find_setting(path);
    if (!s) {
      problems.push_back("command line: " + path + ": unknown key" + suggestion(path));
      continue;
    }
    if (auto p = set_text(c, *s, value); !p.empty()) problems.push_back("command line " + path + ": " + p);
  }
  validate(c, problems);
  if (!problems.empty()) throw ConfigError(std::move(problems));
  return c;
}

std::vector<std::string> check_file(const std::string& path) {
  Config c;
  std::vector<std::string> problems;
  read_file_into(path, c, problems);
  if (problems.empty()) validate(c, problems);
  return problems;
}

std::map<std::string, std::string> environment() {
  std::set<std::string> wanted = {"LMHOST_CONFIG", "API_KEYS", "MODEL_ALIASES"};
  for (const auto& s : table())
    if (s.env) wanted.insert(s.env);
  std::map<std::string, std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    std::string k(kv.substr(0, eq));
    if (wanted.count(k)) out[k] = std::string(kv.substr(eq + 1));
  }
  return out;
}

std::string to_yaml(const Config& c, bool redact) {
  std::ostringstream out;
  std::string section;
  auto secret = [&](const std::string& v) {
    if (!redact || v.empty()) return v;
    if (v.rfind("redis://", 0) == 0) {  // keep the address, hide credentials
      const size_t at = v.find('@');
      return at == std::string::npos ? v : "redis://<redacted>" + v.substr(at);
    }
    return std::string("<redacted>");
  };
  for (const auto& s : table()) {
    const std::string path = s.path;
    const size_t dot = path.find('.');
    const std::string sec = path.substr(0, dot), name = path.substr(dot + 1);
    if (sec != section) {
      out << sec << ":\n";
      section = sec;
    }
    out << "  " << name << ": ";
    std::visit(
        [&](auto m) {
          using M = decltype(m);
          if constexpr (std::is_same_v<M, std::string Config::*>) {
            out << quoted(s.secret ? secret(c.*m) : c.*m);
          } else if constexpr (std::is_same_v<M, int64_t Config::*>) {
            out << c.*m;
          } else if constexpr (std::is_same_v<M, bool Config::*>) {
            out << (c.*m ? "true" : "false");
          } else {
            out << "[";
            for (size_t i = 0; i < (c.*m).size(); ++i) {
              std::string v = (c.*m)[i];
              // upstream.backends: openai:URL#KEY keeps the URL, hides the key
              if (redact && path == "upstream.backends" && v.find('#') != std::string::npos)
                v = v.substr(0, v.find('#')) + "#<redacted>";
              out << (i ? ", " : "") << quoted(v);
            }
            out << "]";
          }
        },
        s.member);
    out << "\n";
    if (path == "models.preload") {
      out << "  aliases: {";
      for (size_t i = 0; i < c.aliases.size(); ++i) {
        out << (i ? ", " : "") << quoted(c.aliases[i].name) << ": {";
        for (size_t j = 0; j < c.aliases[i].versions.size(); ++j)
          out << (j ? ", " : "") << quoted(c.aliases[i].versions[j].first) << ": " << c.aliases[i].versions[j].second;
        out << "}";
      }
      out << "}\n";
    }
    if (path == "auth.keys_file") {
      out << "  keys:" << (c.keys.empty() ? " []" : "") << "\n";
      for (const auto& k : c.keys) {
        out << "    - name: " << quoted(k.name) << "\n";
        if (!k.key.empty()) out << "      key: " << quoted(redact ? "<redacted>" : k.key) << "\n";
        if (!k.sha256.empty()) out << "      sha256: " << quoted(k.sha256) << "\n";
        if (!k.models.empty()) {
          out << "      models: [";
          for (size_t i = 0; i < k.models.size(); ++i) out << (i ? ", " : "") << quoted(k.models[i]);
          out << "]\n";
        }
        if (k.limits.requests_per_minute >= 0) out << "      requests_per_minute: " << k.limits.requests_per_minute << "\n";
        if (k.limits.burst >= 0) out << "      burst: " << k.limits.burst << "\n";
        if (k.limits.tokens_per_minute >= 0) out << "      tokens_per_minute: " << k.limits.tokens_per_minute << "\n";
      }
    }
  }
  return out.str();
}

std::vector<SettingInfo> settings() {
  std::vector<SettingInfo> out;
  for (const auto& s : table()) out.push_back({s.path, s.env ? s.env : "", s.help, s.secret});
  out.push_back({kKeysPath, "API_KEYS", "API keys: [{name, key | sha256, models, requests_per_minute, burst, tokens_per_minute}]", true});
  out.push_back({kAliasesPath, "MODEL_ALIASES",
                 "served names pointing at weighted versions: {chat: {chat@v1: 90, chat@v2: 10}}; environment "
                 "NAME=VERSION:WEIGHT,...;NAME2=... (--alias, repeatable)"});
  return out;
}

std::string parse_alias(const std::string& text, AliasConfig& out) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || trim(text.substr(0, eq)).empty())
    return "expected NAME=VERSION[:WEIGHT],VERSION[:WEIGHT]... (e.g. chat=chat@v1:90,chat@v2:10), got " + quoted(text);
  out.name = trim(text.substr(0, eq));
  out.versions.clear();
  for (const auto& item : split_list(text.substr(eq + 1))) {
    std::string ver = item;
    int64_t w = 1;
    // VERSION:WEIGHT when what follows the last ':' is a number (Ollama tags like qwen2.5:0.5b stay names)
    if (const size_t c = item.rfind(':'); c != std::string::npos && c + 1 < item.size()) {
      if (auto n = parse_int(item.substr(c + 1))) {
        if (*n < 0 || *n > 1000000) return "the weight of '" + item.substr(0, c) + "' must be from 0 to 1000000";
        ver = trim(item.substr(0, c));
        w = *n;
      }
    }
    if (ver.empty()) return "an empty version name in " + quoted(text);
    out.versions.emplace_back(ver, w);
  }
  if (out.versions.empty()) return "the alias '" + out.name + "' lists no version";
  return "";
}

}  // namespace lmhost::config
