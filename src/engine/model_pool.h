// The models a server hosts: each is loaded on a background thread (the HTTP
// listener is up meanwhile and reports "loading"), then gets its tokenizer,
// parsed chat template and its own Scheduler (engine thread + KV cache).
#pragma once

#include <atomic>
#include <chrono>
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

enum class ModelState { Loading, Ready, Failed };
const char* model_state_name(ModelState s);  // "loading", "ready", "error"

struct ModelConfig {
  std::string name;   // served name ("demo", "qwen2", ...)
  std::string path;   // GGUF file
  bool demo = false;  // synthesized, random weights
  // Runs on the loader thread before the file is opened (e.g. synthesize the demo model).
  std::function<void(const std::string& path)> prepare;
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

  // Loads synchronously (called by ModelPool's loader thread). Never throws:
  // failures end in state Failed with error().
  void load(const EngineOptions& opts);
  void stop();  // stops the scheduler (in-flight requests end Cancelled)

 private:
  ModelConfig cfg_;
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

class ModelPool {
 public:
  explicit ModelPool(EngineOptions opts) : opts_(opts) {}
  ~ModelPool();  // stop()

  // Throws Error when the name is taken.
  void add(ModelConfig cfg);
  // Starts loading every model on a background thread (in order).
  void load_async();
  void wait_loaded();  // joins the loader (tests)

  // By served name; "name:latest" matches "name". Empty name: the only model
  // (or the first one). nullptr when unknown.
  std::shared_ptr<ServedModel> find(std::string_view name) const;
  std::vector<std::shared_ptr<ServedModel>> list() const { return models_; }
  const EngineOptions& options() const { return opts_; }
  void stop();

 private:
  EngineOptions opts_;
  std::vector<std::shared_ptr<ServedModel>> models_;
  std::thread loader_;
};

}  // namespace lmhost
