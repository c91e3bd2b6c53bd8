// Row kernels for every supported block type: dequantize, quantize, and the
// dot product of a weight row with an activation row.
//
// The activation side of a dot product is stored in the weight type's
// "vec_dot type" (as ggml does): Q8_0 for Q4_0/Q5_0/Q8_0 weights, Q8_1 for
// Q4_1/Q5_1, Q8_K for the K-quants, F32 for F32/F16/BF16. A matmul quantizes
// each activation row once with quantize_row(vec_dot_type(w), ...) and then
// calls vec_dot for each weight row.
//
// Every kernel has a scalar version (the oracle for the fast ones in tests
// and the fallback on CPUs without the instructions); AVX2 and AVX-512
// (+VNNI) versions are picked at run time from CPUID.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/types.h"

namespace lmhost {

enum class Isa { Scalar = 0, AVX2 = 1, AVX512 = 2 };  // AVX512 = F+BW+DQ+VL+VNNI
const char* isa_name(Isa isa);
Isa detect_isa();  // best ISA this CPU supports

// n is the row length in elements (a multiple of the block size).
using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);
using QuantizeFn = void (*)(const float* src, void* dst, int64_t n);
using VecDotFn = float (*)(int64_t n, const void* w_row, const void* act_row);

// Matmul tile: out[i * out_stride + j] = vec_dot(n, weight row i, activation
// row j) for i < nw, j < na, 1 <= nw, na <= kTileMax. Weight row i starts at
// w + i * w_stride bytes, activation row j at act + j * act_stride bytes
// (quantized to vec_dot_type). Fast versions decode each weight block once
// for all activation rows and load each activation block once for all
// weight rows; 4x4 tiles are the fastest way to run a matmul with >= 4
// activation rows (prompt processing). Results equal vec_dot up to float
// summation order.
inline constexpr int kTileMax = 4;
using VecDotTileFn = void (*)(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride,
                              int nw, int na, float* out, size_t out_stride);

// Matrix-vector product for decode (one activation row), for Q4_0 weights
// (vec_dot type Q8_0): out[r] = vec_dot(n, weight row r, act.q8) for r <
// rows, weight row r at w + r * w_stride bytes. The activation is prepared
// once per matmul (prepare_gemv_act) in the layout the kernel consumes:
// per group of 8 blocks, the quants as [low 16 of blocks 0..3][high 16 of
// blocks 0..3][same for 4..7] (matching Q4_0's low/high nibbles), and 16
// scales and 16 offset corrections (8 * sum of the block's quants) laid out
// for the kernel's partial sums: 4 lanes per block pair (q, 4+q) as
// [q, q, 4+q, 4+q], corrections in the first lane of each block only. A
// final group of 4..7 blocks is a half group (blocks 4..7 zero); any blocks
// after the last (half) group use the Q8_0 row. Results equal vec_dot up to float
// summation order.
struct GemvAct {
  const void* q8;         // BlockQ8_0 row of n elements
  const int8_t* qs;       // n bytes (groups of 8 blocks permuted)
  const float* d;         // 16 per group of 8 blocks
  const int32_t* corr;    // 16 per group of 8 blocks
};
// Sizes: qs n rounded up to 256 bytes, d and corr gemv_act_lanes(n) elements each.
inline int64_t gemv_act_lanes(int64_t n) { return (n / 256 + (n % 256 >= 128 ? 1 : 0)) * 16; }
void prepare_gemv_act(const void* q8_row, int64_t n, int8_t* qs, float* d, int32_t* corr);
using GemvFn = void (*)(int64_t n, const void* w, size_t w_stride, int64_t rows, const GemvAct& act, float* out);

// One query head attending to n_pos cached positions of an F16 KV cache:
// scores[j] = scale * (q rounded to F16) . K_j, softmax over j (max-subtracted,
// sum in double), out = sum_j (p_j rounded to F16) * V_j. K_j at
// k + j * k_stride, V_j at v + j * v_stride (elements). head dims are
// multiples of 16, at most 256. (ops::attend_head's F16 path, vectorized.)
using AttnF16Fn = void (*)(const float* q, const uint16_t* k, const uint16_t* v, int64_t k_stride, int64_t v_stride,
                           int n_pos, int head_dim_k, int head_dim_v, float scale, float* scores, float* out);

// Prompt-processing matmul ("gemm") for weight types whose activations are
// Q8_0 (Q4_0, Q5_0, Q8_0) or Q8_K (Q4_K, Q6_K): out[t * out_stride + r] =
// vec_dot(n, weight row r, activation row t) for r < rows and every token t
// of groups [g0, g1). Tokens go in groups of kGemmTokens, one per 32-bit
// vector lane: the activations are transposed once per matmul
// (prepare_gemm_act) so that one vpdpbusd multiplies 4 quants of one weight
// row with 4 quants of each of the 16 tokens. The kernel decodes 16 weight
// rows to signed bytes once (in a per-thread buffer; the mapped weights are
// only read) and reuses them for every token group. Results equal vec_dot up
// to float summation order.
inline constexpr int kGemmTokens = 16;
struct GemmAct {
  // Group g, 32-element block b at q + (g * nb + b) * 512 bytes, nb = n / 32:
  // [quad j = 0..7][token 0..15][4 quants of elements 4j..4j+3], each quant + 128
  // (unsigned). Tokens past T hold 128 (zero).
  const uint8_t* q;
  // The tokens' scales as floats, 16 per (g, scale block) at d + (g * ns + s) * 16,
  // ns = n / 32 (Q8_0) or n / 256 (Q8_K); 0 past T.
  const float* d;
  // Q8_K only: per (g, 256-element super-block i), 4 x 16 int32 at sums + (g * (n / 256) + i) * 64:
  // [pair p = 0..3][token]: the quant sums of 32-element blocks 2p (low int16) and 2p + 1 (high).
  const int32_t* sums;
  int64_t n;  // row length in elements (a multiple of 32, of 256 for Q8_K)
  int64_t T;  // number of activation rows (tokens)
};
inline int64_t gemm_groups(int64_t T) { return (T + kGemmTokens - 1) / kGemmTokens; }
// Buffer sizes for T tokens of n elements, for either activation type: q
// gemm_groups(T) * n * 16 bytes, d gemm_groups(T) * n / 2 floats, sums
// gemm_groups(T) * n / 4 int32.
// Fills groups [g0, g1) from T activation rows of type act_type (Q8_0 or
// Q8_K) of n elements, row t at rows + t * stride bytes.
void prepare_gemm_act(DType act_type, const void* rows, size_t stride, int64_t n, int64_t T, int64_t g0, int64_t g1,
                      uint8_t* q, float* d, int32_t* sums);
using GemmFn = void (*)(const void* w, size_t w_stride, int64_t rows, const GemmAct& act, int64_t g0, int64_t g1,
                        float* out, size_t out_stride);

// Matrix products for weights repacked at load (tensor/packed.h):
// out[t * out_stride + r] = vec_dot(n, weight row r, activation row t) for
// r < rows (a multiple of kPackRows) and t < act.T, weights w in the packed
// layout from row 0. A decoded 16-row block serves up to 4 tokens from
// registers; this one kernel runs decode (T = 1), the server's batched
// decode steps and prompts (measured against the gemm on the file's layout:
// decode steps of 8 streams 1.7-2.4x, 16 streams 1.3-1.5x, 512-token prompts
// 0.97-1.08x). The activation rows are Q8_0 with their scales as floats and
// their quant sums prepared once (prepare_packed_act).
inline constexpr int kPackRows = 16;
struct PackedAct {
  const void* q8;        // T rows of vec_dot_type(w) (Q8_0 or Q8_K), row t at q8 + t * q8_stride bytes
  size_t q8_stride;
  // Q8_0 activations only (Q8_K blocks carry their own float scale and sums):
  const float* d;        // d[t * nb + b]: the scale of block b of row t (nb = n / 32)
  const int32_t* sum;    // sum[t * nb + b]: the sum of the quants of block b of row t (offset corrections)
  int64_t T;
};
using GemvPackedFn = void (*)(int64_t n, const void* w, int64_t rows, const PackedAct& act, float* out,
                              size_t out_stride);

using SwigluFn = void (*)(const float* gate, const float* up, float* out, int64_t n);

struct Kernels {
  Isa isa;
  DequantizeFn dequantize[kDTypeCount];  // nullptr where unsupported
  QuantizeFn quantize[kDTypeCount];      // nullptr where unsupported
  VecDotFn vec_dot[kDTypeCount];         // indexed by the weight type
  VecDotTileFn vec_dot_tile[kDTypeCount];  // indexed by the weight type; set wherever vec_dot is
  AttnF16Fn attn_f16;                      // nullptr: ops uses its portable loop
  GemvFn gemv[kDTypeCount];                // indexed by the weight type; Q4_0 only so far (else nullptr)
  GemmFn gemm[kDTypeCount];  // prompt matmul (T >= 8) for Q8_0/Q8_K-activation types; nullptr: use vec_dot_tile
  // Indexed by a packed type (Q4_0_X16, Q5_0_X16, Q8_0_X16, Q4_K_X16, Q5_K_X16, Q6_K_X16), which has no other
  // kernel: weights are packed only where this is set (packed.h).
  GemvPackedFn gemv_packed[kDTypeCount];
  SwigluFn swiglu;           // out[i] = silu(gate[i]) * up[i]; out may alias gate or up
};

// The table for one ISA (falls back to scalar entries the ISA lacks). Tests
// compare kernels_for(Isa::AVX2/AVX512) against kernels_for(Isa::Scalar).
// Entries this CPU cannot execute are replaced by the best ones it can, so
// any table is safe to call.
const Kernels& kernels_for(Isa isa);
// The table in use: the best detected ISA, or LMHOST_ISA=scalar|avx2|avx512.
const Kernels& kernels();

DType vec_dot_type(DType weight_type);

// Convenience wrappers over kernels(); throw lmhost::Error for unsupported types.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void quantize_row(DType t, const float* src, void* dst, int64_t n);
float vec_dot(DType w, int64_t n, const void* w_row, const void* act_row);
void vec_dot_tile(DType w, int64_t n, const void* w_rows, size_t w_stride, const void* act_rows, size_t act_stride,
                  int nw, int na, float* out, size_t out_stride);

}  // namespace lmhost
