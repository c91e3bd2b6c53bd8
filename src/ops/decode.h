// Decode (one token, T == 1) building blocks: an activation vector prepared
// once in every form the weights' kernels consume, and row-range matrix-
// vector products on it. The forward pass (Context) splits each matmul into
// row chunks on the pool and folds the per-token work that used to run on
// one thread between matmuls (bias, rope, KV writes, swiglu, quantizing the
// next matmul's input) into the chunk that produced those rows, so both
// threads keep streaming weights.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "tensor/gemv.h"
#include "tensor/kernels.h"
#include "tensor/tensor.h"

namespace lmhost::ops {

class DecodeAct {
 public:
  // Prepares for inputs of K elements multiplied by these weights (all with
  // ne[0] == K): picks the forms to compute and sizes the buffers. Throws
  // lmhost::Error for types without kernels or rows not a multiple of the block.
  void setup(int64_t K, std::initializer_list<const TensorView*> weights);

  // Quantizes x[e0, e1) into every form set up (x must hold K floats and stay
  // valid while gemv runs: F32-activation weights read it directly). e0 and
  // e1 must be multiples of kAlign (or e1 == K); ranges may run concurrently.
  // bind() first (once, before any range of this input is quantized).
  static constexpr int64_t kAlign = 256;
  void bind(const float* x) { x_ = x; }
  void quantize_range(const float* x, int64_t e0, int64_t e1);
  void quantize(const float* x) {
    bind(x);
    quantize_range(x, 0, K_);
  }

  // y[i] = dot(W row r0 + i, x) for r0 + i < r1 (r0 and r1 multiples of
  // kPackRows for packed weights).
  void gemv(const TensorView& W, int64_t r0, int64_t r1, float* y) const;

  int64_t K() const { return K_; }

 private:
  int64_t K_ = 0;
  const float* x_ = nullptr;
  bool need_q8_0_ = false, need_gemv_ = false, need_q8n_ = false, need_packed_ = false, need_q8_k_ = false,
       need_q8_1_ = false;
  std::vector<uint8_t> q8_0_, q8_k_, q8_1_;
  // Q4_0/Q5_0 gemv layout (GemvAct) and the Q8_0 gemv layout (GemvActQ8)
  std::vector<int8_t> gqs_, nqs_;
  std::vector<float> gd_, nd_;
  std::vector<int32_t> gcorr_, ncorr_;
  // packed weights (PackedAct): block scales and quant sums
  std::vector<float> pd_;
  std::vector<int32_t> psum_;
};

// Splits [0, n) into chunks of about `want` items, each a multiple of `align`
// (the last one may be shorter); at least one chunk.
std::vector<int64_t> split_rows(int64_t n, int64_t align, int64_t want);

}  // namespace lmhost::ops
