// Encoder-only embedding models over a memory-mapped GGUF file:
//   "bert"        (MiniLM, bge, e5, ...): token + position + token-type
//                 embeddings, embedding LayerNorm, post-norm encoder layers
//                 (attention with biases, GELU FFN with biases)
//   "nomic-bert"  (nomic-embed-text): fused QKV, NeoX rotary embeddings, no
//                 position table, SwiGLU FFN
// Attention is bidirectional within each sequence. The output of a sequence
// is pooled ({arch}.pooling_type: mean / CLS / last) and L2-normalised.
//
//   auto model = EmbeddingModel::load(gguf::File::open(path));
//   ops::ThreadPool pool(n_threads);
//   auto vecs = model->embed({tokens_a, tokens_b}, pool);   // one vector per sequence
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "ops/ops.h"
#include "ops/thread_pool.h"
#include "tensor/tensor.h"

namespace lmhost {

using Token = int32_t;

// llama.cpp's pooling type ids ({arch}.pooling_type).
enum class Pooling : int { None = 0, Mean = 1, Cls = 2, Last = 3 };
const char* pooling_name(Pooling p);

struct EmbedHParams {
  std::string arch_name;  // "bert" or "nomic-bert"
  bool nomic = false;
  int n_ctx_train = 0;    // {arch}.context_length: longest sequence
  int n_embd = 0;
  int n_layer = 0;
  int n_ff = 0;
  int n_head = 0;
  int head_dim = 0;
  int n_vocab = 0;        // rows of token_embd.weight
  float norm_eps = 1e-12f;  // {arch}.attention.layer_norm_epsilon
  Pooling pooling = Pooling::Mean;  // {arch}.pooling_type (None is treated as Mean)
  float rope_freq_base = 10000.0f;  // nomic-bert
  int n_rot = 0;                    // nomic-bert
};

// A linear layer repacked at load time for the encoder GEMM
// (tensor/encoder_kernels.h: F16 / F32 weights on AVX-512 CPUs); empty when
// ops::matmul runs it instead. Q, K and V are packed as one [3E x E] matrix.
struct PackedLinear {
  DType type = DType::F32;
  int64_t K = 0, N = 0;
  std::vector<uint8_t> panels;
  std::vector<float> bias;  // N values, or empty
  bool empty() const { return panels.empty(); }
};

struct EncoderLayer {
  PackedLinear p_qkv, p_o, p_up, p_gate, p_down;  // all set, or all empty
  TensorView wq, wk, wv, wqkv, wo;  // wqkv (nomic) or wq/wk/wv (bert)
  std::vector<float> bq, bk, bv, bqkv, bo;  // empty when absent
  std::vector<float> attn_norm_w, attn_norm_b;    // attn_output_norm
  TensorView ffn_up, ffn_gate, ffn_down;          // ffn_gate: nomic only
  std::vector<float> ffn_up_b, ffn_down_b;        // bert
  std::vector<float> out_norm_w, out_norm_b;      // layer_output_norm
};

// True when the file is an embedding model this class can load (arch bert or
// nomic-bert). Cheap: reads metadata only.
bool is_embedding_model(const gguf::File& file);

// A 64-bit content digest of a GGUF file as 16 hex digits: metadata, tensor
// table and tensor bytes (whole data for files up to 256 MiB; for larger
// files, the first and last 64 KiB of every tensor). Identifies a model for
// caches.
std::string gguf_digest(const gguf::File& file);

class EmbeddingModel {
 public:
  // Binds every weight by name and checks shapes and types; throws
  // lmhost::Error naming what is missing or wrong.
  static std::shared_ptr<EmbeddingModel> load(std::shared_ptr<gguf::File> file);

  const EmbedHParams& hparams() const { return hp_; }
  int n_embd() const { return hp_.n_embd; }
  int n_ctx() const { return hp_.n_ctx_train; }
  Pooling pooling() const { return hp_.pooling; }
  const gguf::File& file() const { return *file_; }
  std::shared_ptr<gguf::File> file_ptr() const { return file_; }
  // gguf_digest of the file, computed on first use (thread-safe).
  const std::string& digest() const;

  // Pooled, L2-normalised embedding (n_embd floats) of each sequence. Every
  // sequence must hold 1..n_ctx() token ids in [0, n_vocab) (lmhost::Error
  // 400 otherwise). Results do not depend on how sequences are batched.
  std::vector<std::vector<float>> embed(const std::vector<std::vector<Token>>& batch, ops::ThreadPool& pool) const;
  std::vector<std::vector<float>> embed(const std::vector<std::vector<Token>>& batch, ops::ThreadPool& pool,
                                        Pooling pooling, bool normalize = true) const;
  // Convenience: a pool of n_threads (<= 0: physical cores) for this call.
  std::vector<std::vector<float>> embed(const std::vector<std::vector<Token>>& batch, int n_threads) const;

  // Largest number of tokens evaluated in one pass; bigger batches are split
  // at sequence boundaries (results are the same).
  static constexpr int64_t kMaxPassTokens = 4096;

 private:
  EmbeddingModel() = default;
  void forward(const std::vector<const std::vector<Token>*>& seqs, ops::ThreadPool& pool, Pooling pooling,
               bool normalize, std::vector<std::vector<float>*>& out) const;

  std::shared_ptr<gguf::File> file_;
  EmbedHParams hp_;
  TensorView token_embd_, pos_embd_;
  std::vector<float> type_row0_;  // token_types row 0 (empty when absent)
  std::vector<float> embd_norm_w_, embd_norm_b_;
  std::vector<EncoderLayer> layers_;
  ops::Rope rope_;
  mutable std::string digest_;
  mutable std::once_flag digest_once_;
};

}  // namespace lmhost
