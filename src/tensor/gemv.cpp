// Activation preparation and kernel selection for the gemv kernels of gemv.h.
#include "tensor/gemv.h"

#include <algorithm>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace lmhost {

namespace detail {
GemvQ8Fn gemv_q8_0_avx512();  // gemv_avx512.cpp; nullptr without VBMI
}  // namespace detail

void prepare_gemv_act_q8(const void* q8_row, int64_t n, int8_t* qs, float* d, int32_t* corr) {
  const blocks::BlockQ8_0* y = static_cast<const blocks::BlockQ8_0*>(q8_row);
  const int64_t nb = n / blocks::QK;
  for (int64_t b = 0; b < nb; ++b) std::copy(y[b].qs, y[b].qs + blocks::QK, qs + blocks::QK * b);
  const int64_t nq = gemv_q8_lanes(n) / 16;
  for (int64_t q = 0; q < nq; ++q) {
    for (int i = 0; i < 16; ++i) {
      const int L = i / 4, slot = i % 4;
      const int64_t b = 4 * q + (slot < 2 ? 0 : 2) + (L >= 2 ? 1 : 0);
      int sum = 0;
      for (int j = 0; j < blocks::QK; ++j) sum += y[b].qs[j];
      d[16 * q + i] = fp16_to_fp32(y[b].d);
      corr[16 * q + i] = (L % 2 == 0 && slot % 2 == 0) ? 128 * sum : 0;
    }
  }
}

GemvQ8Fn gemv_q8_0_kernel(Isa isa) {
  if (isa < Isa::AVX512 || detect_isa() < Isa::AVX512) return nullptr;
  static const GemvQ8Fn f = detail::gemv_q8_0_avx512();
  return f;
}

GemvQ8Fn gemv_q8_0_kernel() { return gemv_q8_0_kernel(kernels().isa); }

}  // namespace lmhost
