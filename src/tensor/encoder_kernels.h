// Kernels for encoder (embedding) models, where every pass is a batch of
// whole sequences: a packed-panel GEMM for F16 / F32 weights, attention over
// one sequence and one head, GELU, and residual + LayerNorm.
//
// Packed panels: a weight matrix of N rows x K columns (row-major, as GGUF
// stores a linear layer) is repacked once at load time into panels of
// kPanelRows rows; panel p holds, for k = 0..K-1, the kPanelRows values
// W[kPanelRows * p + i][k] (i = 0..15) next to each other (rows past N are
// zero). A GEMM then keeps several panels x several tokens of outputs in
// registers and reads 16 weights of one k with one load: no horizontal sums.
//
// Every kernel has a scalar version (the oracle in tests/unit/tensor_f16_test.cpp);
// AVX-512 versions live in f16_avx512.cpp. On CPUs without AVX-512 the GEMM
// entries are null and callers keep using ops::matmul (whose AVX2 tiles are
// faster there than a scalar GEMM).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/kernels.h"
#include "tensor/types.h"

namespace lmhost {

inline constexpr int kPanelRows = 16;

// Panels of a matrix with N rows.
inline int64_t panel_count(int64_t N) { return (N + kPanelRows - 1) / kPanelRows; }
// Bytes of the packed form of an N x K matrix of element type t (F16 or F32).
size_t packed_bytes(DType t, int64_t N, int64_t K);
// Packs rows [0, N) (row r at w + r * row_stride bytes, K elements of type t,
// F16 or F32) into `out` (packed_bytes(t, N, K) bytes). Throws for other types.
void pack_panels(DType t, const void* w, size_t row_stride, int64_t N, int64_t K, void* out);

// y[t * ldy + n] = bias[n] (0 when bias is null) + sum_k x[t * ldx + k] * W[n][k]
// for t < T and n < n_cols, where W is panels (n_cols <= 16 * panels given;
// panel 0 is the first column written). K >= 1.
using GemmPackedFn = void (*)(const void* panels, int64_t K, int64_t n_cols, const float* x, int64_t ldx,
                              int64_t T, float* y, int64_t ldy, const float* bias);

// Bidirectional attention of one head over one sequence of L positions:
// out_i = sum_j softmax_j(scale * q_i . k_j) v_j for i < L, vectors of hd
// floats; q_i at q + i * ld, k_j at k + j * ld, v_j at v + j * ld, out_i at
// out + i * ld_out. scratch: attn_scratch_floats(L, hd) floats.
using AttnSeqFn = void (*)(const float* q, const float* k, const float* v, int64_t ld, float* out, int64_t ld_out,
                           int L, int hd, float scale, float* scratch);
inline int64_t attn_scratch_floats(int L, int hd) {
  const int64_t lp = (static_cast<int64_t>(L) + 15) / 16 * 16;
  return lp * (2 * static_cast<int64_t>(hd) + 4) + 64;
}

// GELU (tanh approximation, as ops::gelu), in place.
using GeluFn = void (*)(float* x, int64_t n);
// x = LayerNorm(x + o + bias) * w + b (bias, w, b may be null), n values.
using AddNormFn = void (*)(float* x, const float* o, const float* bias, const float* w, const float* b, int64_t n,
                           float eps);

struct EncoderKernels {
  Isa isa;
  GemmPackedFn gemm_f16;  // null: use ops::matmul
  GemmPackedFn gemm_f32;  // null: use ops::matmul
  AttnSeqFn attn;
  GeluFn gelu;
  AddNormFn add_norm;
};

// The table for one ISA (scalar entries where the ISA has none; AVX-512
// entries only on CPUs that have it). encoder_kernels(): the table for
// kernels().isa (so LMHOST_ISA applies).
const EncoderKernels& encoder_kernels_for(Isa isa);
const EncoderKernels& encoder_kernels();
// y = LayerNorm(x) * w + b (w, b may be null; y may be x), n values: mean and
// variance summed in double. The reference for add_norm and ops::layernorm.
void layernorm_scalar(const float* x, const float* w, const float* b, float* y, int64_t n, float eps);
// The scalar GEMM (reference; not in the scalar table, see above).
void gemm_packed_scalar(DType t, const void* panels, int64_t K, int64_t n_cols, const float* x, int64_t ldx,
                        int64_t T, float* y, int64_t ldy, const float* bias);

namespace detail {
void fill_encoder_avx512(EncoderKernels& k);  // f16_avx512.cpp
}

}  // namespace lmhost
