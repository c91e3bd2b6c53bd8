// Compute operations of the transformer forward pass, on plain float rows.
// matmul runs on a ThreadPool; the rest are per-row and cheap. Every op has a
// straightforward definition (see tests/unit/ops_test.cpp for the naive
// references they are checked against).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ops/thread_pool.h"
#include "tensor/tensor.h"
#include "tensor/types.h"

namespace lmhost::ops {

// Y[t*N + n] = dot(W row n, X[t*K .. t*K+K)) for t < T, with W = {ne0 = K,
// ne1 = N} of any type the kernels support. Each activation row is converted
// once to vec_dot_type(W.type); output rows are split across the pool and,
// for T > 1, tokens are processed in tiles so a weight row is read from
// memory once per tile. Throws lmhost::Error for unsupported types/shapes.
void matmul(const TensorView& W, const float* X, float* Y, int64_t T, ThreadPool& pool);

// Several matmuls over the same input X (e.g. Q/K/V, or gate/up) in one pass
// over the pool: activations are converted once per vec_dot type and all
// output rows are shared out together (one synchronisation instead of many).
struct MatmulJob {
  const TensorView* W;  // {ne0 = K, ne1 = N_i}, same K for all jobs
  float* Y;             // T x N_i
};
void matmul_multi(std::span<const MatmulJob> jobs, const float* X, int64_t T, ThreadPool& pool);

// y = x / sqrt(mean(x^2) + eps) * w  (w may be null = ones). y may alias x.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps);
// y = (x - mean) / sqrt(var + eps) * w + b  (w, b may be null). y may alias x.
void layernorm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps);

// In-place softmax over n values (max-subtracted, sums in double).
void softmax(float* x, int64_t n);

inline float silu(float x);
void silu(float* x, int64_t n);
// out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
void swiglu(const float* gate, const float* up, float* out, int64_t n);
// GELU, tanh approximation (as used by BERT-family GGUF models).
void gelu(float* x, int64_t n);
// x[i] += b[i]
void add(float* x, const float* b, int64_t n);

// Rotary position embedding.
//   Normal: rotates adjacent pairs (x[2i], x[2i+1])      (llama in GGUF)
//   NeoX:   rotates pairs (x[i], x[i + n_rot/2])          (qwen2, ...)
// Pair i turns by angle pos * freq_scale * base^(-2i/n_rot) / freq_factor[i].
// Dimensions >= n_rot are left alone.
enum class RopeStyle { Normal, NeoX };

struct RopeConfig {
  RopeStyle style = RopeStyle::Normal;
  int n_rot = 0;                    // rotated dimensions per head (even)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;          // linear scaling: 1 / factor
  std::vector<float> freq_factors;  // empty or n_rot/2 divisors (rope_freqs / llama3)
};

// llama3-style frequency factors (what convert scripts store in rope_freqs):
// wavelengths longer than orig_ctx/low_freq_factor are divided by `factor`,
// shorter than orig_ctx/high_freq_factor are kept, smoothly blended between.
std::vector<float> llama3_freq_factors(int n_rot, float freq_base, float factor, float low_freq_factor,
                                       float high_freq_factor, float orig_ctx);

class Rope {
 public:
  Rope() = default;
  explicit Rope(const RopeConfig& cfg);
  const RopeConfig& config() const { return cfg_; }
  // Rotates n_heads heads of head_dim floats each (contiguous) for position pos.
  void apply(float* x, int n_heads, int head_dim, int32_t pos) const;

 private:
  RopeConfig cfg_;
  float theta_scale_ = 1.0f;  // base^(-2/n_rot)
};

// Keys/values of one sequence for one layer: position j's row starts at
// data + j * row_stride elements; a kv head's slice is head_dim contiguous
// elements at offset kv_head * head_dim. F32 or F16.
struct KVView {
  const void* k = nullptr;
  const void* v = nullptr;
  DType type = DType::F32;
  int64_t k_row_stride = 0;  // elements
  int64_t v_row_stride = 0;  // elements
};

// One query head attending to positions [0, n_pos) of kv head `kv_head`:
// out[head_dim_v] = softmax(scale * q·K^T) V. scores: scratch of n_pos floats.
// With an F16 cache the query and the probabilities are rounded to F16 before
// their products (as a reference implementation with an F16 cache does).
void attend_head(const float* q, float* out, const KVView& kv, int kv_head, int head_dim_k, int head_dim_v,
                 int n_pos, float scale, float* scores);

// Causal grouped-query attention of T query rows (n_head heads each) of one
// sequence: query row t sits at position pos[t] and attends to cache
// positions [0, pos[t]]. Q: T x (n_head*head_dim_k), O: T x (n_head*head_dim_v).
// Query head h uses kv head h / (n_head / n_head_kv).
void attention(const float* Q, float* O, int64_t T, const int32_t* pos, int n_head, int n_head_kv,
               int head_dim_k, int head_dim_v, const KVView& kv, float scale, ThreadPool& pool);

// F16 <-> F32 for whole rows (table-driven; exact).
void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);

}  // namespace lmhost::ops

#include <cmath>
inline float lmhost::ops::silu(float x) { return x / (1.0f + std::exp(-x)); }
