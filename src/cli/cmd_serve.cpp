// lmhost serve [--config FILE] [--host H] [--port P] [--model [NAME=]PATH]... [--models-dir DIR]
//              [--parallel N] [--ctx N] [-t THREADS] [--max-queue N] [--timeout S]
//              [--set KEY=VALUE]... [--api-key KEY]... [--print-config]
// The HTTP server (OpenAI, Ollama and native APIs). The listener is up before
// the models finish loading. With no model it serves a synthesized demo model.
// Configuration: defaults < YAML file (--config / LMHOST_CONFIG) < environment
// < flags (config/config.h); a bad configuration exits with code 2.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "api/admin.h"
#include "api/api.h"
#include "api/production.h"
#include "config/config.h"
#include "observe/log.h"
#include "cli/command.h"
#include "engine/model_pool.h"
#include "engine/ollama_store.h"
#include "model/synth.h"
#include "server/http.h"
#include "util/error.h"
#include "web/web.h"

namespace lmhost::cli {
namespace {

namespace fs = std::filesystem;

// Flags left at -1 / empty do not override the file or the environment.
struct ServeOptions {
  std::string host;
  int port = -1;
  std::vector<std::string> models;
  std::string models_dir;
  int parallel = -1;
  int ctx = -1;
  int threads = -1;
  int max_queue = -1;
  int timeout = -1;
  int http_threads = -1;
  int64_t body_limit = -1;
  bool quiet = false;
  std::string config_file;
  std::vector<std::string> sets;      // KEY=VALUE
  std::vector<std::string> api_keys;  // --api-key
  bool print_config = false;
  std::string ollama_models;  // --ollama-models (env OLLAMA_MODELS, default ~/.ollama/models when it exists)
  std::string keep_alive;     // --keep-alive (env KEEP_ALIVE / OLLAMA_KEEP_ALIVE)
  int max_loaded = -1;        // --max-loaded-models (env MAX_LOADED_MODELS / OLLAMA_MAX_LOADED_MODELS)
  std::vector<std::string> preload;  // --preload NAME (env PRELOAD_MODELS, comma-separated; "*" = all)
  std::vector<std::string> upstreams;  // --upstream ollama:URL | openai:URL[#KEY]
  std::vector<std::string> aliases;    // --alias NAME=VERSION:WEIGHT,... (env MODEL_ALIASES)
};

config::Config build_config(const ServeOptions& o) {
  config::LoadInput in;
  in.file = o.config_file;
  in.env = config::environment();
  auto& ov = in.overrides;
  auto num = [&](const char* key, int64_t v) {
    if (v >= 0) ov.emplace_back(key, std::to_string(v));
  };
  if (!o.host.empty()) ov.emplace_back("server.host", o.host);
  num("server.port", o.port);
  if (!o.models.empty()) {
    std::string joined;
    for (const auto& m : o.models) joined += (joined.empty() ? "" : ",") + m;
    ov.emplace_back("models.paths", joined);
  }
  if (!o.models_dir.empty()) ov.emplace_back("models.dir", o.models_dir);
  num("models.parallel", o.parallel);
  num("models.ctx", o.ctx);
  num("models.threads", o.threads);
  num("models.max_queue", o.max_queue);
  num("server.request_timeout_seconds", o.timeout);
  num("server.http_threads", o.http_threads);
  num("server.max_body_bytes", o.body_limit);
  if (o.quiet) ov.emplace_back("logging.requests", "false");
  for (const auto& kv : o.sets) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw config::ConfigError({"--set " + kv + ": expected KEY=VALUE, e.g. server.port=9000"});
    ov.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const auto& k : o.api_keys) ov.emplace_back("auth.api_keys", k);
  if (!o.keep_alive.empty()) ov.emplace_back("models.keep_alive", o.keep_alive);
  num("models.max_loaded", o.max_loaded);
  if (!o.ollama_models.empty()) ov.emplace_back("models.ollama_store", o.ollama_models);
  if (!o.preload.empty()) {
    std::string joined;
    for (const auto& p : o.preload) joined += (joined.empty() ? "" : ",") + p;
    ov.emplace_back("models.preload", joined);
  }
  for (const auto& a : o.aliases) ov.emplace_back("models.aliases", a);
  if (!o.upstreams.empty()) {
    std::string joined;
    for (const auto& u : o.upstreams) joined += (joined.empty() ? "" : ",") + u;
    ov.emplace_back("upstream.backends", joined);
  }
  return config::load(in);
}

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  try {
    return std::stoi(v);
  } catch (...) {
    throw Error(std::string("environment variable ") + name + "='" + v + "' is not a number");
  }
}

// Where the demo model lives: $XDG_CACHE_HOME/lmhost, ~/.cache/lmhost, else /tmp.
std::string demo_path() {
  std::string dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::string(x) + "/lmhost";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::string(h) + "/.cache/lmhost";
  std::error_code ec;
  if (dir.empty() || (fs::create_directories(dir, ec), ec) || access(dir.c_str(), W_OK) != 0) dir = "/tmp/lmhost";
  fs::create_directories(dir, ec);
  return dir + "/demo-v1.gguf";
}

// The demo embedding model (a tiny synthesized bert) next to the demo model.
void ensure_demo_embed(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec) && fs::file_size(path, ec) > 0) return;
  auto spec = model::synth_shape("demo-embed");
  if (!spec) throw Error("the built-in demo-embed shape is missing");
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  model::synth_model(*spec, tmp, 1);
  fs::rename(tmp, path, ec);
  if (ec) throw Error("cannot write the demo embedding model to " + path + ": " + ec.message());
}

void ensure_demo(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec) && fs::file_size(path, ec) > 0) return;
  auto spec = model::synth_shape("demo");
  if (!spec) throw Error("the built-in demo shape is missing");
  spec->type = "Q8_0";
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  observe::log_info("synthesizing the demo model", {{"path", path}});
  model::synth_model(*spec, tmp, 1);
  fs::rename(tmp, path, ec);
  if (ec) throw Error("cannot write the demo model to " + path + ": " + ec.message());
}

std::string env_str(const char* a, const char* b = nullptr) {
  for (const char* n : {a, b})
    if (n)
      if (const char* v = std::getenv(n); v && *v) return v;
  return "";
}

// "PATH@sha256:HEX" (a checksum to verify before first use): splits off the checksum.
std::string split_checksum(std::string& path) {
  const size_t at = path.rfind("@sha256:");
  if (at == std::string::npos || path.size() - at != 8 + 64) return "";
  std::string hex = path.substr(at + 8);
  for (auto& c : hex) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!std::isxdigit(static_cast<unsigned char>(c))) return "";
  }
  path.resize(at);
  return hex;
}

// Upstream backends from --upstream / upstream.backends and OLLAMA_URL (comma-separated);
// openai: upstreams without #KEY use OPENAI_API_KEY. Null when there are none.
std::shared_ptr<gateway::Upstreams> make_upstreams(const config::Config& cfg) {
  std::vector<gateway::UpstreamSpec> specs;
  for (const auto& s : cfg.upstreams) specs.push_back(gateway::parse_upstream(s));
  for (size_t i = 0; i <= cfg.ollama_url.size();) {
    size_t j = cfg.ollama_url.find(',', i);
    if (j == std::string::npos) j = cfg.ollama_url.size();
    std::string u = cfg.ollama_url.substr(i, j - i);
    while (!u.empty() && u.front() == ' ') u.erase(u.begin());
    while (!u.empty() && u.back() == ' ') u.pop_back();
    if (!u.empty()) specs.push_back(gateway::parse_upstream("ollama:" + u));
    i = j + 1;
  }
  if (specs.empty()) return nullptr;
  for (auto& s : specs)
    if (s.kind == gateway::UpstreamKind::OpenAI && s.key.empty()) s.key = cfg.openai_api_key;
  gateway::UpstreamOptions uo;
  uo.health_interval = std::chrono::seconds(cfg.upstream_health_interval_seconds);
  uo.cooldown = std::chrono::seconds(cfg.upstream_cooldown_seconds);
  uo.failure_threshold = static_cast<int>(cfg.upstream_failure_threshold);
  uo.balance = gateway::parse_balance(cfg.upstream_balance);
  auto ups = std::make_shared<gateway::Upstreams>(std::move(specs), uo);
  ups->start();
  for (const auto& u : ups->all())
    observe::log_info("upstream", {{"backend", u->name()}, {"up", u->up()},
                                   {"models", static_cast<int64_t>(u->models().size())}});
  return ups;
}

// The models a configuration names: files (models.paths, models.dir), an
// Ollama store, else the two demo models. Used at start-up and by reloads.
struct ModelList {
  std::vector<ModelConfig> models;
  bool demo = false;
  size_t n_store = 0;
  std::string store;
};

ModelList model_list(const config::Config& cfg) {
  ModelList out;
  const std::vector<std::string>& preload = cfg.preload;
  // Preloaded at start-up: the listed names ("*": all), else files yes and Ollama-store models no.
  auto preloaded = [&](const std::string& name, bool by_default) {
    if (preload.empty()) return by_default;
    for (const auto& p : preload)
      if (p == "*" || p == name || p + ":latest" == name || p == name + ":latest") return true;
    return false;
  };
  std::vector<std::string> specs = cfg.model_paths;
  if (!cfg.models_dir.empty()) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cfg.models_dir, ec))
      if (e.path().extension() == ".gguf") specs.push_back(e.path().string());
    if (ec) throw Error("cannot read --models-dir " + cfg.models_dir + ": " + ec.message());
  }
  if (!cfg.default_model.empty()) {  // the pool's first model answers requests that name none
    std::stable_partition(specs.begin(), specs.end(), [&](const std::string& s) {
      const size_t eq = s.find('=');
      const std::string name = eq != std::string::npos && eq > 0 && !fs::exists(s) ? s.substr(0, eq)
                                                                                   : fs::path(s).stem().string();
      return name == cfg.default_model;
    });
  }
  auto has = [&](const std::string& name) {
    for (const auto& m : out.models)
      if (m.name == name) return true;
    return false;
  };
  for (const auto& s : specs) {
    ModelConfig c;
    const size_t eq = s.find('=');
    if (eq != std::string::npos && eq > 0 && !fs::exists(s)) {
      c.name = s.substr(0, eq);
      c.path = s.substr(eq + 1);
    } else {
      c.path = s;
    }
    c.sha256 = split_checksum(c.path);
    if (c.name.empty()) c.name = fs::path(c.path).stem().string();
    if (!fs::exists(c.path)) throw Error("model file not found: " + c.path);
    if (has(c.name)) throw Error("two models are named '" + c.name + "' (use --model NAME=PATH)");
    c.source = "file";
    c.preload = preloaded(c.name, true);
    out.models.push_back(std::move(c));
  }
  // An Ollama model store: GGUF blobs served in place under their Ollama names.
  out.store = !cfg.ollama_store.empty() ? cfg.ollama_store : default_ollama_store();
  if (!out.store.empty()) {
    for (auto& sm : scan_ollama_store(out.store)) {
      if (has(sm.name)) continue;  // --model NAME wins
      ModelConfig c;
      c.name = sm.name;
      c.path = sm.path;
      c.sha256 = sm.sha256;
      c.source = "ollama";
      c.preload = preloaded(c.name, false);
      out.models.push_back(std::move(c));
      ++out.n_store;
    }
  }
  out.demo = specs.empty() && out.n_store == 0;
  if (out.demo) {
    ModelConfig c;
    c.name = "demo";
    c.path = demo_path();
    c.demo = true;
    c.prepare = ensure_demo;
    out.models.push_back(std::move(c));
    ModelConfig e;
    e.name = "demo-embed";
    e.path = fs::path(demo_path()).parent_path().string() + "/demo-embed-v1.gguf";
    e.demo = true;
    e.prepare = ensure_demo_embed;
    out.models.push_back(std::move(e));
  }
  return out;
}

ModelAlias to_alias(const config::AliasConfig& a) {
  ModelAlias x;
  x.name = a.name;
  for (const auto& [v, w] : a.versions) x.versions.emplace_back(v, static_cast<int>(w));
  return x;
}

// SIGHUP (and POST /admin/reload): re-reads the configuration and applies its
// model list and aliases to the running pool. New models are added (and
// loaded when preloaded), removed ones leave once idle, a changed file is
// hot-swapped. A bad configuration throws and changes nothing.
std::string reload_models(const ServeOptions& o, ModelPool& pool) {
  static std::mutex mu;  // one reload at a time
  std::lock_guard lk(mu);
  const config::Config cfg = build_config(o);  // ConfigError: nothing changed yet
  ModelList ml = model_list(cfg);
  for (const auto& a : cfg.aliases)  // aliases must name models of the new list (checked before any change)
    for (const auto& [v, w] : a.versions) {
      bool found = false;
      for (const auto& m : ml.models) found = found || m.name == v || m.name == v + ":latest";
      if (!found) throw Error("models.aliases: '" + a.name + "' points at '" + v + "', which is not a model", 400);
    }
  std::vector<std::string> changes;
  std::vector<std::string> keep;
  for (auto& c : ml.models) {
    keep.push_back(c.name);
    std::shared_ptr<ServedModel> cur;
    for (const auto& m : pool.list())
      if (m->name() == c.name) cur = m;
    if (!cur) {
      const bool load = c.preload;
      const std::string name = c.name, path = c.path;
      c.preload = false;  // added as unloaded; loaded below when it is a preload model
      pool.add(std::move(c));
      changes.push_back("added " + name);
      observe::log_info("reload: model added", {{"model", name}, {"path", path}, {"preload", load}});
      if (load) {
        try {
          pool.load_now(name, kKeepForever);
        } catch (const std::exception& e) {
          changes.push_back("load of " + name + " failed");
          observe::log_error("reload: the added model failed to load", {{"model", name}, {"error", e.what()}});
        }
      }
    } else if (cur->path() != c.path || cur->sha256() != c.sha256) {
      const std::string name = c.name, from = cur->path(), to = c.path;
      try {
        pool.swap(name, std::move(c));
        changes.push_back("swapped " + name);
        observe::log_info("reload: model swapped", {{"model", name}, {"from", from}, {"to", to}});
      } catch (const std::exception& e) {
        changes.push_back("swap of " + name + " failed");
        observe::log_error("reload: swap failed, the old version keeps serving",
                           {{"model", name}, {"to", to}, {"error", e.what()}});
      }
    }
  }
  for (const auto& m : pool.list())
    if (std::find(keep.begin(), keep.end(), m->name()) == keep.end()) {
      pool.remove(m->name());
      changes.push_back("removed " + m->name());
    }
  std::vector<std::string> alias_names;
  for (const auto& a : cfg.aliases) {
    alias_names.push_back(a.name);
    bool same = false;
    const ModelAlias na = to_alias(a);
    for (const auto& x : pool.aliases())
      if (x.name == na.name) same = x.versions == na.versions;
    if (same) continue;
    try {
      pool.set_alias(na);
      changes.push_back("alias " + a.name);
    } catch (const std::exception& e) {
      observe::log_error("reload: alias refused", {{"alias", a.name}, {"error", e.what()}});
    }
  }
  for (const auto& x : pool.aliases())
    if (std::find(alias_names.begin(), alias_names.end(), x.name) == alias_names.end()) {
      pool.remove_alias(x.name);
      changes.push_back("removed alias " + x.name);
    }
  std::string summary;
  for (const auto& c : changes) summary += (summary.empty() ? "" : "; ") + c;
  return summary.empty() ? "no model changes" : summary;
}

std::atomic<bool> g_sighup{false};
extern "C" void on_sighup(int) { g_sighup.store(true); }

int serve(const ServeOptions& o, const config::Config& cfg) {
  // SIGHUP reloads the model list (installed before anything can send it).
  struct sigaction sa {};
  sa.sa_handler = on_sighup;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGHUP, &sa, nullptr);
  EngineOptions eo;
  eo.n_parallel = static_cast<int>(cfg.parallel);
  eo.n_ctx = static_cast<int>(cfg.ctx);
  eo.n_threads = static_cast<int>(cfg.threads);
  eo.max_queue = static_cast<int>(cfg.max_queue);
  if (eo.n_parallel < 1 || eo.n_parallel > 256) throw Error("--parallel must be between 1 and 256");
  eo.embed.batch_size = static_cast<int>(cfg.batch_size);  // embedding models: dynamic batching
  eo.embed.max_batch_tokens = static_cast<int>(cfg.embed_max_batch_tokens);
  eo.embed.max_wait = std::chrono::microseconds(cfg.embed_batch_wait_us);
  eo.embed.max_queue = static_cast<int>(cfg.embed_max_queue);
  LifecycleOptions life;
  if (std::string ka = !cfg.keep_alive.empty() ? cfg.keep_alive : env_str("OLLAMA_KEEP_ALIVE"); !ka.empty())
    life.default_keep_alive = parse_keep_alive(ka);
  life.max_loaded = cfg.max_loaded_models > 0 ? static_cast<int>(cfg.max_loaded_models)
                                              : env_int("OLLAMA_MAX_LOADED_MODELS", 0);
  if (life.max_loaded < 0) throw Error("MAX_LOADED_MODELS must be 0 (no bound) or more", 400);
  life.memory_budget = parse_bytes(cfg.memory_budget);
  auto pool = std::make_shared<ModelPool>(eo, life);
  ModelList ml = model_list(cfg);
  const bool demo = ml.demo;
  for (auto& c : ml.models) pool->add(std::move(c));
  if (!ml.store.empty()) observe::log_info("ollama store", {{"dir", ml.store}, {"models", static_cast<int64_t>(ml.n_store)}});
  for (const auto& a : cfg.aliases) pool->set_alias(to_alias(a));  // Error(400) for an unknown version: exit 2

  auto router = std::make_shared<server::Router>();
  api::ApiOptions ao;
  ao.request_timeout = std::chrono::seconds(cfg.request_timeout_seconds);
  gateway::CacheOptions co;
  co.lru_entries = static_cast<size_t>(cfg.cache_size);
  co.redis_url = cfg.redis_url;
  co.ttl = std::chrono::seconds(cfg.cache_ttl_seconds);
  ao.embed_cache = std::make_shared<gateway::EmbeddingCache>(co);
  ao.upstreams = make_upstreams(cfg);
  web::register_routes(*router, {ao.version});  // first: its GET / negotiates (browsers get the playground)
  api::register_routes(*router, pool, ao);
  api::BuildInfo bi;
  bi.version = ao.version;
  bi.build = std::string("gcc ") + __VERSION__;
  api::Production prod(cfg, pool, ao.embed_cache, bi);
  api::AdminOptions admin;
  admin.reload = [&o, pool] { return reload_models(o, *pool); };
  api::register_admin_routes(*router, pool, admin);  // /admin/*: only with the admin key (ADMIN_KEY)
  prod.install(*router);  // auth, rate limits, limits, /metrics, /ready, /info
  if (ao.upstreams) gateway::add_upstream_metrics(prod.metrics(), ao.upstreams);  // in-flight, up per backend

  server::ServerOptions so;
  so.host = cfg.host;
  so.port = static_cast<uint16_t>(cfg.port);
  so.threads = static_cast<int>(cfg.http_threads);
  so.body_limit = static_cast<size_t>(cfg.max_body_bytes);
  so.log_requests = cfg.log_requests;
  so.max_connections = static_cast<int>(cfg.max_connections);
  so.request_read_timeout = std::chrono::seconds(cfg.header_timeout_seconds);
  so.idle_timeout = std::chrono::seconds(cfg.idle_timeout_seconds);
  so.write_timeout = std::chrono::seconds(cfg.write_timeout_seconds);
  so.drain_timeout = std::chrono::seconds(cfg.drain_timeout_seconds);
  so.on_complete = [&prod](const server::HttpRequest& req, int status, const std::string& note) {
    prod.on_complete(req, status, note);
  };
  server::HttpServer http(so, router);
  http.start();
  observe::log_info("listening", {{"url", "http://" + so.host + ":" + std::to_string(http.port())},
                                  {"port", static_cast<int64_t>(http.port())},
                                  {"instance_id", cfg.instance_id},
                                  {"apis", "OpenAI /v1, Ollama /api, /health, /ready, /info, /metrics"}});
  prod.log_startup(so.host, http.port());
  if (demo)
    observe::log_warn("no model given: serving the built-in demo models \"demo\" and \"demo-embed\" (random "
                      "weights, the text is meaningless)",
                      {{"models", "demo, demo-embed"},
                       {"hint", "to serve a real GGUF file: lmhost serve --model /path/to/model.gguf (or --model "
                                "NAME=PATH, repeatable)"}});
  pool->load_async();
  std::atomic<bool> stop_hup{false};
  std::thread hup([&] {
    while (!stop_hup.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!g_sighup.exchange(false)) continue;
      observe::log_info("SIGHUP: reloading the configuration", {{"file", o.config_file}});
      try {
        observe::log_info("configuration reloaded", {{"changes", reload_models(o, *pool)}});
      } catch (const std::exception& e) {
        observe::log_error("configuration reload failed; the running configuration stays", {{"error", e.what()}});
      }
    }
  });
  http.wait_for_signal();
  stop_hup.store(true);
  hup.join();
  prod.set_draining(true);  // /ready answers 503 from now on
  http.stop();
  pool->stop();
  if (ao.upstreams) ao.upstreams->stop();
  observe::log_info("stopped");
  return 0;
}

const bool registered = register_command({"serve", "Run the HTTP server (OpenAI and Ollama APIs)",
  [](CLI::App& sub) -> std::function<int()> {
    auto o = std::make_shared<ServeOptions>();
    sub.add_option("--host", o->host, "address to listen on (env HOST, default 127.0.0.1)");
    sub.add_option("--port", o->port, "port (env PORT, default 8080; 0 = any free port)");
    sub.add_option("-m,--model", o->models, "GGUF model to serve, as PATH or NAME=PATH (repeatable)");
    sub.add_option("--models-dir", o->models_dir, "serve every .gguf file in this folder");
    sub.add_option("--parallel", o->parallel, "sequences decoded together per model (default 4)");
    sub.add_option("-c,--ctx", o->ctx, "context per sequence (0 = the model's, at most 4096; default 0)");
    sub.add_option("-t,--threads", o->threads, "compute threads (0 = physical cores; default 0)");
    sub.add_option("--max-queue", o->max_queue, "waiting requests per model before 503 (env MAX_QUEUE, default 64)");
    sub.add_option("--timeout", o->timeout, "seconds a request may take (env REQUEST_TIMEOUT_SECONDS, default 600)");
    sub.add_option("--http-threads", o->http_threads, "HTTP I/O threads (default 4)");
    sub.add_option("--body-limit", o->body_limit, "largest request body in bytes (default 8 MiB)");
    sub.add_flag("-q,--quiet", o->quiet, "no per-request log lines");
    sub.add_option("--config", o->config_file, "YAML configuration file (env LMHOST_CONFIG)");
    sub.add_option("--set", o->sets, "set any configuration key, e.g. --set rate_limit.burst=10 (repeatable)");
    sub.add_option("--api-key", o->api_keys, "accept this API key (repeatable; see also API_KEYS, API_KEYS_FILE)");
    sub.add_option("--ollama-models", o->ollama_models,
                   "serve the models of this Ollama store in place (env OLLAMA_MODELS; default ~/.ollama/models "
                   "when it exists)");
    sub.add_option("--keep-alive", o->keep_alive,
                   "how long a model loaded on demand stays loaded when idle: 5m, 30s, 0, -1 = forever (env "
                   "KEEP_ALIVE / OLLAMA_KEEP_ALIVE, default 5m)");
    sub.add_option("--max-loaded-models", o->max_loaded,
                   "models loaded at once; the least recently used idle one is unloaded (env MAX_LOADED_MODELS, "
                   "0 = no bound)");
    sub.add_option("--preload", o->preload,
                   "load this model at start-up (repeatable, * = all; env PRELOAD_MODELS; default: --model files "
                   "yes, Ollama store models on first use)");
    sub.add_option("--alias", o->aliases,
                   "serve NAME as weighted versions, e.g. chat=chat@v1:90,chat@v2:10 (repeatable; env MODEL_ALIASES, "
                   "aliases separated by ;)");
    sub.add_option("--upstream", o->upstreams,
                   "serve the models of another server: ollama:URL or openai:URL[#KEY], optionally "
                   "URL?prefix=P&models=NAME+LOCAL=REMOTE (repeatable; env UPSTREAMS, OLLAMA_URL, OPENAI_API_KEY)");
    sub.add_flag("--print-config", o->print_config, "print the effective configuration (secrets redacted) and exit");
    return [o]() -> int {
      config::Config cfg;
      try {
        cfg = build_config(*o);
      } catch (const config::ConfigError& e) {
        std::fprintf(stderr, "lmhost: %s\n", e.what());
        return 2;
      }
      if (o->print_config) {
        std::fputs(config::to_yaml(cfg).c_str(), stdout);
        return 0;
      }
      observe::Level lvl = observe::Level::Info;
      observe::parse_level(cfg.log_level, lvl);
      observe::Logger::global().set_level(lvl);
      try {
        return serve(*o, cfg);
      } catch (const Error& e) {
        observe::log_error("start-up failed", {{"error", e.what()}});
        return e.status() == 400 ? 2 : 1;
      }
    };
  }});

}  // namespace
}  // namespace lmhost::cli
