// What the scheduler needs from a model: a multi-sequence context with a KV
// cache. ContextBackend (engine/context_backend.cpp) adapts model::Context;
// tests may plug in a fake.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "tokenizer/tokenizer.h"

namespace lmhost {

class Model;

struct SeqToken {
  Token token;
  int32_t pos;
  int32_t seq;
  bool logits;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int n_seq() const = 0;          // sequences (slots) the cache holds
  virtual int n_ctx_per_seq() const = 0;  // positions available to each sequence
  virtual int n_vocab() const = 0;
  // n_vocab logits per entry with logits=true, in batch order; valid until the next call.
  virtual std::span<const float> forward(std::span<const SeqToken> batch) = 0;
  virtual void clear_seq(int seq) = 0;
  virtual void truncate_seq(int seq, int n_keep) = 0;
  // Bytes of its KV cache (what it holds beyond the model's weights); 0 when unknown.
  virtual size_t kv_bytes() const { return 0; }
};

// A Backend over the model's own Context (n_seq sequences of n_ctx_per_seq positions each).
std::unique_ptr<Backend> make_context_backend(std::shared_ptr<const Model> model, int n_ctx_per_seq, int n_seq,
                                              int n_threads);

}  // namespace lmhost
