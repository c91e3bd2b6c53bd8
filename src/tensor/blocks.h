// Internal: the byte layouts of ggml/GGUF quantization blocks, shared by the
// scalar, AVX2 and AVX-512 kernels. All fields are little-endian; fp16 values
// are stored as raw uint16_t bits. These structs are exactly the on-disk
// layouts (static_asserts below), so a row is just an array of them.
#pragma once

#include <cstdint>
#include <cstring>

#include "tensor/kernels.h"

namespace lmhost::blocks {

inline constexpr int QK = 32;    // elements per legacy block
inline constexpr int QK_K = 256; // elements per K-quant super-block

// x = d * (q - 8); elements 0..15 in the low nibbles of qs[0..15], 16..31 in the high.
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
// x = d * q + m
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };
// x = d * (q - 16); bit 4 of element j is bit j of the little-endian uint32 qh.
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
// x = d * q + m
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
// x = d * q
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
// x = d * q; s = d * sum(q) (activation side of Q4_1/Q5_1)
struct BlockQ8_1 { uint16_t d, s; int8_t qs[32]; };

// 16 sub-blocks of 16: x = d*(sc&15)*q - dmin*(sc>>4); q 2-bit.
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
// 16 sub-blocks of 16: x = d*(sc-32)*(q-4); q = 2 low bits in qs + high bit in hmask.
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
// 8 sub-blocks of 32: x = d*sc*q - dmin*m; 6-bit sc/m packed in 12 bytes.
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
// Like Q4_K with a 5th bit per element in qh.
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
// 16 sub-blocks of 16: x = d*sc*(q-32); q 6-bit = 4 bits in ql + 2 bits in qh.
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
// Activation side of the K-quants: x = d*q, bsums = sums of q over groups of 16.
struct BlockQ8_K { float d; int8_t qs[256]; int16_t bsums[16]; };

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// The 6-bit quant (0..63) of element e of a Q6_K block: per half h of 128
// elements, ql[64h + r % 64] holds the low 4 bits (low nibble for r < 64),
// qh[32h + r % 32] the top 2 bits at bit 2 * (r / 32) (r = e % 128).
inline int q6k_bits(const BlockQ6_K& b, int e) {
  const int h = e / 128, r = e % 128;
  const uint8_t l = b.ql[64 * h + r % 64];
  const int lo = r < 64 ? (l & 0xF) : (l >> 4);
  const int hi = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
  return lo | (hi << 4);
}

// Unpacks the 8 six-bit scales and mins of a Q4_K/Q5_K block. Sub-blocks
// 0..3 keep scale/min in the low 6 bits of bytes 0..3 / 4..7; sub-blocks 4..7
// keep their low 4 bits in the nibbles of bytes 8..11 and their top 2 bits
// in the top 2 bits of bytes 0..3 (scales) / 4..7 (mins).
inline void unpack_scales_k4(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = (s[j + 8] & 0xF) | ((s[j] >> 6) << 4);
    mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
  }
}

// The inverse of unpack_scales_k4 (scales and mins < 64).
inline void pack_scales_k4(const uint8_t* sc, const uint8_t* mn, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

// The 4-bit quant of element e of a Q4_K block: qs[32 * (e / 64) + e % 32],
// low nibble for the first 32 of each 64, high nibble for the second.
inline int q4k_bits(const uint8_t* qs, int e) { return (qs[32 * (e / 64) + e % 32] >> (4 * ((e % 64) / 32))) & 0xF; }

// Unpacks the 16 six-bit scales of a Q3_K block (returned minus 32, signed).
// Low 4 bits: nibbles of bytes 0..7 (low nibble = sub-blocks 0..7, high
// nibble = 8..15); top 2 bits: byte 8 + j%4, bit pair j/4.
inline void unpack_scales_q3k(const uint8_t* s, int8_t* out) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

// The same two unpackings with 32-bit word operations, for the SIMD
// kernels: Q4_K/Q5_K scales and mins as 8 bytes each (byte j = sub-block j).
inline void unpack_scales_k4_u64(const uint8_t* s, uint64_t* sc, uint64_t* mn) {
  uint32_t u[3];
  std::memcpy(u, s, 12);
  const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
  const uint32_t mn_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
  *sc = (u[0] & 0x3f3f3f3fu) | (static_cast<uint64_t>(sc_hi) << 32);
  *mn = (u[1] & 0x3f3f3f3fu) | (static_cast<uint64_t>(mn_hi) << 32);
}
// Q3_K: 16 bytes, byte j = scale j + 32 (0..63).
inline void unpack_scales_q3k_biased(const uint8_t* s, uint32_t out[4]) {
  uint32_t u[3];
  std::memcpy(u, s, 12);
  out[0] = (u[0] & 0x0f0f0f0fu) | (((u[2] >> 0) & 0x03030303u) << 4);
  out[1] = (u[1] & 0x0f0f0f0fu) | (((u[2] >> 2) & 0x03030303u) << 4);
  out[2] = ((u[0] >> 4) & 0x0f0f0f0fu) | (((u[2] >> 4) & 0x03030303u) << 4);
  out[3] = ((u[1] >> 4) & 0x0f0f0f0fu) | (((u[2] >> 6) & 0x03030303u) << 4);
}

}  // namespace lmhost::blocks

namespace lmhost::detail {
// A tile kernel from a row kernel: the fallback for types without a tile of their own.
template <VecDotFn F>
void tile_from_dot(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                   size_t os) {
  for (int r = 0; r < nw; ++r)
    for (int c = 0; c < na; ++c)
      out[r * os + c] = F(n, static_cast<const uint8_t*>(w) + r * ws, static_cast<const uint8_t*>(a) + c * as);
}

// Fill a kernel table with each ISA's entries (entries left untouched where
// the ISA has no kernel of its own). Defined in kernels_*.cpp.
void fill_scalar(Kernels& k);
void fill_avx2(Kernels& k);
void fill_avx512(Kernels& k);
}  // namespace lmhost::detail
