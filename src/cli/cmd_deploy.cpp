// lmhost deploy generate --target systemd|nginx|compose|k8s|monitoring|all [-o DIR] [--replicas N] ...
// Writes deployment files filled in from the current configuration (port,
// models, replicas, the environment variables lmhost reads). The templates
// are the files under src/cli/deploy/, compiled into the binary; deploy/ in
// the source tree is this command's output with the defaults.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string_view>

#include "cli/command.h"
#include "config/config.h"
#include "util/error.h"

#ifndef LMHOST_VERSION
#define LMHOST_VERSION "0.1.0"
#endif

namespace lmhost::cli::deploy {
const std::map<std::string, std::string_view>& embedded_files();  // generated (cmake/Embed.cmake)
}

namespace lmhost::cli {
namespace {

namespace fs = std::filesystem;

struct DeployOptions {
  std::vector<std::string> targets;
  std::string out = "lmhost-deploy";
  int replicas = 2;
  int max_replicas = 0;  // 0: 4 x replicas
  int port = -1;
  std::vector<std::string> models;
  std::string models_dir = "/var/lib/lmhost/models";
  std::string image = std::string("lmhost:") + LMHOST_VERSION;
  std::string ns = "lmhost";
  std::string server_name = "_";
  std::string listen = "80";
  std::vector<std::string> upstreams;
  std::string binary = "/usr/local/bin/lmhost";
  std::string listen_host = "127.0.0.1";
  std::string build_context = "../..";
  std::string cpu_request = "2";
  std::string memory_request = "4Gi";
  std::string memory_limit = "8Gi";
  std::string models_storage = "20Gi";
  std::string body_limit = "8m";
  std::vector<std::string> env;  // KEY=VALUE
  bool force = false;
  bool quiet = false;
};

// The environment names of the configuration (config::settings()) that
// belong in a deployment's environment. Per-instance names and what the
// generated files set themselves are left out; secrets are never written.
const std::set<std::string> kPerInstance = {"HOST", "PORT", "INSTANCE_ID", "MODEL_PATH", "MODELS_DIR"};

const std::vector<std::string> kTargets = {"systemd", "nginx", "compose", "k8s", "monitoring"};

// Folders of the embedded tree each target writes.
std::vector<std::string> folders_of(const std::string& target) {
  if (target == "compose") return {"compose/", "docker/", "monitoring/"};
  return {target + "/"};
}

std::string yaml_quote(const std::string& s) { return nlohmann::json(s).dump(); }

std::string systemd_quote(const std::string& s) {
  if (s.find_first_of(" \t\"'\\$#") == std::string::npos && !s.empty()) return s;
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r + "\"";
}

bool valid_env_name(const std::string& k) {
  if (k.empty() || !(std::isupper(static_cast<unsigned char>(k[0])) || k[0] == '_')) return false;
  for (char c : k)
    if (!(std::isupper(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  return true;
}

// Replaces {{NAME}} (upper-case names only, so Prometheus' {{ $labels.x }}
// and Grafana's {{instance}} pass through). A value with several lines takes
// the indentation of its placeholder's line on every line after the first.
std::string render(std::string_view tmpl, const std::map<std::string, std::string>& vars, const std::string& file) {
  static const std::regex re(R"(\{\{([A-Z][A-Z0-9_]*)\}\})");
  const std::string text(tmpl);
  std::string out;
  auto begin = std::sregex_iterator(text.begin(), text.end(), re);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    const size_t pos = static_cast<size_t>(m.position(0));
    out.append(text, last, pos - last);
    auto v = vars.find(m[1].str());
    if (v == vars.end()) throw Error("deploy template " + file + " uses an unknown variable {{" + m[1].str() + "}}");
    const size_t line_start = out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1;
    std::string indent = out.substr(line_start);
    if (indent.find_first_not_of(" \t") != std::string::npos) indent.clear();
    std::string value;
    std::istringstream lines(v->second);
    std::string line;
    bool first = true;
    while (std::getline(lines, line)) {
      if (!first) value += "\n" + (line.empty() ? std::string() : indent);
      value += line;
      first = false;
    }
    out += value;
    last = pos + static_cast<size_t>(m.length(0));
  }
  out.append(text, last, std::string::npos);
  return out;
}

struct Model {
  std::string name, path;
};

std::vector<Model> parse_models(const std::vector<std::string>& specs) {
  std::vector<Model> r;
  for (const auto& s : specs) {
    const size_t eq = s.find('=');
    Model m;
    if (eq != std::string::npos && eq > 0) {
      m.name = s.substr(0, eq);
      m.path = s.substr(eq + 1);
    } else {
      m.path = s;
      m.name = fs::path(s).stem().string();
    }
    if (m.path.empty()) throw Error("--model " + s + ": empty path");
    r.push_back(m);
  }
  return r;
}

int generate(const DeployOptions& o) {
  // Targets.
  std::set<std::string> targets;
  for (const auto& t : o.targets) {
    std::stringstream ss(t);
    std::string one;
    while (std::getline(ss, one, ',')) {
      if (one == "all") {
        targets.insert(kTargets.begin(), kTargets.end());
      } else if (std::find(kTargets.begin(), kTargets.end(), one) != kTargets.end()) {
        targets.insert(one);
      } else {
        throw Error("unknown --target '" + one + "' (expected systemd, nginx, compose, k8s, monitoring or all)");
      }
    }
  }
  if (targets.empty()) throw Error("give at least one --target (systemd, nginx, compose, k8s, monitoring or all)");
  if (o.replicas < 1 || o.replicas > 1000) throw Error("--replicas must be between 1 and 1000");
  const int max_replicas = o.max_replicas > 0 ? o.max_replicas : 4 * o.replicas;
  if (max_replicas < o.replicas) throw Error("--max-replicas must be at least --replicas");

  // Port: --port, else PORT, else 8080.
  int port = o.port;
  if (port < 0) {
    const char* p = std::getenv("PORT");
    try {
      port = p && *p ? std::stoi(p) : 8080;
    } catch (...) {
      throw Error(std::string("environment variable PORT='") + p + "' is not a number");
    }
  }
  if (port < 1 || port + o.replicas - 1 > 65535) throw Error("port " + std::to_string(port) + " is out of range");

  // Environment: defaults < current environment < --env.
  std::map<std::string, std::string> env = {
      {"LOG_LEVEL", "info"}, {"CACHE_SIZE", "1000"}, {"CACHE_TTL_SECONDS", "3600"},
      {"MAX_QUEUE", "64"},   {"REQUEST_TIMEOUT_SECONDS", "600"},
  };
  std::set<std::string> from_user;  // set by the environment or --env: kept as given for every target
  for (const auto& s : config::settings()) {
    if (s.env.empty() || kPerInstance.count(s.env)) continue;
    const char* v = std::getenv(s.env.c_str());
    if (!v || !*v) continue;
    // A URL is secret only for its password: without one it is written.
    const bool url_without_password = s.env.size() > 4 && s.env.compare(s.env.size() - 4, 4, "_URL") == 0 &&
                                      std::string_view(v).find('@') == std::string_view::npos;
    if ((s.secret && !url_without_password) || s.env == "API_KEYS") {
      if (!o.quiet)
        std::fprintf(stderr, "lmhost deploy: %s is set but secrets are never written; see the Secret / env file notes\n",
                     s.env.c_str());
      continue;
    }
    env[s.env] = v;
    from_user.insert(s.env);
  }
  for (const auto& kv : o.env) {
    const size_t eq = kv.find('=');
    const std::string k = kv.substr(0, eq);
    if (eq == std::string::npos || !valid_env_name(k))
      throw Error("--env " + kv + ": expected NAME=VALUE with an upper-case NAME");
    if (k == "PORT" || k == "HOST") throw Error("--env " + k + ": use --port / --listen-host instead");
    env[k] = kv.substr(eq + 1);
    from_user.insert(k);
  }
  const auto models = parse_models(o.models);
  if (!models.empty() && !env.count("DEFAULT_MODEL")) env["DEFAULT_MODEL"] = models.front().name;

  auto env_for = [&](const std::string& redis_default) {
    auto e = env;
    if (!from_user.count("REDIS_URL")) e["REDIS_URL"] = redis_default;
    return e;
  };
  auto join_lines = [](const std::map<std::string, std::string>& e, auto fmt) {
    std::string s;
    for (const auto& [k, v] : e) s += (s.empty() ? "" : "\n") + fmt(k, v);
    return s;
  };
  auto yaml_env = [&](const std::map<std::string, std::string>& e) {
    return join_lines(e, [](const std::string& k, const std::string& v) { return k + ": " + yaml_quote(v); });
  };

  // Serve arguments: explicit models, else every .gguf file of the models folder.
  auto serve_args = [&](const std::string& dir, bool in_container) {
    std::vector<std::string> a;
    if (models.empty()) {
      a = {"--models-dir", dir};
    } else {
      for (const auto& m : models) {
        a.push_back("--model");
        a.push_back(m.name + "=" + (in_container ? dir + "/" + fs::path(m.path).filename().string() : m.path));
      }
    }
    return a;
  };
  auto json_args = [&](const std::vector<std::string>& extra) {
    std::string s = "[\"serve\"";
    for (const auto& x : extra) s += ", " + nlohmann::json(x).dump();
    return s + "]";
  };
  auto shell_args = [&](const std::vector<std::string>& a) {
    std::string s;
    for (const auto& x : a) s += (s.empty() ? "" : " ") + systemd_quote(x);
    return s;
  };
  std::string upstream_servers, instances, static_targets;
  std::vector<std::string> ups = o.upstreams;
  if (ups.empty())
    for (int i = 0; i < o.replicas; ++i) ups.push_back("127.0.0.1:" + std::to_string(port + i));
  for (const auto& u : ups) {
    upstream_servers += (upstream_servers.empty() ? "" : "\n") + std::string("server ") + u +
                        " max_fails=2 fail_timeout=10s;";
    static_targets += (static_targets.empty() ? "" : ", ") + yaml_quote(u);
  }
  for (int i = 0; i < o.replicas; ++i) instances += (i ? " " : "") + std::string("lmhost@") + std::to_string(port + i);

  const std::string image = o.image;
  const size_t colon = image.rfind(':');
  const bool has_tag = colon != std::string::npos && image.find('/', colon) == std::string::npos;
  int timeout = 600;
  try {
    timeout = std::stoi(env["REQUEST_TIMEOUT_SECONDS"]);
  } catch (...) {
    throw Error("REQUEST_TIMEOUT_SECONDS='" + env["REQUEST_TIMEOUT_SECONDS"] + "' is not a number");
  }

  std::map<std::string, std::string> vars = {
      {"PORT", std::to_string(port)},
      {"REPLICAS", std::to_string(o.replicas)},
      {"MAX_REPLICAS", std::to_string(max_replicas)},
      {"REPLICAS_TEXT", std::to_string(ups.size()) + (ups.size() == 1 ? " replica" : " replicas")},
      {"IMAGE", image},
      {"IMAGE_NAME", has_tag ? image.substr(0, colon) : image},
      {"IMAGE_TAG", has_tag ? image.substr(colon + 1) : "latest"},
      {"NAMESPACE", o.ns},
      {"SERVER_NAME", o.server_name},
      {"NGINX_LISTEN", o.listen},
      {"UPSTREAM_SERVERS", upstream_servers},
      {"STATIC_TARGETS", static_targets},
      {"INSTANCES", instances},
      {"BINARY", o.binary},
      {"LISTEN_HOST", o.listen_host},
      {"MODELS_DIR", o.models_dir},
      {"BUILD_CONTEXT", o.build_context},
      {"CPU_REQUEST", o.cpu_request},
      {"MEMORY_REQUEST", o.memory_request},
      {"MEMORY_LIMIT", o.memory_limit},
      {"MODELS_STORAGE", o.models_storage},
      {"BODY_LIMIT", o.body_limit},
      {"PROXY_TIMEOUT", std::to_string(timeout + 30) + "s"},
      {"SERVE_ARGS", shell_args(serve_args(o.models_dir, false))},
      {"CONTAINER_ARGS", json_args(serve_args("/models", true))},
      {"SYSTEMD_ENV", join_lines(env_for("redis://127.0.0.1:6379"),
                                 [](const std::string& k, const std::string& v) { return k + "=" + systemd_quote(v); })},
      {"COMPOSE_ENV", [&] {
         auto e = env_for("redis://redis:6379");
         if (!from_user.count("OLLAMA_URL")) e["OLLAMA_URL"] = "http://ollama:11434";
         return yaml_env(e);
       }()},
      {"K8S_CONFIG_DATA", yaml_env(env_for("redis://redis:6379"))},
  };

  // Render everything first (a template error writes nothing), then write.
  std::vector<std::pair<fs::path, std::string>> files;
  for (const auto& [name, body] : deploy::embedded_files()) {
    bool wanted = false;
    for (const auto& t : targets)
      for (const auto& f : folders_of(t)) wanted = wanted || name.rfind(f, 0) == 0;
    if (!wanted) continue;
    files.emplace_back(fs::path(o.out) / name, render(body, vars, name));
  }
  for (const auto& [path, body] : files) {
    std::error_code ec;
    if (!o.force && fs::exists(path, ec)) {
      std::ifstream in(path, std::ios::binary);
      std::stringstream old;
      old << in.rdbuf();
      if (old.str() != body)
        throw Error(path.string() + " exists and differs; pass --force to overwrite");
    }
  }
  for (const auto& [path, body] : files) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) throw Error("cannot create " + path.parent_path().string() + ": " + ec.message());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << body;
    out.close();
    if (!out) throw Error("cannot write " + path.string());
    if (!o.quiet) std::printf("%s\n", path.string().c_str());
  }
  return 0;
}

const bool registered = register_command({"deploy", "Write deployment files (systemd, nginx, compose, k8s, monitoring)",
  [](CLI::App& sub) -> std::function<int()> {
    auto o = std::make_shared<DeployOptions>();
    sub.require_subcommand(1);
    CLI::App* g = sub.add_subcommand("generate", "write the files of one or more targets into a folder");
    g->add_option("--target", o->targets, "systemd, nginx, compose, k8s, monitoring or all (repeatable, or comma-separated)")
        ->required();
    g->add_option("-o,--output", o->out, "folder to write into")->capture_default_str();
    g->add_option("--replicas", o->replicas, "replicas (nginx upstreams, systemd instances, k8s Deployment)")
        ->capture_default_str();
    g->add_option("--max-replicas", o->max_replicas, "k8s autoscaler maximum (default 4 x --replicas)");
    g->add_option("--port", o->port, "lmhost's port (env PORT, default 8080); systemd replicas use PORT, PORT+1, ...");
    g->add_option("-m,--model", o->models, "model as PATH or NAME=PATH (repeatable; default: every .gguf in the models folder)");
    g->add_option("--models-dir", o->models_dir, "models folder on systemd hosts")->capture_default_str();
    g->add_option("--image", o->image, "container image")->capture_default_str();
    g->add_option("--namespace", o->ns, "Kubernetes namespace")->capture_default_str();
    g->add_option("--server-name", o->server_name, "nginx server_name (your domain)")->capture_default_str();
    g->add_option("--listen", o->listen, "nginx listen address")->capture_default_str();
    g->add_option("--upstream", o->upstreams, "nginx upstream HOST:PORT (repeatable; default 127.0.0.1:PORT+i per replica)");
    g->add_option("--binary", o->binary, "lmhost's path on systemd hosts")->capture_default_str();
    g->add_option("--listen-host", o->listen_host, "address systemd instances listen on")->capture_default_str();
    g->add_option("--build-context", o->build_context, "compose build context (the source tree), relative to DIR/compose")
        ->capture_default_str();
    g->add_option("--cpu-request", o->cpu_request, "k8s CPU request per replica")->capture_default_str();
    g->add_option("--memory-request", o->memory_request, "k8s memory request per replica")->capture_default_str();
    g->add_option("--memory-limit", o->memory_limit, "k8s memory limit per replica")->capture_default_str();
    g->add_option("--models-storage", o->models_storage, "k8s models volume size")->capture_default_str();
    g->add_option("--body-limit", o->body_limit, "nginx client_max_body_size")->capture_default_str();
    g->add_option("-e,--env", o->env, "extra setting NAME=VALUE for the service's environment (repeatable)");
    g->add_flag("-f,--force", o->force, "overwrite files that differ");
    g->add_flag("-q,--quiet", o->quiet, "do not list the files written");
    return [o] { return generate(*o); };
  }});

}  // namespace
}  // namespace lmhost::cli
