// Packing, unpacking and activation preparation for the packed weight
// layouts of packed.h (portable code; the kernels are in packed_avx512.cpp).
#include "tensor/packed.h"

#include <array>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/blocks.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost {

namespace {

// The plain type of a packed one and how each 4-byte word of a block's
// quants (after the 2-byte scale) is stored: as is, + 128 per byte (Q8_0),
// or for Q5_0's high-bit word transposed (packed.h).
struct Layout {
  DType plain;
  size_t block;                         // bytes of one plain block: fp16 scale + quants
  uint32_t (*encode)(uint32_t, size_t);  // file word j -> packed word
  uint32_t (*decode)(uint32_t, size_t);  // and back
};

uint32_t as_is(uint32_t v, size_t) { return v; }
uint32_t flip128(uint32_t v, size_t) { return v ^ 0x80808080u; }
// Q5_0's qh: bit e = 4u + c of the file word -> bit u of byte c. Byte b of
// the word holds elements 8b + j (j < 8): bit j lands at 8 * (j % 4) + 2b + j / 4.
constexpr std::array<uint32_t, 256> kQ5Spread = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t v = 0; v < 256; ++v)
    for (uint32_t j = 0; j < 8; ++j) t[v] |= ((v >> j) & 1u) << (8 * (j % 4) + j / 4);
  return t;
}();
uint32_t q5_bits_to_bytes(uint32_t v, size_t j) {
  if (j != 0) return v;
  uint32_t o = 0;
  for (int b = 0; b < 4; ++b) o |= kQ5Spread[(v >> (8 * b)) & 0xFF] << (2 * b);
  return o;
}
uint32_t q5_bytes_to_bits(uint32_t v, size_t j) {
  if (j != 0) return v;
  uint32_t o = 0;
  for (int e = 0; e < 32; ++e) o |= ((v >> (8 * (e % 4) + e / 4)) & 1u) << e;
  return o;
}

Layout layout_of_packed(DType packed) {
  switch (packed) {
    case DType::Q4_0_X16: return {DType::Q4_0, sizeof(blocks::BlockQ4_0), as_is, as_is};
    case DType::Q5_0_X16: return {DType::Q5_0, sizeof(blocks::BlockQ5_0), q5_bits_to_bytes, q5_bytes_to_bits};
    case DType::Q8_0_X16: return {DType::Q8_0, sizeof(blocks::BlockQ8_0), flip128, flip128};
    default: throw Error(std::string("tensor type ") + dtype_name(packed) + " is not a packed layout");
  }
}

inline void copy4(uint8_t* dst, const uint8_t* src, uint32_t (*f)(uint32_t, size_t), size_t j) {
  uint32_t v;
  std::memcpy(&v, src, 4);
  v = f(v, j);
  std::memcpy(dst, &v, 4);
}

DType packed_of(DType t) {
  switch (t) {
    case DType::Q4_0: return DType::Q4_0_X16;
    case DType::Q5_0: return DType::Q5_0_X16;
    case DType::Q8_0: return DType::Q8_0_X16;
    case DType::Q4_K: return DType::Q4_K_X16;
    case DType::Q5_K: return DType::Q5_K_X16;
    case DType::Q6_K: return DType::Q6_K_X16;
    default: return t;
  }
}

// Q6_K_X16 (packed.h): one super-block of 16 rows, x[i] row i's block.
void pack_q6_k(const blocks::BlockQ6_K* const* x, uint8_t* o) {
  for (int i = 0; i < kPackRows; ++i) {
    const blocks::BlockQ6_K& b = *x[i];
    std::memcpy(o + 2 * i, &b.d, 2);
    for (int sb = 0; sb < 16; ++sb) o[32 + 16 * sb + i] = static_cast<uint8_t>(b.scales[sb]);
    // the 256 six-bit quants in order (blocks.h q6k_bits: element 128h + 32f + j)
    uint8_t q[256];
    for (int h = 0; h < 2; ++h)
      for (int f = 0; f < 4; ++f)
        for (int j = 0; j < 32; ++j) {
          const uint8_t l = b.ql[64 * h + 32 * (f % 2) + j];
          q[128 * h + 32 * f + j] =
              static_cast<uint8_t>((f < 2 ? l & 0xF : l >> 4) | ((b.qh[32 * h + j] >> (2 * f)) & 3) << 4);
        }
    for (int E = 0; E < 8; ++E) {
      const uint8_t* e = q + 32 * E;
      uint8_t* p = o + 288 + 384 * E;
      for (int k = 0; k < 4; ++k)
        for (int c = 0; c < 4; ++c)
          p[64 * k + 4 * i + c] = static_cast<uint8_t>((e[4 * k + c] & 0xF) | (e[16 + 4 * k + c] & 0xF) << 4);
      for (int m = 0; m < 2; ++m)
        for (int c = 0; c < 4; ++c) {
          int v = 0;
          for (int u = 0; u < 4; ++u) v |= (e[16 * m + 4 * u + c] >> 4) << (2 * u);
          p[256 + 64 * m + 4 * i + c] = static_cast<uint8_t>(v);
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

// The 8x8 bit matrix of m (row k = byte k, column s = bit s) transposed.
uint64_t transpose_bits8x8(uint64_t m) {
  uint64_t t = (m ^ (m >> 7)) & 0x00AA00AA00AA00AAull;
  m ^= t ^ (t << 7);
  t = (m ^ (m >> 14)) & 0x0000CCCC0000CCCCull;
  m ^= t ^ (t << 14);
  t = (m ^ (m >> 28)) & 0x00000000F0F0F0F0ull;
  return m ^ t ^ (t << 28);
}

// Q4_K_X16 and Q5_K_X16 (packed.h): one super-block of 16 rows.
template <class B>
constexpr bool kHasQh = std::is_same_v<B, blocks::BlockQ5_K>;
// Q5_K_X16: where the vector of sub-block s's 5th bits starts (G_0 / G_1 of pair s / 2).
constexpr size_t bits5_at(int s) { return 256 + 640 * (s / 2) + 64 * (s % 2); }
// Where pair c's quants start: Q5_K_X16 puts the pair's 128 bytes of 5th bits before them.
template <class B>
constexpr size_t qs_at(int c) {
  return kHasQh<B> ? bits5_at(2 * c) + 128 : 256 + 512 * c;
}

template <class B>
void pack_k4(const B* const* x, uint8_t* o) {
  for (int i = 0; i < kPackRows; ++i) {
    std::memcpy(o + 2 * i, &x[i]->d, 2);
    std::memcpy(o + 32 + 2 * i, &x[i]->dmin, 2);
    uint8_t sc[8], mn[8];
    blocks::unpack_scales_k4(x[i]->scales, sc, mn);
    for (int k = 0; k < 8; ++k) o[64 + 16 * k + i] = static_cast<uint8_t>(sc[k] | ((mn[k] >> 4) << 6));
    for (int k = 0; k < 4; ++k)
      o[64 + 16 * (8 + k) + i] = static_cast<uint8_t>((mn[2 * k] & 0xF) | ((mn[2 * k + 1] & 0xF) << 4));
    if constexpr (kHasQh<B>)  // qh[l] bit s: the 5th bit of element l of sub-block s
      for (int e = 0; e < 4; ++e) {
        uint64_t m = 0;  // byte k = qh[4k + e], transposed: byte s bit k = bit s of qh[4k + e]
        for (int k = 0; k < 8; ++k) m |= static_cast<uint64_t>(x[i]->qh[4 * k + e]) << (8 * k);
        m = transpose_bits8x8(m);
        for (int s = 0; s < 8; ++s) o[bits5_at(s) + 4 * i + e] = static_cast<uint8_t>(m >> (8 * s));
      }
    for (int c = 0; c < 4; ++c)
      for (int k = 0; k < 8; ++k) std::memcpy(o + qs_at<B>(c) + 64 * k + 4 * i, x[i]->qs + 32 * c + 4 * k, 4);
  }
}

template <class B>
void unpack_k4(const uint8_t* p, B* const* x) {
  for (int i = 0; i < kPackRows; ++i) {
    B& b = *x[i];
    std::memcpy(&b.d, p + 2 * i, 2);
    std::memcpy(&b.dmin, p + 32 + 2 * i, 2);
    uint8_t sc[8], mn[8];
    for (int k = 0; k < 8; ++k) {
      const uint8_t v = p[64 + 16 * k + i], lo = p[64 + 16 * (8 + k / 2) + i];
      sc[k] = v & 63;
      mn[k] = static_cast<uint8_t>(((lo >> (4 * (k % 2))) & 0xF) | ((v >> 6) << 4));
    }
    blocks::pack_scales_k4(sc, mn, b.scales);
    if constexpr (kHasQh<B>) {
      std::memset(b.qh, 0, sizeof(b.qh));
      for (int s = 0; s < 8; ++s)
        for (int e = 0; e < 4; ++e) {
          const int v = p[bits5_at(s) + 4 * i + e];
          for (int k = 0; k < 8; ++k) b.qh[4 * k + e] |= static_cast<uint8_t>(((v >> k) & 1) << s);
        }
    }
    for (int c = 0; c < 4; ++c)
      for (int k = 0; k < 8; ++k) std::memcpy(b.qs + 32 * c + 4 * k, p + qs_at<B>(c) + 64 * k + 4 * i, 4);
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
  if (t == DType::Q4_K) return pack_k<blocks::BlockQ4_K, pack_k4<blocks::BlockQ4_K>>(src, src_stride, K, rows, dst);
  if (t == DType::Q5_K) return pack_k<blocks::BlockQ5_K, pack_k4<blocks::BlockQ5_K>>(src, src_stride, K, rows, dst);
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
        for (size_t j = 0; j < nq / 4; ++j) copy4(o + 2 * kPackRows + 64 * j + 4 * i, x + 2 + 4 * j, L.encode, j);
      }
    }
  }
}

void unpack_x16(DType packed, const void* group, int64_t K, void* dst) {
  if (packed == DType::Q4_K_X16) return unpack_k<blocks::BlockQ4_K, unpack_k4<blocks::BlockQ4_K>>(group, K, dst);
  if (packed == DType::Q5_K_X16) return unpack_k<blocks::BlockQ5_K, unpack_k4<blocks::BlockQ5_K>>(group, K, dst);
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
      for (size_t j = 0; j < nq / 4; ++j) copy4(x + 2 + 4 * j, p + 2 * kPackRows + 64 * j + 4 * i, L.decode, j);
    }
}

DType plain_type(DType packed) {
  switch (packed) {
    case DType::Q4_0_X16: return DType::Q4_0;
    case DType::Q5_0_X16: return DType::Q5_0;
    case DType::Q8_0_X16: return DType::Q8_0;
    case DType::Q4_K_X16: return DType::Q4_K;
    case DType::Q5_K_X16: return DType::Q5_K;
    case DType::Q6_K_X16: return DType::Q6_K;
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
