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
  // Label of this file's version (X-Lmhost-Model-Version, the request log);
  // empty: the file's name without .gguf (an Ollama blob: "sha256-" + 12 hex).
  std::string version;
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
  // The KV cache its context allocated (n_ctx x parallel sequences), 0 for an embedding model.
  uint64_t kv_bytes() const { return kv_bytes_; }
  // What it holds in memory when loaded: the mapped file plus its KV cache
  // (what /api/ps reports as size and the memory budget counts).
  uint64_t memory_bytes() const { return file_bytes_ + kv_bytes_; }
  uint64_t parameters() const { return parameters_; }
  std::string quantization() const { return quant_; }
  std::chrono::system_clock::time_point loaded_at() const { return loaded_at_; }
  std::chrono::system_clock::time_point modified_at() const { return modified_at_; }
  double load_ms() const { return load_ms_; }
  // The warm-up run after loading (a one-token generation, or one embedding), in ms.
  double warmup_ms() const { return warmup_ms_; }
  // The version label (ModelConfig::version, else derived from the file name).
  std::string version() const;
  // Replaced by a swap or removed by a reload: it finishes the requests it
  // holds, is unloaded once idle and is never handed out again.
  bool retired() const { return retired_.load(); }
  const ModelConfig& config() const { return cfg_; }
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

  // Loading because a request asked for it (not a start-up preload).
  bool loading_on_demand() const { return state() == ModelState::Loading && on_demand_.load(); }

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
  std::atomic<bool> on_demand_{false};  // being loaded for a request (requests wait instead of 503)
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
  uint64_t file_bytes_ = 0, parameters_ = 0, kv_bytes_ = 0;
  double load_ms_ = 0, warmup_ms_ = 0;
  std::chrono::system_clock::time_point loaded_at_{}, modified_at_{};
  std::atomic<bool> retired_{false};
  // Counted against the memory budget while loading / loaded: memory_bytes()
  // once known (after a load), the file size before the first load.
  uint64_t budget_bytes_ = 0;
  void warm_up();  // throws when the model cannot run
};

struct LifecycleOptions {
  // keep_alive of a model loaded on demand (KEEP_ALIVE / OLLAMA_KEEP_ALIVE;
  // Ollama's default 5m). Preloaded models stay until a request sets theirs.
  std::chrono::milliseconds default_keep_alive{std::chrono::minutes(5)};
  int max_loaded = 0;  // MAX_LOADED_MODELS: loaded (or loading) models at most; 0: no bound
  std::chrono::milliseconds load_wait{std::chrono::minutes(10)};  // a request waits this long for an on-demand load
  // MAX_MODEL_MEMORY: bytes of model files loaded at once (0: no bound); the
  // least recently used idle models are unloaded to make room for another.
  uint64_t memory_budget = 0;
};

// A served name that points at weighted versions (canary releases): each
// request picks one of the models by weight (weights need not sum to 100).
struct ModelAlias {
  std::string name;
  std::vector<std::pair<std::string, int>> versions;  // (model name, weight >= 0)
};

// "8GiB", "512MiB", "2GB", "1000000" (bytes) -> bytes; 0 for "" or "0".
// Error(400) naming the text otherwise.
uint64_t parse_bytes(const std::string& text);

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
  // Unloads now when idle (waiting up to 1 s for requests that are finishing),
  // else as soon as its last request ends (keep_alive 0).
  void unload(const std::shared_ptr<ServedModel>& m);

  // ---- names, aliases, hot swap (admin API, SIGHUP reload) ----

  // What a request's model name resolves to: an alias picks one of its
  // versions by weight. model is nullptr for an unknown name; Error(503) for
  // an alias whose versions are all gone.
  struct Resolved {
    std::shared_ptr<ServedModel> model;
    std::string served;   // the name asked for: the alias, else the model's name
    std::string version;  // the version that answers: an alias's model name, else the model's version()
    bool alias = false;
  };
  Resolved resolve(std::string_view name) const;
  // acquire() for a model found a moment ago: when a swap retired it in
  // between, m is pointed at its replacement first (requests never fail on a swap).
  ModelLease acquire_current(std::shared_ptr<ServedModel>& m);
  // acquire_current() for a request on an HTTP I/O thread, which must not
  // sit in a load: the lease when the model is ready now; nullopt when it is
  // loading on demand (this call starts the load of an unloaded model) — then
  // watch(*event, ...) and try again when woken. Throws as acquire() does.
  std::optional<ModelLease> try_acquire_current(std::shared_ptr<ServedModel>& m, uint64_t* event);
  // Calls wake() once, from any thread, when an on-demand load has finished
  // (or the pool stops) after try_acquire_current() returned `event`; at once
  // when that has already happened.
  void watch(uint64_t event, std::function<void()> wake);

  // Replaces (or adds) an alias; Error(400) for an unknown version, a name
  // taken by a model, a negative weight or all weights 0.
  void set_alias(ModelAlias a);
  bool remove_alias(const std::string& name);
  std::vector<ModelAlias> aliases() const;

  // Loads (and warms) cfg as a new model while the current model of that name
  // keeps serving, then switches the name to it atomically; requests in flight
  // on the old model finish on it, and it is unloaded once idle. Blocks until
  // done. Error(404) for an unknown name, Error(409) while another swap of it
  // runs, the load error (old model untouched) when the new one fails.
  std::shared_ptr<ServedModel> swap(const std::string& name, ModelConfig cfg);
  // Loads a known model now (keep_alive: how long it stays when idle) and
  // waits; Error when it fails. Adds cfg first when its name is new.
  std::shared_ptr<ServedModel> load_now(const std::string& name, std::chrono::milliseconds keep_alive,
                                        std::optional<ModelConfig> cfg = std::nullopt);
  // Takes the name out of the pool: requests on it finish, then it unloads.
  bool remove(const std::string& name);
  // Runs f on a thread the pool joins at stop() (slow admin work off the I/O threads).
  void run_task(std::function<void()> f);

 private:
  void release(ServedModel* m);
  // acquire() without waiting for an on-demand load when wait is false (nullopt then).
  std::optional<ModelLease> acquire_impl(const std::shared_ptr<ServedModel>& m, bool wait);
  std::optional<ModelLease> acquire_current_impl(std::shared_ptr<ServedModel>& m, bool wait);
  void wake_watchers(std::unique_lock<std::mutex>& lk);  // mu_ held; unlocks it
  void start_load(const std::shared_ptr<ServedModel>& m, std::unique_lock<std::mutex>& lk);  // mu_ held
  // mu_ held: evicts LRU idle models beyond max_loaded or the memory budget (incoming: bytes about to load).
  bool make_room(const ServedModel* except, uint64_t incoming = 0);
  static uint64_t budget_estimate(const ServedModel& m);  // before a load
  void loaded_locked(ServedModel& m);                     // mu_ held: after a load, counts the KV cache
  std::shared_ptr<ServedModel> find_locked(std::string_view name) const;
  const ModelAlias* find_alias_locked(std::string_view name) const;
  void retire_locked(const std::shared_ptr<ServedModel>& m);  // unloaded by the reaper once idle
  void reaper();
  EngineOptions opts_;
  LifecycleOptions life_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // state changes, releases
  std::vector<std::shared_ptr<ServedModel>> models_;
  std::vector<ModelAlias> aliases_;
  std::vector<std::shared_ptr<ServedModel>> retired_;  // swapped out / removed, still finishing requests
  std::vector<std::string> swapping_;                  // names with a swap in progress
  std::vector<std::thread> loads_;  // on-demand loads and unloads
  uint64_t load_events_ = 0;        // on-demand loads finished (and stop())
  std::vector<std::function<void()>> watchers_;
  std::thread loader_, reaper_;
  bool stopping_ = false;
};

}  // namespace lmhost
