// Decode gemv kernels (one activation row against many weight rows), one
// weight row at a time: a single sequential stream per thread, which the
// hardware prefetcher follows best.
//
// Q5_0 (Kernels::gemv, next to Q4_0's in kernels_avx512.cpp) consumes the
// same prepared activation as Q4_0 (GemvAct: per group of 8 blocks the quants
// as [first 16 of blocks 0..3][last 16 of blocks 0..3][same for 4..7], 16
// scales and 16 corrections 8 * sum(q) in the lane layout [q, q, 4+q, 4+q]
// per 128-bit lane q). Byte permutes (VBMI) gather the weight nibbles and
// the fp16 scales into that order from overlapping 64-byte loads (none
// crosses the group's end); the 5th bit of each quant (qh) is added as 16
// under a byte mask, and the -16 offset is 2 * corr per block.
//
// Q8_0 (gemv.h, GemvActQ8): vpermt2b is slow on Zen 4 (measured: the four
// quant permutes per 8 blocks cost more than the rest of the kernel), so two
// blocks' quants come in with one 256-bit load plus one 256-bit insert, the
// activation is in plain order, and only the fp16 scales are permuted.
// Weights are signed; vpdpbusd needs one unsigned operand, so the weights are
// flipped to w + 128 (xor 0x80) and 128 * sum(a) is subtracted per block.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "tensor/blocks.h"
#include "tensor/gemv.h"

namespace lmhost::detail {
namespace {

using namespace lmhost::blocks;

struct Idx {
  alignas(64) uint8_t lo[64], hi[64], d[64];
};

// Q8_0: the fp16 scales of a quad of 4 blocks (block q at byte 34q) in the
// lane order of GemvActQ8: blocks [0,0,2,2 | 0,0,2,2 | 1,1,3,3 | 1,1,3,3].
constexpr Idx make_q8n_idx() {
  Idx x{};
  for (int j = 0; j < 16; ++j) {
    const int L = j / 4, slot = j % 4;
    const int q = (slot < 2 ? 0 : 2) + (L >= 2 ? 1 : 0);
    x.d[2 * j] = static_cast<uint8_t>(34 * q);
    x.d[2 * j + 1] = static_cast<uint8_t>(34 * q + 1);
  }
  return x;
}
constexpr Idx kQ8n = make_q8n_idx();
// bytes of the fp16 lanes with slot 0/1 (blocks 0..3) and slot 2/3 (blocks 4..7) in 32 bytes
constexpr __mmask64 kLoLanes = 0x0F0F0F0Full;
constexpr __mmask64 kHiLanes = 0xF0F0F0F0ull;

inline __m512 finish_group(__m512i pa, __m512i pb, __m512i dh, const GemvAct& act, int64_t g, int corr_shift,
                           __m512 acc) {
  __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(pa, pb), _mm512_unpackhi_epi64(pa, pb));
  t = _mm512_sub_epi32(t, _mm512_sll_epi32(_mm512_loadu_si512(act.corr + 16 * g), _mm_cvtsi32_si128(corr_shift)));
  const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, _mm512_loadu_ps(act.d + 16 * g)), acc);
}

// The blocks after the last (half) group: plain per-block products.
inline float q8_0_tail(const BlockQ8_0* x, const BlockQ8_0* y, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const __m256i k = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)), k);
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m256i p = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a),
                                       _mm256_dpbusd_epi32(_mm256_setzero_si256(), k, a));
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
    s += _cvtsh_ss(x[i].d) * _cvtsh_ss(y[i].d) * static_cast<float>(_mm_cvtsi128_si32(r));
  }
  return s;
}

// Two blocks' 32 quants, flipped to w + 128 (unsigned for vpdpbusd).
inline __m512i q8_pair(const uint8_t* p0, const uint8_t* p1, __m512i k80) {
  const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0))),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1)), 1);
  return _mm512_xor_si512(v, k80);
}
// [a0+a2, a1+a3, b0+b2, b1+b3] per 128-bit lane: 2-block partial sums -> the GemvActQ8 lane order
inline __m512i pair_reduce(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

#ifndef LMHOST_GEMV_Q8_PREFETCH
#define LMHOST_GEMV_Q8_PREFETCH 0
#endif
constexpr int kQ8Prefetch = LMHOST_GEMV_Q8_PREFETCH;

// 4 blocks (136 bytes): two 2-block partial-sum vectors reduced into the lane
// order [0,0,2,2 | 0,0,2,2 | 1,1,3,3 | 1,1,3,3], scales from one permute.
// Few instructions per byte keep many cache lines in flight when the weights
// stream from DRAM (the out-of-order window, not the ALUs, is the limit).
__attribute__((target("avx512vbmi"))) inline __m512 q8_quad(const uint8_t* p, const int8_t* a, const float* d,
                                                            const int32_t* corr, __m512i id, __m512i k80, __m512 acc) {
  if constexpr (kQ8Prefetch > 0) {
    _mm_prefetch(reinterpret_cast<const char*>(p) + kQ8Prefetch, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p) + kQ8Prefetch + 64, _MM_HINT_T0);
  }
  const __m512i pa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q8_pair(p + 2, p + 36, k80), _mm512_loadu_si512(a));
  const __m512i pb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q8_pair(p + 70, p + 104, k80), _mm512_loadu_si512(a + 64));
  const __m256i dh = _mm512_castsi512_si256(_mm512_permutex2var_epi8(_mm512_loadu_si512(p), id, _mm512_loadu_si512(p + 64)));
  const __m512i t = _mm512_sub_epi32(pair_reduce(pa, pb), _mm512_loadu_si512(corr));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(_mm512_cvtph_ps(dh), _mm512_loadu_ps(d)), acc);
}

__attribute__((target("avx512vbmi"))) void gemv_q8_0_nat(int64_t n, const void* w, size_t ws, int64_t rows,
                                                          const GemvActQ8& act, float* out) {
  const int64_t nb = n / QK, nq = nb / 4;  // quads of 4 blocks
  const __m512i id = _mm512_load_si512(kQ8n.d);
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(act.q8);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w) + r * ws;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t q = 0;
    for (; q + 2 <= nq; q += 2) {
      acc0 = q8_quad(row + 136 * q, act.qs + 128 * q, act.d + 16 * q, act.corr + 16 * q, id, k80, acc0);
      acc1 = q8_quad(row + 136 * q + 136, act.qs + 128 * q + 128, act.d + 16 * q + 16, act.corr + 16 * q + 16, id,
                     k80, acc1);
    }
    if (q < nq) acc0 = q8_quad(row + 136 * q, act.qs + 128 * q, act.d + 16 * q, act.corr + 16 * q, id, k80, acc0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (4 * nq < nb) s += q8_0_tail(reinterpret_cast<const BlockQ8_0*>(row) + 4 * nq, y + 4 * nq, nb - 4 * nq);
    out[r] = s;
  }
}

// Q5_0 (22-byte blocks: d, qh[4], qs[16]; low nibbles are quants 0..15, high
// nibbles 16..31, bit j of qh the 5th bit of quant j). Blocks 0..3 from the
// window at the group start (qs of block q at 22q + 6), blocks 4..7 from the
// window 48 bytes in (qs at 22q + 46), so no load passes the group's 176 bytes.
constexpr Idx make_q5_idx() {
  Idx x{};
  for (int k = 0; k < 64; ++k) {
    x.lo[k] = static_cast<uint8_t>(22 * (k / 16) + 6 + k % 16);   // window 0
    x.hi[k] = static_cast<uint8_t>(22 * (k / 16) + 46 + k % 16);  // window 48
  }
  for (int j = 0; j < 16; ++j) {
    const int q = j / 4;
    const int off = j % 4 < 2 ? 22 * q : 22 * q + 40;  // block 4+q at 88 + 22q, window 48
    x.d[2 * j] = static_cast<uint8_t>(off);
    x.d[2 * j + 1] = static_cast<uint8_t>(off + 1);
  }
  // bytes 32..47: qh of blocks 0..3 (window 0, at 22q + 2); 48..63: blocks 4..7 (window 48, at 22q + 42)
  for (int q = 0; q < 4; ++q)
    for (int b = 0; b < 4; ++b) {
      x.d[32 + 4 * q + b] = static_cast<uint8_t>(22 * q + 2 + b);
      x.d[48 + 4 * q + b] = static_cast<uint8_t>(22 * q + 42 + b);
    }
  return x;
}
constexpr Idx kQ5 = make_q5_idx();

// 64-bit byte masks from four 32-bit qh words: low halves (quants 0..15 of
// blocks 0..3, in order) and high halves (quants 16..31).
inline void q5_masks(__m128i qh, __mmask64* lo, __mmask64* hi) {
  const __m128i l = _mm_shuffle_epi8(qh, _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
  *lo = _cvtu64_mask64(static_cast<uint64_t>(_mm_cvtsi128_si64(l)));
  *hi = _cvtu64_mask64(static_cast<uint64_t>(_mm_extract_epi64(l, 1)));
}

__attribute__((target("avx512vbmi"))) void gemv_q5_0(int64_t n, const void* w, size_t ws, int64_t rows,
                                                      const GemvAct& act, float* out) {
  const int64_t nb = n / QK, ng = nb / 8;
  const bool half = nb - 8 * ng >= 4;
  const __m512i ilo = _mm512_load_si512(kQ5.lo), ihi = _mm512_load_si512(kQ5.hi), id = _mm512_load_si512(kQ5.d);
  const __m512i m4 = _mm512_set1_epi8(0x0F), k16 = _mm512_set1_epi8(16);
  const VecDotFn tail = kernels_for(Isa::AVX512).vec_dot[static_cast<uint32_t>(DType::Q5_0)];
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(act.q8);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w) + r * ws;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g <= ng; ++g) {
      const bool full = g < ng;
      if (!full && !half) break;
      const uint8_t* p = row + 176 * g;
      const int8_t* a = act.qs + 256 * g;
      // a half group has 88 bytes: window 0 loaded with a mask, window 48 unused
      const __m512i w0 = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(~__mmask64{0}, p);
      const __m512i w1 = full ? _mm512_loadu_si512(p + 64) : _mm512_maskz_loadu_epi8((__mmask64{1} << 24) - 1, p + 64);
      const __m512i w2 = full ? _mm512_loadu_si512(p + 48) : _mm512_setzero_si512();
      const __m512i w3 = full ? _mm512_loadu_si512(p + 112) : _mm512_setzero_si512();
      const __m512i qa = _mm512_permutex2var_epi8(w0, ilo, w1);
      const __m512i qb = _mm512_permutex2var_epi8(w2, ihi, w3);
      // scales and qh: window 0 for blocks 0..3, window 48 for 4..7
      const __m512i sa = _mm512_permutex2var_epi8(w0, id, w1);
      const __m512i sb = _mm512_permutex2var_epi8(w2, id, w3);
      const __m512i dh = _mm512_mask_blend_epi8(kHiLanes, sa, sb);
      __mmask64 ka_lo, ka_hi, kb_lo, kb_hi;
      q5_masks(_mm512_extracti32x4_epi32(sa, 2), &ka_lo, &ka_hi);
      q5_masks(_mm512_extracti32x4_epi32(sb, 3), &kb_lo, &kb_hi);
      __m512i al = _mm512_and_si512(qa, m4), ah = _mm512_and_si512(_mm512_srli_epi16(qa, 4), m4);
      al = _mm512_mask_add_epi8(al, ka_lo, al, k16);
      ah = _mm512_mask_add_epi8(ah, ka_hi, ah, k16);
      __m512i pa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), al, _mm512_loadu_si512(a));
      pa = _mm512_dpbusd_epi32(pa, ah, _mm512_loadu_si512(a + 64));
      __m512i pb = _mm512_setzero_si512();
      if (full) {
        __m512i bl = _mm512_and_si512(qb, m4), bh = _mm512_and_si512(_mm512_srli_epi16(qb, 4), m4);
        bl = _mm512_mask_add_epi8(bl, kb_lo, bl, k16);
        bh = _mm512_mask_add_epi8(bh, kb_hi, bh, k16);
        pb = _mm512_dpbusd_epi32(pb, bl, _mm512_loadu_si512(a + 128));
        pb = _mm512_dpbusd_epi32(pb, bh, _mm512_loadu_si512(a + 192));
      }
      acc = finish_group(pa, pb, full ? dh : _mm512_maskz_mov_epi8(kLoLanes, dh), act, g, 1, acc);
    }
    const int64_t done = 8 * ng + (half ? 4 : 0);
    float s = _mm512_reduce_add_ps(acc);
    if (done < nb)
      s += tail((nb - done) * QK, reinterpret_cast<const BlockQ5_0*>(row) + done, y + done);
    out[r] = s;
  }
}

}  // namespace

void fill_gemv_avx512(Kernels& k) {
  if (!__builtin_cpu_supports("avx512vbmi")) return;
  k.gemv[static_cast<uint32_t>(DType::Q5_0)] = gemv_q5_0;
}

GemvQ8Fn gemv_q8_0_avx512() { return __builtin_cpu_supports("avx512vbmi") ? gemv_q8_0_nat : nullptr; }

}  // namespace lmhost::detail
