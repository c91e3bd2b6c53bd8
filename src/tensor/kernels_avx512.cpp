// AVX-512 (F/BW/DQ/VL) + VNNI kernels.
#include <immintrin.h>

#include "tensor/blocks.h"

namespace lmhost::detail {

void fill_avx512(Kernels& k) { (void)k; }

}  // namespace lmhost::detail
