// Decode gemv kernels with their own prepared-activation layouts (the ones
// that share GemvAct with Q4_0 live in Kernels::gemv; see kernels.h).
//
// Q8_0 weights: the quants of two blocks are loaded straight from the row
// into one 512-bit vector (no byte permutes for them: vpermt2b is slow on
// Zen 4), so the activation is kept in plain element order; per quad of 4
// blocks the kernel reduces its two 2-block partial-sum vectors into one
// whose lanes belong to blocks [0,0,2,2 | 0,0,2,2 | 1,1,3,3 | 1,1,3,3], and
// GemvActQ8 holds the activation scales and corrections in that lane order.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/kernels.h"

namespace lmhost {

struct GemvActQ8 {
  const void* q8;       // BlockQ8_0 row of n elements (the 1..3 blocks after the last quad are read here)
  const int8_t* qs;     // n bytes: the quants in element order
  const float* d;       // gemv_q8_lanes(n): per quad of 4 blocks, 16 lanes of activation scales
  const int32_t* corr;  // gemv_q8_lanes(n): 128 * sum(quants of the block) in one lane per block, else 0
};
// 16 lanes per quad of 4 blocks (1..3 blocks after the last quad are read from q8).
inline int64_t gemv_q8_lanes(int64_t n) { return n / 128 * 16; }
void prepare_gemv_act_q8(const void* q8_row, int64_t n, int8_t* qs, float* d, int32_t* corr);

// out[r] = vec_dot(n, weight row r, act.q8) for r < rows, weight row r at
// w + r * w_stride bytes (Q8_0 weights). Results equal vec_dot up to float
// summation order.
using GemvQ8Fn = void (*)(int64_t n, const void* w, size_t w_stride, int64_t rows, const GemvActQ8& act, float* out);

// The kernel for `isa` (nullptr when this CPU or ISA has none: use vec_dot).
GemvQ8Fn gemv_q8_0_kernel(Isa isa);
// For the ISA in use (kernels().isa).
GemvQ8Fn gemv_q8_0_kernel();

}  // namespace lmhost
