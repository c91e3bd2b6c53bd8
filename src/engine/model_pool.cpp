#include "engine/model_pool.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "gguf/gguf.h"
#include "model/model.h"
#include "util/error.h"

namespace lmhost {

const char* model_state_name(ModelState s) {
  switch (s) {
    case ModelState::Loading: return "loading";
    case ModelState::Ready: return "ready";
    case ModelState::Failed: return "error";
  }
  return "";
}

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

void ServedModel::load(const EngineOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    if (cfg_.prepare) cfg_.prepare(cfg_.path);
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
      std::fprintf(stderr, "lmhost: embedding model '%s' ready (%s, %s, %.1f M parameters, ctx %d, %s pooling) in %.0f ms\n",
                   cfg_.name.c_str(), arch_.c_str(), quant_.c_str(), parameters_ / 1e6, em->n_ctx(),
                   pooling_name(em->pooling()), load_ms_);
      return;
    }
    model_ = Model::load(file_);
    tok_ = Tokenizer::from_gguf(*file_);
    if (auto tpl = file_->get_string("tokenizer.chat_template")) {
      template_source_ = std::string(*tpl);
      try {
        template_ = ChatTemplate::parse(template_source_);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "lmhost: model '%s': cannot parse its chat template (%s); using ChatML instead\n",
                     cfg_.name.c_str(), e.what());
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
    std::fprintf(stderr, "lmhost: model '%s' ready (%s, %s, %.1f M parameters, ctx %d x %d sequences) in %.0f ms\n",
                 cfg_.name.c_str(), arch_.c_str(), quant_.c_str(), parameters_ / 1e6, n_ctx, n_par, load_ms_);
  } catch (const std::exception& e) {
    {
      std::lock_guard lk(mu_);
      error_ = e.what();
    }
    state_.store(ModelState::Failed, std::memory_order_release);
    std::fprintf(stderr, "lmhost: model '%s' failed to load from %s: %s\n", cfg_.name.c_str(), cfg_.path.c_str(),
                 e.what());
  }
}

ModelPool::~ModelPool() { stop(); }

void ModelPool::add(ModelConfig cfg) {
  if (loader_.joinable()) throw Error("models are already loading", 500);
  for (const auto& m : models_)
    if (m->name() == cfg.name) throw Error("two models are named '" + cfg.name + "' (use --model NAME=PATH)");
  models_.push_back(std::make_shared<ServedModel>(std::move(cfg)));
}

void ModelPool::load_async() {
  loader_ = std::thread([this] {
    for (auto& m : models_) m->load(opts_);
  });
}

void ModelPool::wait_loaded() {
  if (loader_.joinable()) loader_.join();
}

std::shared_ptr<ServedModel> ModelPool::find(std::string_view name) const {
  if (name.empty()) return models_.empty() ? nullptr : models_.front();
  for (const auto& m : models_)
    if (m->name() == name) return m;
  constexpr std::string_view latest = ":latest";
  if (name.size() > latest.size() && name.substr(name.size() - latest.size()) == latest) {
    const std::string_view base = name.substr(0, name.size() - latest.size());
    for (const auto& m : models_)
      if (m->name() == base) return m;
  }
  return nullptr;
}

void ModelPool::stop() {
  wait_loaded();
  for (auto& m : models_) m->stop();
}

}  // namespace lmhost
