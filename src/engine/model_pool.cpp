#include "engine/model_pool.h"

#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <openssl/evp.h>
#include <filesystem>
#include <map>
#include <random>

#include "gguf/gguf.h"
#include "model/model.h"
#include "observe/log.h"
#include "util/error.h"

namespace lmhost {

const char* model_state_name(ModelState s) {
  switch (s) {
    case ModelState::Loading: return "loading";
    case ModelState::Ready: return "ready";
    case ModelState::Failed: return "error";
    case ModelState::Unloaded: return "unloaded";
  }
  return "";
}

std::chrono::milliseconds parse_keep_alive(const std::string& text) {
  auto bad = [&]() -> Error {
    return Error("'keep_alive' must be a duration such as \"5m\", \"30s\", \"1h\", a number of seconds, 0 "
                 "(unload at once) or -1 (keep loaded); got '" + text + "'", 400);
  };
  std::string_view s = text;
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s.empty()) throw bad();
  bool neg = false;
  if (s.front() == '-' || s.front() == '+') {
    neg = s.front() == '-';
    s.remove_prefix(1);
  }
  double total_ms = 0;
  bool any = false;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == 0) throw bad();
    double v = 0;
    try {
      v = std::stod(std::string(s.substr(0, i)));
    } catch (...) {
      throw bad();
    }
    s.remove_prefix(i);
    size_t j = 0;
    while (j < s.size() && !std::isdigit(static_cast<unsigned char>(s[j])) && s[j] != '.') ++j;
    const std::string_view unit = s.substr(0, j);
    s.remove_prefix(j);
    double mul;
    if (unit.empty()) {
      if (any || !s.empty()) throw bad();
      mul = 1000;  // a bare number: seconds
    } else if (unit == "h") mul = 3600e3;
    else if (unit == "m") mul = 60e3;
    else if (unit == "s") mul = 1e3;
    else if (unit == "ms") mul = 1;
    else if (unit == "us" || unit == "\u00b5s") mul = 1e-3;
    else if (unit == "ns") mul = 1e-6;
    else throw bad();
    total_ms += v * mul;
    any = true;
  }
  if (neg && total_ms > 0) return kKeepForever;
  if (total_ms > 1e15) return kKeepForever;
  return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
}

std::string sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open " + path + " to check its SHA-256: " + std::strerror(errno));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<unsigned char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx, buf.data(), n);
  const bool err = std::ferror(f);
  std::fclose(f);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (err) throw Error("read error while checking the SHA-256 of " + path);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

namespace {

// Verdicts of checked files: path|size|mtime -> actual digest (hashed once).
std::string cached_sha256(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::string> cache;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  const auto mtime = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  const std::string key = path + "|" + std::to_string(size) + "|" + std::to_string(mtime);
  {
    std::lock_guard lk(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::string d = sha256_file(path);
  observe::log_info("checked the SHA-256 of a model file",
                    {{"path", path}, {"bytes", static_cast<int64_t>(size)},
                     {"ms", std::round(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count())}});
  std::lock_guard lk(mu);
  cache[key] = d;
  return d;
}

}  // namespace

uint64_t parse_bytes(const std::string& text) {
  std::string t;
  for (char c : text)
    if (c != ' ' && c != '_') t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t.empty()) return 0;
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  double v = -1;
  try {
    if (i > 0) v = std::stod(t.substr(0, i));
  } catch (...) {
  }
  const std::string unit = t.substr(i);
  static const std::pair<const char*, double> units[] = {
      {"", 1},           {"b", 1},          {"k", 1e3},           {"kb", 1e3},          {"kib", 1024.0},
      {"m", 1e6},        {"mb", 1e6},       {"mib", 1048576.0},   {"g", 1e9},           {"gb", 1e9},
      {"gib", 1073741824.0}, {"t", 1e12},   {"tb", 1e12},         {"tib", 1099511627776.0}};
  for (const auto& [u, mul] : units)
    if (unit == u && v >= 0) return static_cast<uint64_t>(v * mul);
  throw Error("expected a size such as \"8GiB\", \"512MiB\", \"2GB\" or a number of bytes; got '" + text + "'", 400);
}

ServedModel::~ServedModel() { stop(); }

std::string ServedModel::version() const {
  if (!cfg_.version.empty()) return cfg_.version;
  std::string stem = std::filesystem::path(cfg_.path).filename().string();
  if (stem.size() > 5 && stem.substr(stem.size() - 5) == ".gguf") stem.resize(stem.size() - 5);
  if (stem.rfind("sha256-", 0) == 0 && stem.size() > 19) stem.resize(19);  // an Ollama blob
  return stem;
}

void ServedModel::warm_up() {
  if (embed_) {
    std::vector<Token> t = tok_->encode("warm up", true, false);
    if (t.empty()) t.push_back(0);
    embed_->embed({t});
    return;
  }
  GenerateRequest g;
  g.prompt = tok_->encode("Hello", true, false);
  if (g.prompt.empty()) g.prompt.push_back(tok_->bos() >= 0 ? tok_->bos() : 0);
  g.max_tokens = 1;
  g.sampling.temperature = 0;
  auto h = sched_->submit(std::move(g));
  const GenerateResult r = collect(*h);
  if (r.finish == FinishReason::Error) throw Error("the warm-up run failed: " + r.error);
}

std::string ServedModel::error() const {
  std::lock_guard lk(mu_);
  return error_;
}

void ServedModel::stop() {
  if (sched_) sched_->stop();
  if (embed_) embed_->stop();
}

Scheduler& ServedModel::no_scheduler() const {
  throw Error("model '" + cfg_.name + "' is an embedding model; use /v1/embeddings or /api/embed", 400);
}

std::chrono::system_clock::time_point ServedModel::expires_at() const {
  std::lock_guard lk(mu_);
  return expires_at_;
}

void ServedModel::set_keep_alive(std::chrono::milliseconds ka) {
  std::lock_guard lk(mu_);
  keep_alive_ = ka;
  if (in_flight_.load() == 0 && state() == ModelState::Ready)
    expires_at_ = ka < std::chrono::milliseconds(0) ? std::chrono::system_clock::time_point::max()
                                                    : std::chrono::system_clock::now() + ka;
}

std::chrono::milliseconds ServedModel::keep_alive() const {
  std::lock_guard lk(mu_);
  return keep_alive_;
}

void ServedModel::unload() {
  state_.store(ModelState::Unloaded, std::memory_order_release);
  stop();
  sched_.reset();
  embed_.reset();
  template_.reset();
  tok_.reset();
  model_.reset();
  file_.reset();
  observe::log_info("model unloaded", {{"model", cfg_.name}});
}

void ServedModel::load(const EngineOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  parameters_ = 0;
  quant_.clear();
  try {
    if (cfg_.prepare) cfg_.prepare(cfg_.path);
    if (!cfg_.sha256.empty()) {
      const std::string actual = cached_sha256(cfg_.path);
      if (actual != cfg_.sha256) {
        error_status_ = 500;
        throw Error("checksum mismatch: " + cfg_.path + " has SHA-256 " + actual + " but " + cfg_.sha256 +
                    " was expected (" + (cfg_.source == "ollama" ? "its Ollama blob name" : "the configuration") +
                    "); the file is corrupt or was replaced, so the model is refused");
      }
    }
    file_ = gguf::File::open(cfg_.path);
    arch_ = file_->architecture();
    file_bytes_ = file_->file_size();
    {
      std::error_code ec;
      auto mt = std::filesystem::last_write_time(cfg_.path, ec);
      if (!ec)
        modified_at_ = std::chrono::system_clock::now() +
                       std::chrono::duration_cast<std::chrono::system_clock::duration>(
                           mt - std::filesystem::file_time_type::clock::now());
    }
    std::map<DType, uint64_t> bytes_by_type;
    for (const auto& t : file_->tensors()) {
      parameters_ += static_cast<uint64_t>(t.n_elements());
      if (t.dims.size() >= 2) bytes_by_type[t.type] += t.nbytes;
    }
    uint64_t best = 0;
    for (auto [t, b] : bytes_by_type)
      if (b > best) { best = b; quant_ = dtype_name(t); }
    if (is_embedding_model(*file_)) {  // bert / nomic-bert: an embedding batcher instead of a scheduler
      tok_ = Tokenizer::from_gguf(*file_);
      auto em = EmbeddingModel::load(file_);
      em->digest();  // computed once at load (cache identity)
      EmbedOptions eo = opts.embed;
      if (eo.n_threads == 0) eo.n_threads = opts.n_threads;
      embed_ = std::make_shared<EmbedBatcher>(em, eo);
      load_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      const auto tw = std::chrono::steady_clock::now();
      warm_up();  // ready only once it has computed an embedding
      warmup_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tw).count();
      loaded_at_ = std::chrono::system_clock::now();
      state_.store(ModelState::Ready, std::memory_order_release);
      observe::log_info("embedding model ready", {{"model", cfg_.name},
                                                  {"path", cfg_.path},
                                                  {"arch", arch_},
                                                  {"type", quant_},
                                                  {"parameters", static_cast<int64_t>(parameters_)},
                                                  {"n_ctx", em->n_ctx()},
                                                  {"pooling", pooling_name(em->pooling())},
                                                  {"demo", cfg_.demo},
                                                  {"version", version()},
                                                  {"load_ms", std::round(load_ms_)},
                                                  {"warmup_ms", std::round(warmup_ms_ * 10) / 10}});
      return;
    }
    model_ = Model::load(file_);
    tok_ = Tokenizer::from_gguf(*file_);
    if (auto tpl = file_->get_string("tokenizer.chat_template")) {
      template_source_ = std::string(*tpl);
      try {
        template_ = ChatTemplate::parse(template_source_);
      } catch (const std::exception& e) {
        observe::log_warn("cannot parse the model's chat template; using ChatML instead",
                          {{"model", cfg_.name}, {"error", e.what()}});
      }
    }
    int n_ctx = opts.n_ctx;
    const int train = model_->hparams().n_ctx_train;
    if (n_ctx <= 0) n_ctx = train > 0 ? std::min(train, 4096) : 4096;
    const int n_par = std::max(1, opts.n_parallel);
    SchedulerOptions so;
    so.max_queue = opts.max_queue;
    so.chunk = opts.chunk;
    std::unique_ptr<Backend> backend = make_context_backend(model_, n_ctx, n_par, opts.n_threads);
    kv_bytes_ = backend->kv_bytes();
    sched_ = std::make_unique<Scheduler>(std::move(backend), *tok_, so);
    load_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const auto tw = std::chrono::steady_clock::now();
    warm_up();  // ready only once it has run a forward pass (first requests do not pay for cold pages)
    warmup_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tw).count();
    loaded_at_ = std::chrono::system_clock::now();
    state_.store(ModelState::Ready, std::memory_order_release);
    observe::log_info("model ready", {{"model", cfg_.name},
                                      {"path", cfg_.path},
                                      {"arch", arch_},
                                      {"type", quant_},
                                      {"parameters", static_cast<int64_t>(parameters_)},
                                      {"n_ctx", n_ctx},
                                      {"parallel", n_par},
                                      {"demo", cfg_.demo},
                                      {"version", version()},
                                      {"load_ms", std::round(load_ms_)},
                                      {"warmup_ms", std::round(warmup_ms_ * 10) / 10}});
  } catch (const std::exception& e) {
    {
      std::lock_guard lk(mu_);
      error_ = e.what();
    }
    stop();  // a model that failed its warm-up frees what it built
    sched_.reset();
    embed_.reset();
    model_.reset();
    file_.reset();
    state_.store(ModelState::Failed, std::memory_order_release);
    observe::log_error("model failed to load", {{"model", cfg_.name}, {"path", cfg_.path}, {"error", e.what()}});
  }
}

ModelPool::~ModelPool() { stop(); }

void ModelPool::add(ModelConfig cfg) {
  std::lock_guard lk(mu_);
  for (const auto& m : models_)
    if (m->name() == cfg.name) throw Error("two models are named '" + cfg.name + "' (use --model NAME=PATH)");
  const bool preload = cfg.preload;
  auto m = std::make_shared<ServedModel>(std::move(cfg));
  if (!preload) m->state_.store(ModelState::Unloaded);
  else m->keep_alive_ = kKeepForever;  // preloaded: stays until a request sets its keep_alive
  models_.push_back(std::move(m));
}

std::vector<std::shared_ptr<ServedModel>> ModelPool::list() const {
  std::lock_guard lk(mu_);
  return models_;
}

void ModelPool::load_async() {
  std::vector<std::shared_ptr<ServedModel>> pre;
  {
    std::lock_guard lk(mu_);
    for (auto& m : models_)
      if (m->preload()) pre.push_back(m);
  }
  loader_ = std::thread([this, pre] {
    for (auto& m : pre) {
      {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        m->budget_bytes_ = budget_estimate(*m);
        if (!make_room(m.get(), m->budget_bytes_)) {  // MAX_LOADED_MODELS / budget reached by earlier preloads
          m->state_.store(ModelState::Unloaded);
          m->keep_alive_ = life_.default_keep_alive;
          continue;
        }
      }
      m->load(opts_);
      std::lock_guard lk(mu_);
      m->last_used_ = std::chrono::steady_clock::now();
      loaded_locked(*m);
      cv_.notify_all();
    }
  });
  reaper_ = std::thread([this] { reaper(); });
}

void ModelPool::wait_loaded() {
  if (loader_.joinable()) loader_.join();
}

std::shared_ptr<ServedModel> ModelPool::find(std::string_view name) const {
  std::lock_guard lk(mu_);
  if (auto m = find_locked(name)) return m;
  if (const ModelAlias* a = name.empty() ? nullptr : find_alias_locked(name)) {  // its heaviest live version
    std::shared_ptr<ServedModel> best;
    int best_w = -1;
    for (const auto& [v, w] : a->versions)
      if (auto m = find_locked(v); m && w > best_w) best = m, best_w = w;
    return best;
  }
  return nullptr;
}

std::shared_ptr<ServedModel> ModelPool::find_locked(std::string_view name) const {
  if (name.empty()) return models_.empty() ? nullptr : models_.front();
  for (const auto& m : models_)
    if (m->name() == name) return m;
  constexpr std::string_view latest = ":latest";
  if (name.size() > latest.size() && name.substr(name.size() - latest.size()) == latest) {
    const std::string_view base = name.substr(0, name.size() - latest.size());
    for (const auto& m : models_)
      if (m->name() == base) return m;
  } else if (name.find(':') == std::string_view::npos) {
    const std::string full = std::string(name) + std::string(latest);
    for (const auto& m : models_)
      if (m->name() == full) return m;
  }
  return nullptr;
}

const ModelAlias* ModelPool::find_alias_locked(std::string_view name) const {
  for (const auto& a : aliases_)
    if (a.name == name) return &a;
  constexpr std::string_view latest = ":latest";
  if (name.size() > latest.size() && name.substr(name.size() - latest.size()) == latest)
    for (const auto& a : aliases_)
      if (a.name == name.substr(0, name.size() - latest.size())) return &a;
  return nullptr;
}

ModelPool::Resolved ModelPool::resolve(std::string_view name) const {
  std::lock_guard lk(mu_);
  Resolved r;
  if (const ModelAlias* a = name.empty() ? nullptr : find_alias_locked(name)) {
    r.served = a->name;
    r.alias = true;
    // Weighted pick among the versions still served.
    std::vector<std::pair<std::shared_ptr<ServedModel>, int>> live;
    int total = 0;
    for (const auto& [v, w] : a->versions)
      if (auto m = find_locked(v); m && w > 0) {
        live.emplace_back(m, w);
        total += w;
      }
    if (total == 0) {
      std::string vs;
      for (const auto& [v, w] : a->versions) vs += (vs.empty() ? "" : ", ") + v + ":" + std::to_string(w);
      throw Error("the alias '" + a->name + "' points at no served model (versions: " + vs + ")", 503);
    }
    thread_local std::mt19937_64 rng{std::random_device{}()};
    int pick = static_cast<int>(std::uniform_int_distribution<int>(0, total - 1)(rng));
    for (auto& [m, w] : live) {
      if (pick < w) {
        r.model = m;
        break;
      }
      pick -= w;
    }
    r.version = r.model->name();
    return r;
  }
  r.model = find_locked(name);
  if (r.model) {
    r.served = r.model->name();
    r.version = r.model->version();
  }
  return r;
}

ModelLease ModelPool::acquire_current(std::shared_ptr<ServedModel>& m) { return *acquire_current_impl(m, true); }

std::optional<ModelLease> ModelPool::try_acquire_current(std::shared_ptr<ServedModel>& m, uint64_t* event) {
  {
    std::lock_guard lk(mu_);
    *event = load_events_;
  }
  return acquire_current_impl(m, false);
}

void ModelPool::watch(uint64_t event, std::function<void()> wake) {
  {
    std::lock_guard lk(mu_);
    if (load_events_ == event) {
      watchers_.push_back(std::move(wake));
      return;
    }
  }
  wake();
}

void ModelPool::wake_watchers(std::unique_lock<std::mutex>& lk) {
  ++load_events_;
  std::vector<std::function<void()>> w;
  w.swap(watchers_);
  lk.unlock();
  for (auto& f : w) f();
}

std::optional<ModelLease> ModelPool::acquire_current_impl(std::shared_ptr<ServedModel>& m, bool wait) {
  for (int tries = 0;; ++tries) {
    if (m->retired()) {
      std::lock_guard lk(mu_);
      if (auto cur = find_locked(m->name()); cur && cur != m) m = cur;
      else throw Error("model '" + m->name() + "' was removed from this server", 404);
    }
    try {
      return acquire_impl(m, wait);
    } catch (const Error&) {
      // Retired while this request waited (a swap finished): go to the new one.
      if (!m->retired() || tries > 3) throw;
    }
  }
}

void ModelPool::set_alias(ModelAlias a) {
  std::lock_guard lk(mu_);
  if (a.name.empty()) throw Error("an alias needs a name", 400);
  for (const auto& m : models_)
    if (m->name() == a.name)
      throw Error("'" + a.name + "' is a model, not an alias; choose another alias name or swap the model", 409);
  if (a.versions.empty()) throw Error("the alias '" + a.name + "' needs at least one version", 400);
  int total = 0;
  for (const auto& [v, w] : a.versions) {
    if (w < 0) throw Error("the alias '" + a.name + "': the weight of '" + v + "' is negative", 400);
    if (!find_locked(v) || find_alias_locked(v))
      throw Error("the alias '" + a.name + "': '" + v + "' is not a model served here", 400);
    total += w;
  }
  if (total <= 0) throw Error("the alias '" + a.name + "': the weights are all 0", 400);
  std::string desc;
  for (const auto& [v, w] : a.versions) desc += (desc.empty() ? "" : ", ") + v + ":" + std::to_string(w);
  observe::log_info("alias", {{"alias", a.name}, {"versions", desc}});
  for (auto& x : aliases_)
    if (x.name == a.name) {
      x = std::move(a);
      return;
    }
  aliases_.push_back(std::move(a));
}

bool ModelPool::remove_alias(const std::string& name) {
  std::lock_guard lk(mu_);
  for (auto it = aliases_.begin(); it != aliases_.end(); ++it)
    if (it->name == name) {
      aliases_.erase(it);
      observe::log_info("alias removed", {{"alias", name}});
      return true;
    }
  return false;
}

std::vector<ModelAlias> ModelPool::aliases() const {
  std::lock_guard lk(mu_);
  return aliases_;
}

void ModelPool::retire_locked(const std::shared_ptr<ServedModel>& m) {
  m->retired_.store(true);
  if (m->state() == ModelState::Ready || m->state() == ModelState::Loading) retired_.push_back(m);
  cv_.notify_all();
}

std::shared_ptr<ServedModel> ModelPool::swap(const std::string& name, ModelConfig cfg) {
  std::shared_ptr<ServedModel> old;
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw Error("the server is stopping", 503);
    for (const auto& m : models_)
      if (m->name() == name) old = m;
    if (!old) throw Error("model '" + name + "' is not served here; load it with /admin/models/load", 404);
    for (const auto& s : swapping_)
      if (s == name) throw Error("a swap of '" + name + "' is already running; retry when it is done", 409);
    swapping_.push_back(name);
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(cfg.path, ec);
    if (!make_room(old.get(), ec ? 0 : static_cast<uint64_t>(bytes)))
      observe::log_warn("swap: the new model is loaded beyond MAX_LOADED_MODELS / the memory budget until the old "
                        "one is unloaded", {{"model", name}});
  }
  struct Done {
    ModelPool* p;
    std::string name;
    ~Done() {
      std::lock_guard lk(p->mu_);
      std::erase(p->swapping_, name);
    }
  } done{this, name};
  cfg.name = name;
  cfg.preload = true;
  auto nm = std::make_shared<ServedModel>(std::move(cfg));
  nm->budget_bytes_ = budget_estimate(*nm);
  observe::log_info("swap: loading the new version while the old one serves",
                    {{"model", name}, {"from", old->path()}, {"to", nm->path()}, {"version", nm->version()}});
  nm->load(opts_);  // loads and warms up; never throws
  if (nm->state() != ModelState::Ready) {
    observe::log_error("swap failed: the old version keeps serving",
                       {{"model", name}, {"path", nm->path()}, {"error", nm->error()}});
    throw Error("swap of '" + name + "' failed, the old version keeps serving: " + nm->error(),
                422);
  }
  std::lock_guard lk(mu_);
  if (stopping_) throw Error("the server is stopping", 503);
  nm->budget_bytes_ = nm->memory_bytes();
  bool placed = false;
  for (auto& m : models_)
    if (m == old) {
      {
        std::scoped_lock ml(old->mu_, nm->mu_);
        nm->keep_alive_ = old->keep_alive_;  // the old one's setting carries over
        nm->expires_at_ = nm->keep_alive_ < std::chrono::milliseconds(0)
                              ? std::chrono::system_clock::time_point::max()
                              : std::chrono::system_clock::now() + nm->keep_alive_;
      }
      nm->last_used_ = std::chrono::steady_clock::now();
      m = nm;  // the switch: new requests get the new model from here on
      placed = true;
    }
  if (!placed) throw Error("model '" + name + "' was removed while its swap ran", 409);
  retire_locked(old);
  observe::log_info("model swapped", {{"model", name}, {"from", old->path()}, {"to", nm->path()},
                                      {"old_version", old->version()}, {"version", nm->version()},
                                      {"in_flight_on_old", old->in_flight()},
                                      {"load_ms", std::round(nm->load_ms())},
                                      {"warmup_ms", std::round(nm->warmup_ms() * 10) / 10}});
  return nm;
}

std::shared_ptr<ServedModel> ModelPool::load_now(const std::string& name, std::chrono::milliseconds keep_alive,
                                                 std::optional<ModelConfig> cfg) {
  std::shared_ptr<ServedModel> m;
  {
    std::unique_lock lk(mu_);
    for (const auto& x : models_)
      if (x->name() == name) m = x;
    if (!m && find_alias_locked(name)) throw Error("'" + name + "' is an alias; load its versions", 409);
    if (!m) {
      if (!cfg) throw Error("model '" + name + "' is not served here; give a 'path' to add it", 404);
      cfg->name = name;
      cfg->preload = false;
      m = std::make_shared<ServedModel>(std::move(*cfg));
      m->state_.store(ModelState::Unloaded);
      models_.push_back(m);
      observe::log_info("model added", {{"model", name}, {"path", m->path()}});
    } else if (cfg && cfg->path != m->path()) {
      throw Error("model '" + name + "' is served from " + m->path() +
                      "; use /admin/models/swap to switch it to another file",
                  409);
    }
  }
  ModelLease lease = acquire(m);  // loads when unloaded (evicting beyond the bounds), waits
  m->set_keep_alive(keep_alive);
  return m;
}

bool ModelPool::remove(const std::string& name) {
  std::lock_guard lk(mu_);
  for (auto it = models_.begin(); it != models_.end(); ++it)
    if ((*it)->name() == name) {
      auto m = *it;
      models_.erase(it);
      retire_locked(m);
      observe::log_info("model removed", {{"model", name}, {"in_flight", m->in_flight()}});
      return true;
    }
  return false;
}

void ModelPool::run_task(std::function<void()> f) {
  std::lock_guard lk(mu_);
  if (stopping_) throw Error("the server is stopping", 503);
  loads_.emplace_back(std::move(f));
}

ModelLease ModelPool::acquire(const std::shared_ptr<ServedModel>& m) { return *acquire_impl(m, true); }

std::optional<ModelLease> ModelPool::acquire_impl(const std::shared_ptr<ServedModel>& m, bool wait) {
  std::unique_lock lk(mu_);
  const auto deadline = std::chrono::steady_clock::now() + life_.load_wait;
  const auto room_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (;;) {
    if (stopping_) throw Error("the server is stopping", 503);
    if (m->retired() && m->state() != ModelState::Ready)  // swapped out and unloaded: never reload it
      throw Error("model '" + m->name() + "' was replaced; retry", 503);
    switch (m->state()) {
      case ModelState::Ready: {
        ++m->in_flight_;
        m->last_used_ = std::chrono::steady_clock::now();
        {
          std::lock_guard ml(m->mu_);
          m->expires_at_ = std::chrono::system_clock::time_point::max();
        }
        ServedModel* raw = m.get();
        return ModelLease(static_cast<void*>(raw), [this, keep = m](void*) { release(keep.get()); });
      }
      case ModelState::Failed:
        throw Error("model '" + m->name() + "' failed to load: " + m->error(), m->error_status());
      case ModelState::Loading:
        if (!m->on_demand_) throw Error("model '" + m->name() + "' is still loading; retry shortly", 503);
        break;
      case ModelState::Unloaded: {
        m->budget_bytes_ = budget_estimate(*m);
        if (!make_room(m.get(), m->budget_bytes_)) {
          // Every loaded model is busy: wait a little for one to be released (a request that just
          // answered releases its model a moment after its response) before giving up.
          if (std::chrono::steady_clock::now() < room_deadline) {
            cv_.wait_until(lk, std::min(room_deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
            continue;
          }
          throw Error("model '" + m->name() + "' cannot be loaded now: the loaded models are all busy and there is no "
                          "room for another (MAX_LOADED_MODELS " + std::to_string(life_.max_loaded) +
                          ", MAX_MODEL_MEMORY " + std::to_string(life_.memory_budget) + " bytes); retry shortly",
                      503);
        }
      }
        start_load(m, lk);
        break;
    }
    if (!wait) return std::nullopt;  // loading on demand: the caller watches for its end
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && m->state() != ModelState::Ready)
      throw Error("model '" + m->name() + "' is still loading; retry shortly", 503);
  }
}

void ModelPool::start_load(const std::shared_ptr<ServedModel>& m, std::unique_lock<std::mutex>&) {
  m->state_.store(ModelState::Loading);
  m->on_demand_ = true;
  {
    std::lock_guard ml(m->mu_);
    m->keep_alive_ = life_.default_keep_alive;
    m->error_.clear();
  }
  loads_.emplace_back([this, m] {
    m->load(opts_);
    std::unique_lock lk(mu_);
    m->on_demand_ = false;
    loaded_locked(*m);
    // No last_used_ here: the request that asked for the load stamps it when
    // it acquires the model, and it may already have run (and a later request
    // on another model too) by the time this thread gets the lock; stamping
    // now would make this model look more recent than it is.
    cv_.notify_all();
    wake_watchers(lk);  // unlocks; requests waiting off-thread try again
  });
}

uint64_t ModelPool::budget_estimate(const ServedModel& m) {
  if (m.memory_bytes() > 0) return m.memory_bytes();  // loaded before: file + KV cache
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(m.path(), ec);
  return ec ? 0 : static_cast<uint64_t>(bytes);
}

void ModelPool::loaded_locked(ServedModel& m) {
  if (m.state() != ModelState::Ready) return;
  // Now the KV cache is known too: count it, and make room for it if that
  // puts the loaded models over the budget.
  m.budget_bytes_ = m.memory_bytes();
  make_room(&m, m.budget_bytes_);
}

bool ModelPool::make_room(const ServedModel* except, uint64_t incoming) {
  if (life_.max_loaded <= 0 && life_.memory_budget == 0) return true;
  for (;;) {
    int loaded = 0;
    uint64_t bytes = 0;
    ServedModel* lru = nullptr;
    for (const auto& x : models_) {
      if (x.get() == except) continue;
      const ModelState s = x->state();
      if (s == ModelState::Ready || s == ModelState::Loading) {
        ++loaded;
        bytes += x->budget_bytes_;
      }
      if (s == ModelState::Ready && x->in_flight_.load() == 0 && (!lru || x->last_used_ < lru->last_used_))
        lru = x.get();
    }
    const bool over_count = life_.max_loaded > 0 && loaded >= life_.max_loaded;
    // A model larger than the budget on its own still loads when nothing else is loaded.
    const bool over_memory = life_.memory_budget > 0 && loaded > 0 && bytes + incoming > life_.memory_budget;
    if (!over_count && !over_memory) return true;
    if (!lru) return false;
    observe::log_info("evicting model '" + lru->name() + "' (least recently used)",
                      {{"model", lru->name()},
                       {"reason", over_count ? "max_loaded_models" : "memory_budget"},
                       {"max_loaded_models", life_.max_loaded},
                       {"loaded_bytes", static_cast<int64_t>(bytes)},
                       {"incoming_bytes", static_cast<int64_t>(incoming)},
                       {"memory_budget", static_cast<int64_t>(life_.memory_budget)}});
    lru->unload();
  }
}

void ModelPool::release(ServedModel* m) {
  std::lock_guard lk(mu_);  // LRU order is by the start of the last use (acquire)
  if (--m->in_flight_ == 0) {
    std::lock_guard ml(m->mu_);
    m->expires_at_ = m->keep_alive_ < std::chrono::milliseconds(0) ? std::chrono::system_clock::time_point::max()
                                                                   : std::chrono::system_clock::now() + m->keep_alive_;
  }
  cv_.notify_all();
}

void ModelPool::unload(const std::shared_ptr<ServedModel>& m) {
  std::unique_lock lk(mu_);
  {
    std::lock_guard ml(m->mu_);
    m->keep_alive_ = std::chrono::milliseconds(0);
    m->expires_at_ = std::chrono::system_clock::now();
  }
  // A request that has just answered lets go of the model a moment later:
  // wait for that (briefly) so the unload is done when the caller answers;
  // a longer request keeps it until it ends (then the reaper unloads it).
  cv_.wait_for(lk, std::chrono::seconds(1), [&] { return m->in_flight_.load() == 0 || stopping_; });
  if (m->state() == ModelState::Ready && m->in_flight_.load() == 0) m->unload();
  cv_.notify_all();
}

void ModelPool::reaper() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    cv_.wait_for(lk, std::chrono::milliseconds(250));
    if (stopping_) break;
    const auto now = std::chrono::system_clock::now();
    for (auto& m : models_) {
      if (m->state() != ModelState::Ready || m->in_flight_.load() != 0) continue;
      std::chrono::system_clock::time_point exp;
      {
        std::lock_guard ml(m->mu_);
        exp = m->expires_at_;
      }
      if (exp <= now) m->unload();
    }
    // Swapped-out / removed models: unloaded once their last request is done.
    for (auto it = retired_.begin(); it != retired_.end();) {
      auto& m = *it;
      if (m->in_flight_.load() != 0 || m->state() == ModelState::Loading) {
        ++it;
        continue;
      }
      if (m->state() == ModelState::Ready) {
        observe::log_info("unloading the replaced model now that its requests are done",
                          {{"model", m->name()}, {"path", m->path()}, {"version", m->version()}});
        m->unload();
      }
      it = retired_.erase(it);
    }
  }
}

void ModelPool::stop() {
  {
    std::unique_lock lk(mu_);
    stopping_ = true;
    cv_.notify_all();
    wake_watchers(lk);  // waiting requests try again and get 503 "stopping"
  }
  if (reaper_.joinable()) reaper_.join();
  wait_loaded();
  std::vector<std::thread> loads;
  {
    std::lock_guard lk(mu_);
    loads.swap(loads_);
  }
  for (auto& t : loads)
    if (t.joinable()) t.join();
  for (auto& m : list()) m->stop();
  std::vector<std::shared_ptr<ServedModel>> retired;
  {
    std::lock_guard lk(mu_);
    retired.swap(retired_);
  }
  for (auto& m : retired) m->stop();
}

}  // namespace lmhost
