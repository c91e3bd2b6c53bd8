// lmhost serve [--host H] [--port P] [--model [NAME=]PATH]... [--models-dir DIR]
//              [--parallel N] [--ctx N] [-t THREADS] [--max-queue N] [--timeout S]
// The HTTP server (OpenAI, Ollama and native APIs). The listener is up before
// the models finish loading. With no model it serves a synthesized demo model.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

#include "api/api.h"
#include "cli/command.h"
#include "engine/model_pool.h"
#include "model/synth.h"
#include "server/http.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

namespace fs = std::filesystem;

struct ServeOptions {
  std::string host;
  int port = -1;
  std::vector<std::string> models;
  std::string models_dir;
  int parallel = 4;
  int ctx = 0;
  int threads = 0;
  int max_queue = -1;
  int timeout = -1;
  int http_threads = 4;
  size_t body_limit = 8u << 20;
  bool quiet = false;
};

std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : def;
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
  std::fprintf(stderr, "lmhost: synthesizing the demo model at %s\n", path.c_str());
  model::synth_model(*spec, tmp, 1);
  fs::rename(tmp, path, ec);
  if (ec) throw Error("cannot write the demo model to " + path + ": " + ec.message());
}

int serve(const ServeOptions& o) {
  EngineOptions eo;
  eo.n_parallel = o.parallel;
  eo.n_ctx = o.ctx;
  eo.n_threads = o.threads;
  eo.max_queue = o.max_queue >= 0 ? o.max_queue : env_int("MAX_QUEUE", 64);
  if (eo.n_parallel < 1 || eo.n_parallel > 256) throw Error("--parallel must be between 1 and 256");
  eo.embed.batch_size = env_int("BATCH_SIZE", 32);  // embedding models: dynamic batching
  eo.embed.max_batch_tokens = env_int("MAX_BATCH_TOKENS", 8192);
  eo.embed.max_wait = std::chrono::microseconds(env_int("BATCH_WAIT_US", 2000));
  eo.embed.max_queue = env_int("EMBED_MAX_QUEUE", 1024);
  if (eo.embed.batch_size < 1 || eo.embed.max_batch_tokens < 1 || eo.embed.max_queue < 1)
    throw Error("BATCH_SIZE, MAX_BATCH_TOKENS and EMBED_MAX_QUEUE must be positive");
  auto pool = std::make_shared<ModelPool>(eo);

  std::vector<std::string> specs = o.models;
  if (!o.models_dir.empty()) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(o.models_dir, ec))
      if (e.path().extension() == ".gguf") specs.push_back(e.path().string());
    if (ec) throw Error("cannot read --models-dir " + o.models_dir + ": " + ec.message());
  }
  for (const auto& s : specs) {
    ModelConfig c;
    const size_t eq = s.find('=');
    if (eq != std::string::npos && eq > 0 && !fs::exists(s)) {
      c.name = s.substr(0, eq);
      c.path = s.substr(eq + 1);
    } else {
      c.path = s;
      c.name = fs::path(s).stem().string();
    }
    if (!fs::exists(c.path)) throw Error("model file not found: " + c.path);
    pool->add(std::move(c));
  }
  const bool demo = specs.empty();
  if (demo) {
    ModelConfig c;
    c.name = "demo";
    c.path = demo_path();
    c.demo = true;
    c.prepare = ensure_demo;
    pool->add(std::move(c));
    ModelConfig e;
    e.name = "demo-embed";
    e.path = fs::path(demo_path()).parent_path().string() + "/demo-embed-v1.gguf";
    e.demo = true;
    e.prepare = ensure_demo_embed;
    pool->add(std::move(e));
  }

  auto router = std::make_shared<server::Router>();
  api::ApiOptions ao;
  const int timeout = o.timeout >= 0 ? o.timeout : env_int("REQUEST_TIMEOUT_SECONDS", 600);
  ao.request_timeout = std::chrono::seconds(timeout);
  api::register_routes(*router, pool, ao);

  server::ServerOptions so;
  so.host = o.host.empty() ? env_or("HOST", "127.0.0.1") : o.host;
  const int port = o.port >= 0 ? o.port : env_int("PORT", 8080);
  if (port < 0 || port > 65535) throw Error("port " + std::to_string(port) + " is out of range");
  so.port = static_cast<uint16_t>(port);
  so.threads = o.http_threads;
  so.body_limit = o.body_limit;
  so.log_requests = !o.quiet;
  server::HttpServer http(so, router);
  http.start();
  std::fprintf(stderr, "lmhost: listening on http://%s:%u (OpenAI /v1, Ollama /api, /health)\n", so.host.c_str(),
               http.port());
  if (demo)
    std::fprintf(stderr,
                 "lmhost: no model given: serving the built-in demo model \"demo\" (random weights, the text is "
                 "meaningless).\n        To serve a real GGUF file: lmhost serve --model /path/to/model.gguf "
                 "(or --model NAME=PATH, repeatable)\n");
  pool->load_async();
  http.wait_for_signal();
  http.stop();
  pool->stop();
  std::fprintf(stderr, "lmhost: stopped\n");
  return 0;
}

const bool registered = register_command({"serve", "Run the HTTP server (OpenAI and Ollama APIs)",
  [](CLI::App& sub) -> std::function<int()> {
    auto o = std::make_shared<ServeOptions>();
    sub.add_option("--host", o->host, "address to listen on (env HOST, default 127.0.0.1)");
    sub.add_option("--port", o->port, "port (env PORT, default 8080; 0 = any free port)");
    sub.add_option("-m,--model", o->models, "GGUF model to serve, as PATH or NAME=PATH (repeatable)");
    sub.add_option("--models-dir", o->models_dir, "serve every .gguf file in this folder");
    sub.add_option("--parallel", o->parallel, "sequences decoded together per model")->capture_default_str();
    sub.add_option("-c,--ctx", o->ctx, "context per sequence (0 = the model's, at most 4096)")->capture_default_str();
    sub.add_option("-t,--threads", o->threads, "compute threads (0 = physical cores)")->capture_default_str();
    sub.add_option("--max-queue", o->max_queue, "waiting requests per model before 503 (env MAX_QUEUE, default 64)");
    sub.add_option("--timeout", o->timeout, "seconds a request may take (env REQUEST_TIMEOUT_SECONDS, default 600)");
    sub.add_option("--http-threads", o->http_threads, "HTTP I/O threads")->capture_default_str();
    sub.add_option("--body-limit", o->body_limit, "largest request body in bytes")->capture_default_str();
    sub.add_flag("-q,--quiet", o->quiet, "no per-request log lines");
    return [o] { return serve(*o); };
  }});

}  // namespace
}  // namespace lmhost::cli
