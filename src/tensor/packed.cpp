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
    case DType::Q6_K: return DType::Q6_K_X16;
    default: return t;
  }
}

// Q6_K_X16 (packed.h): one super-block of 16 rows, x[i] row i's block.
constexpr size_t kQ6Group = kPackRows * sizeof(blocks::BlockQ6_K);  // 3360

void pack_q6_k(const blocks::BlockQ6_K* const* x, uint8_t* o) {
  for (int i = 0; i < kPackRows; ++i) {
    std::memcpy(o + 2 * i, &x[i]->d, 2);
    for (int sb = 0; sb < 16; ++sb) o[32 + 16 * sb + i] = static_cast<uint8_t>(x[i]->scales[sb]);
    for (int E = 0; E < 8; ++E) {
      uint8_t* q = o + 288 + 384 * E;
      for (int k = 0; k < 4; ++k)
        for (int c = 0; c < 4; ++c) {
          const int lo = q6k_bits(*x[i], 32 * E + 4 * k + c), hi = q6k_bits(*x[i], 32 * E + 16 + 4 * k + c);
          q[64 * k + 4 * i + c] = static_cast<uint8_t>((lo & 0xF) | (hi & 0xF) << 4);
        }
      for (int m = 0; m < 2; ++m)
        for (int c = 0; c < 4; ++c) {
          int v = 0;
          for (int u = 0; u < 4; ++u) v |= (q6k_bits(*x[i], 32 * E + 16 * m + 4 * u + c) >> 4) << (2 * u);
          q[256 + 64 * m + 4 * i + c] = static_cast<uint8_t>(v);
        }
    }
  }
}

void unpack_q6_k(const uint8_t* p, blocks::BlockQ6_K* const* x) {
  for (int i = 0; i < kPackRows; ++i) {
    blocks::BlockQ6_K& b = *x[i];
    std::memset(&b, 0, sizeof(b));
    std::memcpy(&b.d, p + 2 * i, 2);
    for (int sb = 0; sb < 16; ++sb) b.scales[sb] = static_cast<int8_t>(p[32 + 16 * sb + i]);
    for (int e = 0; e < 256; ++e) {
      const int E = e / 32, r = e % 32, k = (r % 16) / 4, c = r % 4, m = r / 16, u = (r % 16) / 4;
      const uint8_t* q = p + 288 + 384 * E;
      const int lo = (q[64 * k + 4 * i + c] >> (r < 16 ? 0 : 4)) & 0xF;
      const int hi = (q[256 + 64 * m + 4 * i + c] >> (2 * u)) & 3;
      // back into ggml's order (blocks.h q6k_bits)
      const int h = e / 128, rr = e % 128;
      b.ql[64 * h + rr % 64] |= static_cast<uint8_t>(lo << (rr < 64 ? 0 : 4));
      b.qh[32 * h + rr % 32] |= static_cast<uint8_t>(hi << (2 * (rr / 32)));
    }
  }
}

}  // namespace

DType packed_type(DType t, const Kernels& k) {
  const DType p = packed_of(t);
  if (p == t) return t;
  return k.gemv_packed[static_cast<uint32_t>(p)] ? p : t;
}

bool packable(DType t, int64_t K, int64_t rows, const Kernels& k) {
  const DType p = packed_type(t, k);
  return p != t && K > 0 && K % dtype_info(p).block_size == 0 && rows > 0 && rows % kPackRows == 0;
}

// Block b of a group: the 16 scales, then quant bytes 4j..4j+3 of each row
// at 2 * kPackRows + 64 * j + 4 * i (the quants follow the 2-byte scale in
// the plain block).
void pack_x16(DType t, const void* src, size_t src_stride, int64_t K, int64_t rows, void* dst) {
  if (t == DType::Q6_K) {
    const int64_t nsb = K / blocks::QK_K;
    for (int64_t g = 0; g < rows / kPackRows; ++g)
      for (int64_t b = 0; b < nsb; ++b) {
        const blocks::BlockQ6_K* x[kPackRows];
        for (int i = 0; i < kPackRows; ++i)
          x[i] = reinterpret_cast<const blocks::BlockQ6_K*>(static_cast<const uint8_t*>(src) +
                                                            (g * kPackRows + i) * src_stride) + b;
        pack_q6_k(x, static_cast<uint8_t*>(dst) + (g * nsb + b) * kQ6Group);
      }
    return;
  }
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
  if (packed == DType::Q6_K_X16) {
    const int64_t nsb = K / blocks::QK_K;
    for (int64_t b = 0; b < nsb; ++b) {
      blocks::BlockQ6_K* x[kPackRows];
      for (int i = 0; i < kPackRows; ++i) x[i] = static_cast<blocks::BlockQ6_K*>(dst) + i * nsb + b;
      unpack_q6_k(static_cast<const uint8_t*>(group) + b * kQ6Group, x);
    }
    return;
  }
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
