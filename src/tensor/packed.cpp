// Packing, unpacking and activation preparation for the packed weight
// layouts of packed.h (portable code; the kernels are in packed_avx512.cpp).
#include "tensor/packed.h"

#include <cstring>
#include <string>
#include <vector>

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
    case DType::Q4_K: return DType::Q4_K_X16;
    default: return t;
  }
}

// Q6_K_X16 (packed.h): one super-block of 16 rows, x[i] row i's block.
void pack_q6_k(const blocks::BlockQ6_K* const* x, uint8_t* o) {
  for (int i = 0; i < kPackRows; ++i) {
    std::memcpy(o + 2 * i, &x[i]->d, 2);
    for (int sb = 0; sb < 16; ++sb) o[32 + 16 * sb + i] = static_cast<uint8_t>(x[i]->scales[sb]);
    for (int E = 0; E < 8; ++E) {
      uint8_t* q = o + 288 + 384 * E;
      for (int k = 0; k < 4; ++k)
        for (int c = 0; c < 4; ++c) {
          const int lo = blocks::q6k_bits(*x[i], 32 * E + 4 * k + c), hi = blocks::q6k_bits(*x[i], 32 * E + 16 + 4 * k + c);
          q[64 * k + 4 * i + c] = static_cast<uint8_t>((lo & 0xF) | (hi & 0xF) << 4);
        }
      for (int m = 0; m < 2; ++m)
        for (int c = 0; c < 4; ++c) {
          int v = 0;
          for (int u = 0; u < 4; ++u) v |= (blocks::q6k_bits(*x[i], 32 * E + 16 * m + 4 * u + c) >> 4) << (2 * u);
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

// Q4_K_X16 (packed.h): one super-block of 16 rows.
void pack_q4_k(const blocks::BlockQ4_K* const* x, uint8_t* o) {
  for (int i = 0; i < kPackRows; ++i) {
    std::memcpy(o + 2 * i, &x[i]->d, 2);
    std::memcpy(o + 32 + 2 * i, &x[i]->dmin, 2);
    uint8_t sc[8], mn[8];
    blocks::unpack_scales_k4(x[i]->scales, sc, mn);
    for (int k = 0; k < 8; ++k) o[64 + 16 * k + i] = static_cast<uint8_t>(sc[k] | ((mn[k] >> 4) << 6));
    for (int k = 0; k < 4; ++k)
      o[64 + 16 * (8 + k) + i] = static_cast<uint8_t>((mn[2 * k] & 0xF) | ((mn[2 * k + 1] & 0xF) << 4));
    for (int c = 0; c < 4; ++c)
      for (int k = 0; k < 8; ++k) std::memcpy(o + 256 + 512 * c + 64 * k + 4 * i, x[i]->qs + 32 * c + 4 * k, 4);
  }
}

void unpack_q4_k(const uint8_t* p, blocks::BlockQ4_K* const* x) {
  for (int i = 0; i < kPackRows; ++i) {
    blocks::BlockQ4_K& b = *x[i];
    std::memcpy(&b.d, p + 2 * i, 2);
    std::memcpy(&b.dmin, p + 32 + 2 * i, 2);
    uint8_t sc[8], mn[8];
    for (int k = 0; k < 8; ++k) {
      const uint8_t v = p[64 + 16 * k + i], lo = p[64 + 16 * (8 + k / 2) + i];
      sc[k] = v & 63;
      mn[k] = static_cast<uint8_t>(((lo >> (4 * (k % 2))) & 0xF) | ((v >> 6) << 4));
    }
    blocks::pack_scales_k4(sc, mn, b.scales);
    for (int c = 0; c < 4; ++c)
      for (int k = 0; k < 8; ++k) std::memcpy(b.qs + 32 * c + 4 * k, p + 256 + 512 * c + 64 * k + 4 * i, 4);
  }
}

// The K-quant layouts, one super-block of 16 rows at a time.
template <class B, void (*Pack)(const B* const*, uint8_t*)>
void pack_k(const void* src, size_t src_stride, int64_t K, int64_t rows, void* dst) {
  const int64_t nsb = K / blocks::QK_K;
  for (int64_t g = 0; g < rows / kPackRows; ++g)
    for (int64_t b = 0; b < nsb; ++b) {
      const B* x[kPackRows];
      for (int i = 0; i < kPackRows; ++i)
        x[i] = reinterpret_cast<const B*>(static_cast<const uint8_t*>(src) + (g * kPackRows + i) * src_stride) + b;
      Pack(x, static_cast<uint8_t*>(dst) + (g * nsb + b) * kPackRows * sizeof(B));
    }
}
template <class B, void (*Unpack)(const uint8_t*, B* const*)>
void unpack_k(const void* group, int64_t K, void* dst) {
  const int64_t nsb = K / blocks::QK_K;
  for (int64_t b = 0; b < nsb; ++b) {
    B* x[kPackRows];
    for (int i = 0; i < kPackRows; ++i) x[i] = static_cast<B*>(dst) + i * nsb + b;
    Unpack(static_cast<const uint8_t*>(group) + b * kPackRows * sizeof(B), x);
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

void pack_x16(DType t, const void* src, size_t src_stride, int64_t K, int64_t rows, void* dst) {
  if (t == DType::Q4_K) return pack_k<blocks::BlockQ4_K, pack_q4_k>(src, src_stride, K, rows, dst);
  if (t == DType::Q6_K) return pack_k<blocks::BlockQ6_K, pack_q6_k>(src, src_stride, K, rows, dst);
  // Block b of a group: the 16 scales, then quant bytes 4j..4j+3 of each
  // row at 2 * kPackRows + 64 * j + 4 * i (they follow the 2-byte scale in
  // the plain block).
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
  if (packed == DType::Q4_K_X16) return unpack_k<blocks::BlockQ4_K, unpack_q4_k>(group, K, dst);
  if (packed == DType::Q6_K_X16) return unpack_k<blocks::BlockQ6_K, unpack_q6_k>(group, K, dst);
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

DType plain_type(DType packed) {
  switch (packed) {
    case DType::Q4_0_X16: return DType::Q4_0;
    case DType::Q8_0_X16: return DType::Q8_0;
    case DType::Q6_K_X16: return DType::Q6_K;
    case DType::Q4_K_X16: return DType::Q4_K;
    default: throw Error(std::string("tensor type ") + dtype_name(packed) + " is not a packed layout");
  }
}

void packed_row(DType packed, const void* data, int64_t K, int64_t r, void* dst) {
  const size_t rb = row_bytes(plain_type(packed), K);
  thread_local std::vector<uint8_t> group;
  if (group.size() < kPackRows * rb) group.resize(kPackRows * rb);
  unpack_x16(packed, static_cast<const uint8_t*>(data) + (r / kPackRows) * kPackRows * rb, K, group.data());
  std::memcpy(dst, group.data() + (r % kPackRows) * rb, rb);
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
