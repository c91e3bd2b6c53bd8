// Decoder-only transformer models (llama family: llama, qwen2) over the
// memory-mapped GGUF file, and the per-thread evaluation Context with its KV
// cache.
//
//   auto file = gguf::File::open(path);
//   auto model = Model::load(file);           // immutable, shareable
//   Context ctx(model, /*n_ctx=*/2048, /*n_seq=*/4);
//   std::vector<BatchEntry> batch = {{tok, pos, seq, /*logits=*/true}, ...};
//   std::span<const float> logits = ctx.forward(batch);  // n_vocab per entry with logits
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "ops/decode.h"
#include "ops/ops.h"
#include "ops/thread_pool.h"
#include "tensor/tensor.h"
#include "util/anon_memory.h"

namespace lmhost {

using Token = int32_t;

enum class Arch { Llama, Qwen2 };

struct HParams {
  std::string arch_name;  // general.architecture
  Arch arch = Arch::Llama;
  int n_ctx_train = 0;    // {arch}.context_length
  int n_embd = 0;         // {arch}.embedding_length
  int n_layer = 0;        // {arch}.block_count
  int n_ff = 0;           // {arch}.feed_forward_length
  int n_head = 0;         // {arch}.attention.head_count
  int n_head_kv = 0;      // {arch}.attention.head_count_kv (default n_head)
  int head_dim_k = 0;     // {arch}.attention.key_length (default n_embd / n_head)
  int head_dim_v = 0;     // {arch}.attention.value_length (default n_embd / n_head)
  int n_vocab = 0;        // rows of token_embd.weight
  float rms_eps = 1e-5f;  // {arch}.attention.layer_norm_rms_epsilon
  // Rope: {arch}.rope.dimension_count, .freq_base, .scaling.{type,factor,...}
  ops::RopeStyle rope_style = ops::RopeStyle::Normal;
  int n_rot = 0;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // linear scaling = 1 / rope.scaling.factor
  std::string rope_scaling_type; // "", "none", "linear", "llama3"
  float rope_scaling_factor = 1.0f;
  float rope_low_freq_factor = 1.0f, rope_high_freq_factor = 4.0f;
  int rope_orig_ctx = 0;         // rope.scaling.original_context_length

  int n_embd_k_gqa() const { return n_head_kv * head_dim_k; }
  int n_embd_v_gqa() const { return n_head_kv * head_dim_v; }

  // Reads and checks the metadata; throws lmhost::Error naming a missing or
  // invalid key. n_vocab is filled by Model::load from the embedding table.
  static HParams from_gguf(const gguf::File& file);
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;   // n_embd
  TensorView wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;            // empty when the model has no biases
  TensorView ffn_gate, ffn_up, ffn_down;
};

class Model {
 public:
  // Binds every weight by name and checks its shape and type; throws
  // lmhost::Error naming the tensor that is missing or wrong.
  // pack: repack the matrices that have a packed layout on this CPU (see
  // packed_bytes); the default is on unless LMHOST_PACK=0.
  static std::shared_ptr<Model> load(std::shared_ptr<gguf::File> file, bool pack = pack_by_default());
  static bool pack_by_default();

  const HParams& hparams() const { return hp_; }
  const gguf::File& file() const { return *file_; }
  std::shared_ptr<gguf::File> file_ptr() const { return file_; }
  const TensorView& token_embd() const { return token_embd_; }
  const TensorView& output() const { return output_; }  // token_embd when tied
  bool tied_output() const { return tied_output_; }
  const std::vector<float>& output_norm() const { return output_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const ops::RopeConfig& rope_config() const { return rope_; }
  size_t weight_bytes() const;  // bytes of all bound tensors
  // Bytes of the matrices repacked at load for the decode kernels
  // (tensor/packed.h; anonymous memory, their file pages released). 0 with
  // LMHOST_PACK=0 or on CPUs without the packed kernels.
  size_t packed_bytes() const { return packed_bytes_; }

 private:
  Model() = default;
  void pack_weights();
  std::shared_ptr<gguf::File> file_;
  AnonMemory packed_;
  size_t packed_bytes_ = 0;
  HParams hp_;
  TensorView token_embd_, output_;
  bool tied_output_ = false;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  ops::RopeConfig rope_;
};

struct BatchEntry {
  Token token = 0;
  int32_t pos = 0;   // must equal the sequence's current length (entries of a sequence in order)
  int32_t seq = 0;   // in [0, n_seq)
  bool logits = false;
};

class Context {
 public:
  // n_ctx: cache positions per sequence; n_threads <= 0: physical cores.
  // kv_type: F16 (default, as llama.cpp) or F32.
  Context(std::shared_ptr<const Model> model, int n_ctx, int n_seq = 1, int n_threads = 0,
          DType kv_type = DType::F16);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Evaluates entries of one or several sequences. A sequence's entries must
  // continue its cache: positions seq_len(seq), seq_len(seq)+1, ... in batch
  // order. Returns n_vocab logits for each entry with logits=true, in batch
  // order; the span stays valid until the next forward(). Throws
  // lmhost::Error (and changes nothing) on an invalid batch.
  std::span<const float> forward(std::span<const BatchEntry> batch);

  void clear_seq(int seq);
  void truncate_seq(int seq, int n_keep);  // keep positions [0, n_keep)
  int seq_len(int seq) const;
  void clear();  // all sequences

  int n_ctx() const { return n_ctx_; }
  int n_seq() const { return n_seq_; }
  int n_vocab() const { return model_->hparams().n_vocab; }
  int n_threads() const { return pool_.n_threads(); }
  DType kv_type() const { return kv_type_; }
  const Model& model() const { return *model_; }
  std::shared_ptr<const Model> model_ptr() const { return model_; }
  ops::ThreadPool& pool() { return pool_; }
  size_t kv_bytes() const { return kv_k_.size() + kv_v_.size(); }

  // Largest number of entries evaluated in one pass (bigger batches are
  // split internally; results are the same).
  static constexpr int kMaxMicroBatch = 512;

 private:
  void check_seq(int seq, const char* what) const;
  void forward_micro(std::span<const BatchEntry> batch, float* logits_out);
  // One entry (decode): matmuls split into row chunks on the pool, the
  // per-token work folded into the chunks (context.cpp).
  void forward_one(const BatchEntry& e, float* logits_out);
  uint8_t* k_at(int layer, int seq, int pos);
  uint8_t* v_at(int layer, int seq, int pos);
  ops::KVView kv_view(int layer, int seq);

  std::shared_ptr<const Model> model_;
  int n_ctx_ = 0, n_seq_ = 0;
  DType kv_type_ = DType::F16;
  size_t kv_elem_ = 2;
  ops::ThreadPool pool_;
  ops::Rope rope_;
  std::vector<uint8_t> kv_k_, kv_v_;  // [layer][seq][pos][n_embd_{k,v}_gqa]
  std::vector<int32_t> seq_len_;
  std::vector<float> logits_;
  // Scratch (grown on demand).
  std::vector<float> x_, h_, q_, k_, v_, att_, o_, g_, u_, outrows_, scores_;
  ops::DecodeAct act_in_, act_att_, act_ffn_, act_down_;  // forward_one's prepared matmul inputs
};

}  // namespace lmhost
