// Backend over model::Context: the engine thread is its only user.
#include <vector>

#include "engine/backend.h"
#include "model/model.h"

namespace lmhost {
namespace {

class ContextBackend final : public Backend {
 public:
  ContextBackend(std::shared_ptr<const Model> model, int n_ctx, int n_seq, int n_threads)
      : ctx_(std::move(model), n_ctx, n_seq, n_threads) {}
  int n_seq() const override { return ctx_.n_seq(); }
  int n_ctx_per_seq() const override { return ctx_.n_ctx(); }
  int n_vocab() const override { return ctx_.n_vocab(); }
  std::span<const float> forward(std::span<const SeqToken> batch) override {
    entries_.resize(batch.size());
    for (size_t i = 0; i < batch.size(); ++i)
      entries_[i] = BatchEntry{batch[i].token, batch[i].pos, batch[i].seq, batch[i].logits};
    return ctx_.forward(entries_);
  }
  void clear_seq(int seq) override { ctx_.clear_seq(seq); }
  void truncate_seq(int seq, int n_keep) override { ctx_.truncate_seq(seq, n_keep); }
  size_t kv_bytes() const override { return ctx_.kv_bytes(); }

 private:
  Context ctx_;
  std::vector<BatchEntry> entries_;
};

}  // namespace

std::unique_ptr<Backend> make_context_backend(std::shared_ptr<const Model> model, int n_ctx_per_seq, int n_seq,
                                              int n_threads) {
  return std::make_unique<ContextBackend>(std::move(model), n_ctx_per_seq, n_seq, n_threads);
}

}  // namespace lmhost
