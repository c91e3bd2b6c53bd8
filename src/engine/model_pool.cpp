#include "engine/model_pool.h"

#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <openssl/evp.h>
#include <filesystem>
#include <map>

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

ServedModel::~ServedModel() { stop(); }

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
                                                  {"load_ms", std::round(load_ms_)}});
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
    sched_ = std::make_unique<Scheduler>(make_context_backend(model_, n_ctx, n_par, opts.n_threads), *tok_, so);
    load_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
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
                                      {"load_ms", std::round(load_ms_)}});
  } catch (const std::exception& e) {
    {
      std::lock_guard lk(mu_);
      error_ = e.what();
    }
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
        if (!make_room(m.get())) {  // MAX_LOADED_MODELS reached by earlier preloads
          m->state_.store(ModelState::Unloaded);
          m->keep_alive_ = life_.default_keep_alive;
          continue;
        }
      }
      m->load(opts_);
      std::lock_guard lk(mu_);
      m->last_used_ = std::chrono::steady_clock::now();
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

ModelLease ModelPool::acquire(const std::shared_ptr<ServedModel>& m) {
  std::unique_lock lk(mu_);
  const auto deadline = std::chrono::steady_clock::now() + life_.load_wait;
  for (;;) {
    if (stopping_) throw Error("the server is stopping", 503);
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
      case ModelState::Unloaded:
        if (!make_room(m.get()))
          throw Error("model '" + m->name() + "' cannot be loaded now: " + std::to_string(life_.max_loaded) +
                          " models are loaded (MAX_LOADED_MODELS) and all are busy; retry shortly",
                      503);
        start_load(m, lk);
        break;
    }
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
    std::lock_guard lk(mu_);
    m->on_demand_ = false;
    // No last_used_ here: the request that asked for the load stamps it when
    // it acquires the model, and it may already have run (and a later request
    // on another model too) by the time this thread gets the lock; stamping
    // now would make this model look more recent than it is.
    cv_.notify_all();
  });
}

bool ModelPool::make_room(const ServedModel* except) {
  if (life_.max_loaded <= 0) return true;
  for (;;) {
    int loaded = 0;
    ServedModel* lru = nullptr;
    for (const auto& x : models_) {
      if (x.get() == except) continue;
      const ModelState s = x->state();
      if (s == ModelState::Ready || s == ModelState::Loading) ++loaded;
      if (s == ModelState::Ready && x->in_flight_.load() == 0 && (!lru || x->last_used_ < lru->last_used_))
        lru = x.get();
    }
    if (loaded < life_.max_loaded) return true;
    if (!lru) return false;
    observe::log_info("evicting model '" + lru->name() + "' (least recently used)",
                      {{"model", lru->name()}, {"max_loaded_models", life_.max_loaded}});
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
  std::lock_guard lk(mu_);
  {
    std::lock_guard ml(m->mu_);
    m->keep_alive_ = std::chrono::milliseconds(0);
    m->expires_at_ = std::chrono::system_clock::now();
  }
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
  }
}

void ModelPool::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_all();
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
}

}  // namespace lmhost
