// Products with weights in the packed layouts of packed.h (AVX-512 VNNI).
//
// Per block of a 16-row group, 8 vectors hold 4 quants of each of the 16
// rows (row i in 32-bit lane i) as unsigned bytes: Q4_0_X16 from four
// 64-byte loads split into low and high nibbles, Q5_0_X16 the same with
// each byte's 5th bit from one more load, Q8_0_X16 from eight loads
// (stored + 128). Vector j pairs with the activation quants 4j..4j+3 in both.
// For each token, 8 vpdpbusd multiply them with the token's 4-quant chunks
// broadcast to every lane, starting from the block's offset correction
// (-8 * sum(a) for Q4_0's q - 8, -16 * sum(a) for Q5_0's q - 16, -128 *
// sum(a) for Q8_0's + 128), so each lane ends with row i's exact integer
// block dot product; one convert and one FMA with (16 row scales, one
// vcvtph2ps) x the token's scale accumulate it.
// A decoded block stays in registers for up to 4 tokens; no byte permutes and
// no per-row horizontal sums.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "tensor/blocks.h"
#include "tensor/kernels.h"

namespace lmhost::detail {
namespace {

using blocks::BlockQ8_0;

// 16 fp16 values (the 16 rows' scales of a packed block) as floats.
inline __m512 load_ph16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The activation rows of tokens t0 .. t0 + NT - 1 and zeroed accumulators.
template <class Row, int NT>
inline void start_tokens(const PackedAct& act, int64_t t0, const Row* (&y)[NT], __m512 (&acc)[NT]) {
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    y[t] = reinterpret_cast<const Row*>(static_cast<const uint8_t*>(act.q8) + (t0 + t) * act.q8_stride);
    acc[t] = _mm512_setzero_ps();
  }
}

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Runs a group kernel (instantiated for 4, 3, 2 and 1 tokens) over the
// 16-row groups, tokens by 4.
template <void (*G4)(const uint8_t*, int64_t, const PackedAct&, int64_t, float*, size_t),
          void (*G3)(const uint8_t*, int64_t, const PackedAct&, int64_t, float*, size_t),
          void (*G2)(const uint8_t*, int64_t, const PackedAct&, int64_t, float*, size_t),
          void (*G1)(const uint8_t*, int64_t, const PackedAct&, int64_t, float*, size_t)>
void run_groups(int64_t nblocks, size_t group_bytes, const void* w, int64_t rows, const PackedAct& act, float* out,
                size_t os) {
  for (int64_t g = 0; g < rows / kPackRows; ++g) {
    const uint8_t* gp = static_cast<const uint8_t*>(w) + g * group_bytes;
    float* o = out + g * kPackRows;
    int64_t t = 0;
    for (; t + 4 <= act.T; t += 4) G4(gp, nblocks, act, t, o, os);
    switch (act.T - t) {
      case 3: G3(gp, nblocks, act, t, o, os); break;
      case 2: G2(gp, nblocks, act, t, o, os); break;
      case 1: G1(gp, nblocks, act, t, o, os); break;
      default: break;
    }
  }
}

struct Q4x16 {
  static constexpr size_t kBlock = 288;  // bytes per block of a group
  static constexpr int kCorrShift = 3;   // correction -8 * sum(a)
  static void decode(const uint8_t* q, __m512i (&w)[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512i v = _mm512_loadu_si512(q + 64 * j);
      w[j] = _mm512_and_si512(v, m4);                             // elements 4j..4j+3
      w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);  // elements 16+4j..
    }
  }
};
struct Q8x16 {
  static constexpr size_t kBlock = 544;
  static constexpr int kCorrShift = 7;  // -128 * sum(a)
  static void decode(const uint8_t* q, __m512i (&w)[8]) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) w[j] = _mm512_loadu_si512(q + 64 * j);
  }
};

// Bit s of every byte of h moved to bit 4 (an epi16 shift by at most 4 keeps
// that bit inside its byte; the caller masks the rest off).
inline __m512i bit_to4(__m512i h, int s) {
  switch (s) {
    case 0: return _mm512_slli_epi16(h, 4);
    case 1: return _mm512_slli_epi16(h, 3);
    case 2: return _mm512_slli_epi16(h, 2);
    case 3: return _mm512_slli_epi16(h, 1);
    case 4: return h;
    case 5: return _mm512_srli_epi16(h, 1);
    case 6: return _mm512_srli_epi16(h, 2);
    default: return _mm512_srli_epi16(h, 3);
  }
}
// nibbles | (bit s of h at bit 4): a 5-bit quant
inline __m512i with_bit5(__m512i nib, __m512i h, int s) {
  return _mm512_ternarylogic_epi32(nib, bit_to4(h, s), _mm512_set1_epi8(0x10), 0xF8);  // a | (b & c)
}

struct Q5x16 {
  static constexpr size_t kBlock = 352;
  static constexpr int kCorrShift = 4;  // -16 * sum(a)
  static void decode(const uint8_t* q, __m512i (&w)[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i h = _mm512_loadu_si512(q);  // byte c bit u: the 5th bit of element 4u + c
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512i v = _mm512_loadu_si512(q + 64 + 64 * j);
      w[j] = with_bit5(_mm512_and_si512(v, m4), h, j);
      w[4 + j] = with_bit5(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), h, 4 + j);
    }
  }
};

// Tokens [t0, t0 + NT) against one 16-row group of nb blocks.
template <class L, int NT>
inline void group_x16(const uint8_t* g, int64_t nb, const PackedAct& act, int64_t t0, float* out, size_t os) {
  const BlockQ8_0* y[NT];
  const float* d[NT];
  const int32_t* sum[NT];
  __m512 acc[NT];
  start_tokens(act, t0, y, acc);
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    d[t] = act.d + (t0 + t) * nb;
    sum[t] = act.sum + (t0 + t) * nb;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = g + b * L::kBlock;
    const __m512 dw = load_ph16(p);
    __m512i w[8];
    L::decode(p + 32, w);
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const int8_t* a = y[t][b].qs;
      // two chains of 4 (vpdpbusd latency)
      __m512i s0 = _mm512_dpbusd_epi32(_mm512_set1_epi32(-(sum[t][b] << L::kCorrShift)), w[0], bcast4(a));
      __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[4], bcast4(a + 16));
      s0 = _mm512_dpbusd_epi32(s0, w[1], bcast4(a + 4));
      s1 = _mm512_dpbusd_epi32(s1, w[5], bcast4(a + 20));
      s0 = _mm512_dpbusd_epi32(s0, w[2], bcast4(a + 8));
      s1 = _mm512_dpbusd_epi32(s1, w[6], bcast4(a + 24));
      s0 = _mm512_dpbusd_epi32(s0, w[3], bcast4(a + 12));
      s1 = _mm512_dpbusd_epi32(s1, w[7], bcast4(a + 28));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(dw, _mm512_set1_ps(d[t][b])),
                               acc[t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + (t0 + t) * os, acc[t]);
}

template <class L>
void gemv_x16(int64_t n, const void* w, int64_t rows, const PackedAct& act, float* out, size_t os) {
  const int64_t nb = n / blocks::QK;
  run_groups<group_x16<L, 4>, group_x16<L, 3>, group_x16<L, 2>, group_x16<L, 1>>(nb, nb * L::kBlock, w, rows, act,
                                                                                  out, os);
}

// Q6_K_X16 (packed.h) against Q8_K activations: per 32 elements of a
// super-block, six loads give the 8 vectors of 6-bit quants (low nibbles of
// L, top bits of H moved to bits 4..5); per 16-element sub-block 4 vpdpbusd
// from -32 * bsum (q - 32), one multiply by the 16 rows' scales, and the
// super-block's integer sum converts once with d * d_a.
inline __m512i q6_high(__m512i h, int u) {  // bits 2u..2u+1 of each byte -> bits 4..5
  const __m512i m = _mm512_set1_epi8(0x30);
  switch (u) {
    case 0: return _mm512_and_si512(_mm512_slli_epi16(h, 4), m);
    case 1: return _mm512_and_si512(_mm512_slli_epi16(h, 2), m);
    case 2: return _mm512_and_si512(h, m);
    default: return _mm512_and_si512(_mm512_srli_epi16(h, 2), m);
  }
}

template <int NT>
inline void group_q6_k(const uint8_t* g, int64_t nsb, const PackedAct& act, int64_t t0, float* out, size_t os) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const blocks::BlockQ8_K* y[NT];
  __m512 acc[NT];
  start_tokens(act, t0, y, acc);
  for (int64_t i = 0; i < nsb; ++i) {
    const uint8_t* p = g + i * 3360;
    const __m512 dw = load_ph16(p);
    __m512i tot[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) tot[t] = _mm512_setzero_si512();
    for (int E = 0; E < 8; ++E) {
      const uint8_t* q = p + 288 + 384 * E;
      const __m512i h0 = _mm512_loadu_si512(q + 256), h1 = _mm512_loadu_si512(q + 320);
      __m512i w[8];
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m512i l = _mm512_loadu_si512(q + 64 * k);
        w[k] = _mm512_or_si512(_mm512_and_si512(l, m4), q6_high(h0, k));
        w[4 + k] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), q6_high(h1, k));
      }
      const __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32 + 32 * E)));
      const __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 48 + 32 * E)));
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) {
        const int8_t* a = y[t][i].qs + 32 * E;
        __m512i s0 = _mm512_set1_epi32(-32 * y[t][i].bsums[2 * E]);
        __m512i s1 = _mm512_set1_epi32(-32 * y[t][i].bsums[2 * E + 1]);
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
          s0 = _mm512_dpbusd_epi32(s0, w[u], bcast4(a + 4 * u));
          s1 = _mm512_dpbusd_epi32(s1, w[4 + u], bcast4(a + 16 + 4 * u));
        }
        tot[t] = _mm512_add_epi32(tot[t], _mm512_add_epi32(_mm512_mullo_epi32(s0, sc0), _mm512_mullo_epi32(s1, sc1)));
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t)
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot[t]), _mm512_mul_ps(dw, _mm512_set1_ps(y[t][i].d)), acc[t]);
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + (t0 + t) * os, acc[t]);
}

// Bytes of one super-block of a 16-row group: Q4_K_X16, Q5_K_X16 (packed.h).
constexpr size_t k4_block(bool q5) { return q5 ? 2816 : 2304; }

// Q4_K_X16 (packed.h) against Q8_K activations: per pair of 32-element
// sub-blocks, eight loads split into 16 vectors of nibbles (one sub-block in
// the low, the next in the high nibbles); per sub-block 8 vpdpbusd, one
// multiply by the 16 rows' 6-bit scales; the mins' term is the rows' mins
// times the token's quant sums (Q8_K bsums), subtracted with dmin * d_a.
// Q5_K_X16 (Q5 = true) adds each quant's 5th bit from the pair's two
// vectors of 5th bits.
template <bool Q5, int NT>
inline void group_k4(const uint8_t* g, int64_t nsb, const PackedAct& act, int64_t t0, float* out, size_t os) {
  constexpr size_t kPair = Q5 ? 640 : 512, kQs = Q5 ? 128 : 0;  // per pair of sub-blocks: 5th bits, then quants
  const __m128i m63 = _mm_set1_epi8(63), m15 = _mm_set1_epi8(15), m3 = _mm_set1_epi8(3);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const blocks::BlockQ8_K* y[NT];
  __m512 acc[NT];
  start_tokens(act, t0, y, acc);
  for (int64_t i = 0; i < nsb; ++i) {
    const uint8_t* p = g + i * k4_block(Q5);
    const __m512 dw = load_ph16(p);
    const __m512 dm = load_ph16(p + 32);
    auto sbytes = [&](int k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 64 + 16 * k)); };
    __m512i tot[NT], mtot[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) tot[t] = mtot[t] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = p + 256 + kPair * c + kQs;
      __m512i g0, g1;  // Q5_K: the pair's 5th bits (packed.h)
      if constexpr (Q5) g0 = _mm512_loadu_si512(q - 128), g1 = _mm512_loadu_si512(q - 64);
      __m512i slo[NT], shi[NT];
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) slo[t] = shi[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_loadu_si512(q + 64 * k);
        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        if constexpr (Q5) {
          lo = with_bit5(lo, g0, k);
          hi = with_bit5(hi, g1, k);
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; ++t) {
          const int8_t* a = y[t][i].qs + 64 * c + 4 * k;
          slo[t] = _mm512_dpbusd_epi32(slo[t], lo, bcast4(a));
          shi[t] = _mm512_dpbusd_epi32(shi[t], hi, bcast4(a + 32));
        }
      }
      // scales and mins of sub-blocks 2c and 2c + 1 (packed.h)
      const __m128i b0 = sbytes(2 * c), b1 = sbytes(2 * c + 1), bm = sbytes(8 + c);
      const __m512i sc0 = _mm512_cvtepu8_epi32(_mm_and_si128(b0, m63));
      const __m512i sc1 = _mm512_cvtepu8_epi32(_mm_and_si128(b1, m63));
      const __m512i mn0 = _mm512_cvtepu8_epi32(
          _mm_or_si128(_mm_and_si128(bm, m15), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(b0, 6), m3), 4)));
      const __m512i mn1 = _mm512_cvtepu8_epi32(_mm_or_si128(
          _mm_and_si128(_mm_srli_epi16(bm, 4), m15), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(b1, 6), m3), 4)));
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) {
        const int16_t* bs = y[t][i].bsums + 4 * c;
        tot[t] = _mm512_add_epi32(tot[t], _mm512_add_epi32(_mm512_mullo_epi32(slo[t], sc0), _mm512_mullo_epi32(shi[t], sc1)));
        mtot[t] = _mm512_add_epi32(mtot[t], _mm512_add_epi32(_mm512_mullo_epi32(mn0, _mm512_set1_epi32(bs[0] + bs[1])),
                                                             _mm512_mullo_epi32(mn1, _mm512_set1_epi32(bs[2] + bs[3]))));
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const __m512 da = _mm512_set1_ps(y[t][i].d);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot[t]), _mm512_mul_ps(dw, da), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mtot[t]), _mm512_mul_ps(dm, da), acc[t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(out + (t0 + t) * os, acc[t]);
}

void gemv_q6_k_x16(int64_t n, const void* w, int64_t rows, const PackedAct& act, float* out, size_t os) {
  const int64_t nsb = n / blocks::QK_K;
  run_groups<group_q6_k<4>, group_q6_k<3>, group_q6_k<2>, group_q6_k<1>>(nsb, nsb * 3360, w, rows, act, out, os);
}

template <bool Q5>
void gemv_k4_x16(int64_t n, const void* w, int64_t rows, const PackedAct& act, float* out, size_t os) {
  const int64_t nsb = n / blocks::QK_K;
  run_groups<group_k4<Q5, 4>, group_k4<Q5, 3>, group_k4<Q5, 2>, group_k4<Q5, 1>>(nsb, nsb * k4_block(Q5), w, rows,
                                                                                act, out, os);
}

}  // namespace

void fill_packed_avx512(Kernels& k) {
  k.gemv_packed[static_cast<uint32_t>(DType::Q4_K_X16)] = gemv_k4_x16<false>;
  k.gemv_packed[static_cast<uint32_t>(DType::Q5_K_X16)] = gemv_k4_x16<true>;
  k.gemv_packed[static_cast<uint32_t>(DType::Q6_K_X16)] = gemv_q6_k_x16;
  k.gemv_packed[static_cast<uint32_t>(DType::Q4_0_X16)] = gemv_x16<Q4x16>;
  k.gemv_packed[static_cast<uint32_t>(DType::Q8_0_X16)] = gemv_x16<Q8x16>;
  k.gemv_packed[static_cast<uint32_t>(DType::Q5_0_X16)] = gemv_x16<Q5x16>;
}

}  // namespace lmhost::detail
