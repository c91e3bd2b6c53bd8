#include "api/admin.h"

#include <cmath>
#include <filesystem>

#include "api/common.h"
#include "observe/log.h"

namespace lmhost::api {

namespace {

// A response produced by a pool task (a load or a swap): the I/O thread is not blocked meanwhile.
class TaskResponse : public server::DeferredResponse {
 public:
  void set_notify(std::function<void()> n) override {
    std::unique_lock lk(mu_);
    notify_ = std::move(n);
    const bool ready = res_.has_value();
    auto fn = notify_;
    lk.unlock();
    if (ready && fn) fn();
  }
  void cancel() override {}  // the load / swap completes anyway
  std::optional<HttpResponse> poll() override {
    std::lock_guard lk(mu_);
    return res_;
  }
  void finish(HttpResponse r) {
    std::unique_lock lk(mu_);
    res_ = std::move(r);
    auto fn = notify_;
    lk.unlock();
    if (fn) fn();
  }

 private:
  std::mutex mu_;
  std::optional<HttpResponse> res_;
  std::function<void()> notify_;
};

// Runs work on a pool thread; its json is the 200 response, an Error its status.
HttpResponse deferred(ModelPool& pool, std::function<json()> work) {
  auto t = std::make_shared<TaskResponse>();
  pool.run_task([t, work = std::move(work)] {
    try {
      t->finish(HttpResponse::json(200, dump(work())));
    } catch (const Error& e) {
      auto r = openai_error(e.status(), e.what());
      t->finish(std::move(r));
    } catch (const std::exception& e) {
      t->finish(openai_error(500, std::string("internal error: ") + e.what()));
    }
  });
  HttpResponse res;
  res.deferred = t;
  return res;
}

std::string required(const json& b, const char* key) {
  auto v = opt_string(b, key);
  if (!v || v->empty()) throw Error(std::string("'") + key + "' is required", 400);
  return *v;
}

std::chrono::milliseconds keep_alive_of(const json& b, std::chrono::milliseconds def) {
  auto it = b.find("keep_alive");
  if (it == b.end() || it->is_null()) return def;
  if (it->is_number()) return parse_keep_alive(std::to_string(it->get<double>()));
  if (it->is_string()) return parse_keep_alive(it->get<std::string>());
  throw Error("'keep_alive' must be a duration string or a number of seconds", 400);
}

// A model file given to load / swap: it must exist ("PATH@sha256:HEX" or a 'sha256' field adds a checksum).
ModelConfig file_config(const json& b, const std::string& name) {
  ModelConfig c;
  c.name = name;
  c.path = required(b, "path");
  if (const size_t at = c.path.rfind("@sha256:"); at != std::string::npos && c.path.size() - at == 8 + 64) {
    c.sha256 = c.path.substr(at + 8);
    c.path.resize(at);
  }
  if (auto h = opt_string(b, "sha256")) c.sha256 = *h;
  for (auto& ch : c.sha256) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!c.sha256.empty() && (c.sha256.size() != 64 || c.sha256.find_first_not_of("0123456789abcdef") != std::string::npos))
    throw Error("'sha256' must be 64 hex digits", 400);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(c.path, ec)) throw Error("model file not found: " + c.path, 400);
  c.version = opt_string(b, "label").value_or("");
  c.source = "file";
  return c;
}

json model_json(const ServedModel& m) {
  json e = {{"name", m.name()},        {"path", m.path()},           {"version", m.version()},
            {"state", model_state_name(m.state())}, {"source", m.source()}, {"in_flight", m.in_flight()}};
  if (m.state() == ModelState::Ready) {
    e["loaded_at"] = rfc3339(m.loaded_at());
    e["load_ms"] = std::round(m.load_ms());
    e["warmup_ms"] = std::round(m.warmup_ms() * 10) / 10;
    e["bytes"] = m.file_bytes();
    const auto exp = m.expires_at();
    e["expires_at"] = exp == std::chrono::system_clock::time_point::max() ? json(nullptr) : json(rfc3339(exp));
  }
  if (m.state() == ModelState::Failed) e["error"] = m.error();
  return e;
}

json alias_json(const ModelAlias& a) {
  json v = json::object();
  for (const auto& [name, w] : a.versions) v[name] = w;
  return {{"name", a.name}, {"versions", v}};
}

}  // namespace

void register_admin_routes(server::Router& r, std::shared_ptr<ModelPool> pool, AdminOptions options) {
  r.add("GET", "/admin/models", [pool](HttpRequest&) {
    json models = json::array(), aliases = json::array();
    for (const auto& m : pool->list()) models.push_back(model_json(*m));
    for (const auto& a : pool->aliases()) aliases.push_back(alias_json(a));
    return HttpResponse::json(200, dump(json{{"models", models}, {"aliases", aliases}}));
  });

  // {name[, path][, keep_alive]}: loads a known model now, or adds NAME from PATH and loads it.
  r.add("POST", "/admin/models/load", [pool](HttpRequest& req) {
    const json b = parse_body(req);
    const std::string name = required(b, "name");
    std::optional<ModelConfig> cfg;
    if (b.contains("path")) cfg = file_config(b, name);
    const auto ka = keep_alive_of(b, kKeepForever);
    return deferred(*pool, [pool, name, cfg, ka]() -> json {
      auto m = pool->load_now(name, ka, cfg);
      observe::log_info("admin: model loaded", {{"model", name}, {"version", m->version()}});
      return model_json(*m);
    });
  });

  // {name}: unloads now when idle, else once its requests are done; it stays listed and loads again on use.
  r.add("POST", "/admin/models/unload", [pool](HttpRequest& req) {
    const json b = parse_body(req);
    const std::string name = required(b, "name");
    auto m = pool->find(name);
    if (!m || m->name() != name) throw Error("model '" + name + "' is not served here", 404);
    pool->unload(m);
    observe::log_info("admin: model unload", {{"model", name}, {"in_flight", m->in_flight()}});
    return HttpResponse::json(200, dump(json{{"name", name},
                                             {"state", model_state_name(m->state())},
                                             {"in_flight", m->in_flight()}}));
  });

  // {name}: takes the name out (aliases pointing at it skip it); in-flight requests finish first.
  r.add("POST", "/admin/models/remove", [pool](HttpRequest& req) {
    const json b = parse_body(req);
    const std::string name = required(b, "name");
    if (!pool->remove(name)) throw Error("model '" + name + "' is not served here", 404);
    return HttpResponse::json(200, dump(json{{"name", name}, {"removed", true}}));
  });

  // {name, path[, sha256][, label]}: hot swap to another file (loaded and warmed while the old one
  // serves, then switched; the old one finishes its requests and unloads).
  // {name, version}: points the alias NAME (created when new) at the model VERSION only.
  r.add("POST", "/admin/models/swap", [pool](HttpRequest& req) {
    const json b = parse_body(req);
    const std::string name = required(b, "name");
    if (b.contains("version") && !b["version"].is_null()) {
      if (b.contains("path")) throw Error("give either 'path' (a file) or 'version' (a model), not both", 400);
      const std::string ver = required(b, "version");
      pool->set_alias(ModelAlias{name, {{ver, 100}}});
      return HttpResponse::json(200, dump(json{{"name", name}, {"alias", true}, {"versions", {{ver, 100}}}}));
    }
    ModelConfig cfg = file_config(b, name);
    return deferred(*pool, [pool, name, cfg]() mutable -> json {
      auto old = pool->find(name);
      const std::string from = old && old->name() == name ? old->version() : "";
      auto m = pool->swap(name, std::move(cfg));
      json out = model_json(*m);
      out["swapped_from"] = from;
      return out;
    });
  });

  // {name, versions: {model: weight, ...}}: creates or re-weights an alias (no model is reloaded).
  r.add("POST", "/admin/aliases", [pool](HttpRequest& req) {
    const json b = parse_body(req);
    ModelAlias a;
    a.name = required(b, "name");
    auto it = b.find("versions");
    if (it == b.end() || !it->is_object() || it->empty())
      throw Error("'versions' must be an object of model name -> weight, e.g. {\"chat@v1\": 90, \"chat@v2\": 10}", 400);
    for (const auto& [v, w] : it->items()) {
      if (!w.is_number_integer() || w.get<int64_t>() < 0 || w.get<int64_t>() > 1000000)
        throw Error("the weight of '" + v + "' must be an integer from 0 to 1000000", 400);
      a.versions.emplace_back(v, static_cast<int>(w.get<int64_t>()));
    }
    pool->set_alias(a);
    return HttpResponse::json(200, dump(alias_json(a)));
  });
  r.add("DELETE", "/admin/aliases/{name}", [pool](HttpRequest& req) {
    const std::string name = req.params["name"];
    if (!pool->remove_alias(name)) throw Error("no alias named '" + name + "'", 404);
    return HttpResponse::json(200, dump(json{{"name", name}, {"removed", true}}));
  });

  // Re-reads the configuration file (as SIGHUP does).
  r.add("POST", "/admin/reload", [pool, reload = options.reload](HttpRequest&) {
    if (!reload) throw Error("this server has no configuration to reload", 404);
    return deferred(*pool, [reload]() -> json { return json{{"reloaded", true}, {"changes", reload()}}; });
  });
}

}  // namespace lmhost::api
