// The models a server hosts: each is loaded on a background thread (the HTTP
// listener is up meanwhile and reports "loading"), then gets its tokenizer,
// parsed chat template and its own Scheduler (engine thread + KV cache).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/embed_batcher.h"
#include "engine/scheduler.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace lmhost {

namespace gguf { class File; }
class Model;

struct EngineOptions {
  int n_parallel = 4;   // sequences decoded together (slots)
  int n_ctx = 0;        // context per sequence; 0: min(the model's training context, 4096)
  int n_threads = 0;    // 0: physical cores
  int max_queue = 64;   // waiting requests per model before 503
  int chunk = 256;      // prompt tokens per step
  EmbedOptions embed;   // embedding models (bert, nomic-bert): dynamic batching
};

// Unloaded: known and listed, loaded on its next use (keep_alive expired, evicted, or never preloaded).
enum class ModelState { Loading, Ready, Failed, Unloaded };
const char* model_state_name(ModelState s);  // "loading", "ready", "error", "unloaded"

// keep_alive as Ollama reads it: a duration string ("5m", "30s", "1h30m",
// "500ms"), a number of seconds, 0 = unload at once, negative = forever.
// Error(400) naming the field otherwise.
std::chrono::milliseconds parse_keep_alive(const std::string& text);
constexpr std::chrono::milliseconds kKeepForever{-1};

// SHA-256 of a file, lower-case hex (streamed; OpenSSL).
std::string sha256_file(const std::string& path);

struct ModelConfig {
  std::string name;   // served name ("demo", "qwen2", ...)
  std::string path;   // GGUF file
  bool demo = false;  // synthesized, random weights
  // Runs on the loader thread before the file is opened (e.g. synthesize the demo model).
  std::function<void(const std::string& path)> prepare;
  // Expected SHA-256 (lower-case hex) of the file: checked before its first
  // load (the verdict is cached per path, size and mtime); a mismatch fails the model.
  std::string sha256;
  bool preload = true;  // loaded at start-up; otherwise on first use
  std::string source;   // "file", "ollama" (where it was found; informational)
};

class ServedModel {
 public:
  explicit ServedModel(ModelConfig cfg) : cfg_(std::move(cfg)) {}
  ~ServedModel();

  const std::string& name() const { return cfg_.name; }
  const std::string& path() const { return cfg_.path; }
  bool demo() const { return cfg_.demo; }
  ModelState state() const { return state_.load(std::memory_order_acquire); }
  std::string error() const;

  // Valid once state() == Ready.
  const Tokenizer& tokenizer() const { return *tok_; }
  // Generation models only: Error(400) for an embedding model.
  Scheduler& scheduler() { return sched_ ? *sched_ : no_scheduler(); }
  const Scheduler& scheduler() const { return sched_ ? *sched_ : no_scheduler(); }
  // Embedding models (arch bert / nomic-bert): no scheduler; an EmbedBatcher instead.
  bool is_embedding() const { return embed_ != nullptr; }
  EmbedBatcher& embedder() const { return *embed_; }
  std::shared_ptr<const EmbeddingModel> embedding_model() const { return embed_ ? embed_->model_ptr() : nullptr; }
  const gguf::File& file() const { return *file_; }
  std::shared_ptr<const Model> model() const { return model_; }
  // The parsed tokenizer.chat_template (nullopt when absent or unparsable).
  const std::optional<ChatTemplate>& chat_template() const { return template_; }
  const std::string& chat_template_source() const { return template_source_; }
  std::string architecture() const { return arch_; }
  uint64_t file_bytes() const { return file_bytes_; }
  uint64_t parameters() const { return parameters_; }
  std::string quantization() const { return quant_; }
  std::chrono::system_clock::time_point loaded_at() const { return loaded_at_; }
  std::chrono::system_clock::time_point modified_at() const { return modified_at_; }
  double load_ms() const { return load_ms_; }
  const std::string& sha256() const { return cfg_.sha256; }
  const std::string& source() const { return cfg_.source; }
  bool preload() const { return cfg_.preload; }
  // Ready, or Unloaded (loads on use): counts as available for /health and /ready.
  bool available() const {
    const ModelState s = state();
    return s == ModelState::Ready || s == ModelState::Unloaded;
  }
  // HTTP status for a Failed model (503, or 500 for a checksum mismatch).
  int error_status() const { return error_status_; }

  // Lifecycle (ModelPool): requests holding the model, last use, keep_alive.
  int in_flight() const { return in_flight_.load(); }
  // When it unloads if idle (time_point::max(): never); meaningful while Ready.
  std::chrono::system_clock::time_point expires_at() const;
  // The keep_alive applied when the last request using it ends (-1: forever).
  void set_keep_alive(std::chrono::milliseconds ka);
  std::chrono::milliseconds keep_alive() const;

  // Loads synchronously (called by ModelPool's loader thread). Never throws:
  // failures end in state Failed with error().
  void load(const EngineOptions& opts);
  void stop();  // stops the scheduler (in-flight requests end Cancelled)
  // Frees the weights, tokenizer and scheduler; state Unloaded (ModelPool only, when idle).
  void unload();

 private:
  friend class ModelPool;
  ModelConfig cfg_;
  int error_status_ = 503;
  std::atomic<int> in_flight_{0};
  std::chrono::steady_clock::time_point last_used_{};
  std::chrono::system_clock::time_point expires_at_ = std::chrono::system_clock::time_point::max();
  std::chrono::milliseconds keep_alive_{kKeepForever};
  bool on_demand_ = false;  // being loaded for a request (requests wait instead of 503)
  std::atomic<ModelState> state_{ModelState::Loading};
  mutable std::mutex mu_;
  std::string error_;
  std::shared_ptr<gguf::File> file_;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Scheduler> sched_;
  std::shared_ptr<EmbedBatcher> embed_;
  [[noreturn]] Scheduler& no_scheduler() const;
  std::optional<ChatTemplate> template_;
  std::string template_source_;
  std::string arch_, quant_;
  uint64_t file_bytes_ = 0, parameters_ = 0;
  double load_ms_ = 0;
  std::chrono::system_clock::time_point loaded_at_{}, modified_at_{};
};

struct LifecycleOptions {
  // keep_alive of a model loaded on demand (KEEP_ALIVE / OLLAMA_KEEP_ALIVE;
  // Ollama's default 5m). Preloaded models stay until a request sets theirs.
  std::chrono::milliseconds default_keep_alive{std::chrono::minutes(5)};
  int max_loaded = 0;  // MAX_LOADED_MODELS: loaded (or loading) models at most; 0: no bound
  std::chrono::milliseconds load_wait{std::chrono::minutes(10)};  // a request waits this long for an on-demand load
};

// A model held by a request: released (keep_alive timer starts) when the last copy goes.
using ModelLease = std::shared_ptr<void>;

class ModelPool {
 public:
  explicit ModelPool(EngineOptions opts, LifecycleOptions life = {}) : opts_(opts), life_(life) {}
  ~ModelPool();  // stop()

  // Throws Error when the name is taken.
  void add(ModelConfig cfg);
  // Starts loading the preload models on a background thread (in order) and
  // the keep_alive / eviction thread; the others load on first use.
  void load_async();
  void wait_loaded();  // joins the loader (tests)

  // By served name; "name:latest" matches "name" and "name" matches
  // "name:latest". Empty name: the only model (or the first one). nullptr when unknown.
  std::shared_ptr<ServedModel> find(std::string_view name) const;
  std::vector<std::shared_ptr<ServedModel>> list() const;
  const EngineOptions& options() const { return opts_; }
  const LifecycleOptions& lifecycle() const { return life_; }
  void stop();

  // For a request: loads the model when it is Unloaded (evicting the least
  // recently used idle model beyond max_loaded) and waits for it; returns a
  // lease that keeps it loaded until released. Throws Error 503 while a
  // preload is still loading, when it failed (error_status()), or when every
  // loaded model is busy and none can be evicted.
  ModelLease acquire(const std::shared_ptr<ServedModel>& m);
  // Unloads now when idle, else as soon as its last request ends (keep_alive 0).
  void unload(const std::shared_ptr<ServedModel>& m);

 private:
  void release(ServedModel* m);
  void start_load(const std::shared_ptr<ServedModel>& m, std::unique_lock<std::mutex>& lk);  // mu_ held
  bool make_room(const ServedModel* except);  // mu_ held: evicts LRU idle models beyond max_loaded
  void reaper();
  EngineOptions opts_;
  LifecycleOptions life_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // state changes, releases
  std::vector<std::shared_ptr<ServedModel>> models_;
  std::vector<std::thread> loads_;  // on-demand loads and unloads
  std::thread loader_, reaper_;
  bool stopping_ = false;
};

}  // namespace lmhost
