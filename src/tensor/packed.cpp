// Packing, unpacking and activation preparation for the packed weight
// layouts of packed.h (portable code; the kernels are in packed_avx512.cpp).
#include "tensor/packed.h"

#include <cstring>
#include <string>

#include "tensor/blocks.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost {

namespace {

// The plain type of a packed one and the byte flip of its quants.
struct Layout {
  DType plain;
  size_t block;   // bytes of one plain block: fp16 scale + quants
  uint32_t flip;  // xor applied to every 4 quant bytes
};

Layout layout_of_packed(DType packed) {
  switch (packed) {
    case DType::Q4_0_X16: return {DType::Q4_0, sizeof(blocks::BlockQ4_0), 0u};
    case DType::Q8_0_X16: return {DType::Q8_0, sizeof(blocks::BlockQ8_0), 0x80808080u};
    default: throw Error(std::string("tensor type ") + dtype_name(packed) + " is not a packed layout");
  }
}

inline void copy4(uint8_t* dst, const uint8_t* src, uint32_t flip) {
  uint32_t v;
  std::memcpy(&v, src, 4);
  v ^= flip;
  std::memcpy(dst, &v, 4);
}

DType packed_of(DType t) {
  switch (t) {
    case DType::Q4_0: return DType::Q4_0_X16;
    case DType::Q8_0: return DType::Q8_0_X16;
    default: return t;
  }
}

}  // namespace

DType packed_type(DType t, const Kernels& k) {
  const DType p = packed_of(t);
  if (p == t) return t;
  return k.gemv_packed[static_cast<uint32_t>(p)] ? p : t;
}

bool packable(DType t, int64_t K, int64_t rows, const Kernels& k) {
  return packed_type(t, k) != t && K > 0 && K % blocks::QK == 0 && rows > 0 && rows % kPackRows == 0;
}

// Block b of a group: the 16 scales, then quant bytes 4j..4j+3 of each row
// at 2 * kPackRows + 64 * j + 4 * i (the quants follow the 2-byte scale in
// the plain block).
void pack_x16(DType t, const void* src, size_t src_stride, int64_t K, int64_t rows, void* dst) {
  const Layout L = layout_of_packed(packed_of(t));
  const int64_t nb = K / blocks::QK;
  const size_t gblock = kPackRows * L.block, nq = L.block - 2;
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < rows / kPackRows; ++g) {
    uint8_t* gd = d + g * nb * gblock;
    for (int i = 0; i < kPackRows; ++i) {
      const uint8_t* row = s + (g * kPackRows + i) * src_stride;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* x = row + b * L.block;
        uint8_t* o = gd + b * gblock;
        std::memcpy(o + 2 * i, x, 2);
        for (size_t j = 0; j < nq / 4; ++j) copy4(o + 2 * kPackRows + 64 * j + 4 * i, x + 2 + 4 * j, L.flip);
      }
    }
  }
}

void unpack_x16(DType packed, const void* group, int64_t K, void* dst) {
  const Layout L = layout_of_packed(packed);
  const int64_t nb = K / blocks::QK;
  const size_t gblock = kPackRows * L.block, nq = L.block - 2;
  const uint8_t* g = static_cast<const uint8_t*>(group);
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (int i = 0; i < kPackRows; ++i)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = g + b * gblock;
      uint8_t* x = out + (i * nb + b) * L.block;
      std::memcpy(x, p + 2 * i, 2);
      for (size_t j = 0; j < nq / 4; ++j) copy4(x + 2 + 4 * j, p + 2 * kPackRows + 64 * j + 4 * i, L.flip);
    }
}

void prepare_packed_act(const void* q8_row, int64_t n, float* d, int32_t* sum) {
  const auto* y = static_cast<const blocks::BlockQ8_0*>(q8_row);
  for (int64_t b = 0; b < n / blocks::QK; ++b) {
    int s = 0;
    for (int j = 0; j < blocks::QK; ++j) s += y[b].qs[j];
    d[b] = fp16_to_fp32(y[b].d);
    sum[b] = s;
  }
}

}  // namespace lmhost
