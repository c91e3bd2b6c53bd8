// Prompt-processing matmul kernels (Kernels::gemm) with AVX-512 VNNI.
//
// Layout of the work: a zmm register holds 16 int32 lanes, one per token of a
// group of 16 (GemmAct: activations transposed once per matmul, quants + 128
// as unsigned bytes). A panel of 16 weight rows is decoded once to signed
// bytes (per-thread buffer) and reused for every token group: per 32-element
// block and weight row, 8 vpdpbusd with the row's 4-byte quads broadcast
// from memory produce the row's block dot product for all 16 tokens, then
// one convert and one FMA scale it by d_w * d_a. The +128 bias of the
// activations is removed by starting the integer sum at -128 * sum(w).
//
// Per 16 rows x 16 tokens x 32 elements that is 8 vpdpbusd + 4 other vector
// operations, against 4x4 tiles' 16 x 4 operations for half as many products
// (vec_dot_tile re-decodes each weight block for every 4 tokens).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "tensor/blocks.h"
#include "tensor/exp_avx512.h"

namespace lmhost::detail {
namespace {

using namespace lmhost::blocks;

constexpr int kRows = 16;  // weight rows per panel
static_assert(kGemmTokens == 16, "one token per 32-bit lane of a zmm register");

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Sum of 32 signed bytes.
inline int32_t sum_s8_32(__m256i v) {
  const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))),
                                    _mm256_setzero_si256());
  __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
  return _mm_cvtsi128_si32(t) - 128 * 32;
}

// 16 nibbles -> 32 bytes in element order (low nibbles = elements 0..15).
inline __m256i nibbles_32(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

// Block decoders: one weight block -> its 32 quants as signed bytes.
struct DecQ4_0 {
  using W = BlockQ4_0;
  static __m256i dec(const W& x) { return _mm256_sub_epi8(nibbles_32(x.qs), _mm256_set1_epi8(8)); }
};
struct DecQ5_0 {
  using W = BlockQ5_0;
  static __m256i dec(const W& x) {
    uint32_t qh;
    std::memcpy(&qh, x.qh, 4);
    const __m256i lo = nibbles_32(x.qs);
    // bit j of qh is bit 4 of element j
    return _mm256_sub_epi8(_mm256_mask_add_epi8(lo, static_cast<__mmask32>(qh), lo, _mm256_set1_epi8(16)),
                           _mm256_set1_epi8(16));
  }
};
struct DecQ8_0 {
  using W = BlockQ8_0;
  static __m256i dec(const W& x) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs)); }
};

// A decoded panel: per block b, rows 0..15: 32 signed quants at q + (b * 16 + r) * 32,
// scale d[b * 16 + r], integer start value corr[b * 16 + r] = -128 * sum(quants).
struct Panel {
  int8_t* q;
  float* d;
  int32_t* corr;
};

Panel panel_buffer(int64_t nb) {
  thread_local std::vector<uint8_t> buf;
  const size_t per_block = kRows * (32 + sizeof(float) + sizeof(int32_t));
  const size_t need = static_cast<size_t>(nb) * per_block + 64;
  if (buf.size() < need) buf.resize(need);
  uint8_t* base = buf.data();
  base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
  Panel p;
  p.q = reinterpret_cast<int8_t*>(base);
  p.d = reinterpret_cast<float*>(base + nb * kRows * 32);
  p.corr = reinterpret_cast<int32_t*>(base + nb * kRows * (32 + sizeof(float)));
  return p;
}

template <class D>
void decode_panel(const uint8_t* w, size_t ws, int nr, int64_t nb, const Panel& p) {
  using W = typename D::W;
  for (int r = 0; r < kRows; ++r) {
    if (r >= nr) {
      for (int64_t b = 0; b < nb; ++b) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p.q + (b * kRows + r) * 32), _mm256_setzero_si256());
        p.d[b * kRows + r] = 0.0f;
        p.corr[b * kRows + r] = 0;
      }
      continue;
    }
    const W* x = reinterpret_cast<const W*>(w + r * ws);
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i v = D::dec(x[b]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p.q + (b * kRows + r) * 32), v);
      p.d[b * kRows + r] = h2f(x[b].d);
      p.corr[b * kRows + r] = -128 * sum_s8_32(v);
    }
  }
}

// One token group against a decoded panel: acc[r] lane t = row r . token t.
inline void panel_group(const Panel& p, int64_t nb, const uint8_t* aq, const float* ad, __m512 (&acc)[kRows]) {
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i a[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) a[j] = _mm512_loadu_si512(aq + b * 512 + 64 * j);
    const __m512 da = _mm512_loadu_ps(ad + b * kGemmTokens);
    const int8_t* wq = p.q + b * kRows * 32;
    const float* wd = p.d + b * kRows;
    const int32_t* wc = p.corr + b * kRows;
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      // Two independent chains of 4 (vpdpbusd latency), joined by one add.
      __m512i s0 = _mm512_set1_epi32(wc[r]);
      __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), a[4], _mm512_set1_epi32(load_i32(wq + r * 32 + 16)));
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) s0 = _mm512_dpbusd_epi32(s0, a[j], _mm512_set1_epi32(load_i32(wq + r * 32 + 4 * j)));
#pragma GCC unroll 3
      for (int j = 5; j < 8; ++j) s1 = _mm512_dpbusd_epi32(s1, a[j], _mm512_set1_epi32(load_i32(wq + r * 32 + 4 * j)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(da, _mm512_set1_ps(wd[r])), acc[r]);
    }
  }
}

template <class D>
void gemm_leg(const void* w, size_t ws, int64_t rows, const GemmAct& act, int64_t g0, int64_t g1, float* out,
              size_t os) {
  const int64_t nb = act.n / QK;
  const Panel p = panel_buffer(nb);
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kRows, rows - r0));
    decode_panel<D>(static_cast<const uint8_t*>(w) + r0 * ws, ws, nr, nb, p);
    for (int64_t g = g0; g < g1; ++g) {
      __m512 acc[kRows];
      panel_group(p, nb, act.q + g * nb * 512, act.d + g * nb * kGemmTokens, acc);
      alignas(64) float tmp[kRows][kGemmTokens];
#pragma GCC unroll 16
      for (int r = 0; r < kRows; ++r) _mm512_store_ps(tmp[r], acc[r]);
      const int nt = static_cast<int>(std::min<int64_t>(kGemmTokens, act.T - g * kGemmTokens));
      for (int t = 0; t < nt; ++t) {
        float* o = out + (g * kGemmTokens + t) * os + r0;
        for (int r = 0; r < nr; ++r) o[r] = tmp[r][t];
      }
    }
  }
}


// ------------------------------------------------------------------ K-quants
//
// Q4_K (8 sub-blocks of 32, 6-bit scale and min each) and Q6_K (16 of 16,
// int8 scales) against Q8_K activations. Per sub-block (kSub elements) the
// integer dot product P_s for 16 tokens comes from kSub / 4 vpdpbusd as in
// the legacy kernel; sum_s scale_s * P_s is accumulated in int32 (vpmulld),
// then scaled once per super-block by d_w * d_a. Q4_K's mins use the token
// groups' block sums: 4 vpdpwssd of (min 2p, min 2p+1) pairs against the
// activation's (sum 2p, sum 2p+1) pairs, scaled by -dmin * d_a.

// A decoded K-quant panel, per super-block i and row r (index ir = i * 16 + r):
// 256 signed quants at q + ir * 256; 16 sub-block scales and start values
// (-128 * sum of the sub-block's quants) at sc / corr + ir * 16; Q4_K: the
// mins as int16 pairs at mp + ir * 4; the scales d[ir] and -dmin in dm[ir].
struct KPanel {
  int8_t* q;
  int32_t* sc;
  int32_t* corr;
  int32_t* mp;
  float* d;
  float* dm;
};

KPanel kpanel_buffer(int64_t nsb) {
  thread_local std::vector<uint8_t> buf;
  const size_t per = kRows * (256 + 16 * 4 + 16 * 4 + 4 * 4 + 4 + 4);
  const size_t need = static_cast<size_t>(nsb) * per + 64;
  if (buf.size() < need) buf.resize(need);
  uint8_t* base = buf.data();
  base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
  const size_t n = static_cast<size_t>(nsb) * kRows;
  KPanel p;
  p.q = reinterpret_cast<int8_t*>(base);
  p.sc = reinterpret_cast<int32_t*>(base + n * 256);
  p.corr = p.sc + n * 16;
  p.mp = p.corr + n * 16;
  p.d = reinterpret_cast<float*>(p.mp + n * 4);
  p.dm = p.d + n;
  return p;
}

// Sums of the two 16-byte halves of 32 signed bytes.
inline void sum_s8_16x2(__m256i v, int32_t* lo, int32_t* hi) {
  const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))),
                                    _mm256_setzero_si256());
  alignas(32) int64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), s);
  *lo = static_cast<int32_t>(t[0] + t[1]) - 128 * 16;
  *hi = static_cast<int32_t>(t[2] + t[3]) - 128 * 16;
}

struct DecQ4_K {
  using W = BlockQ4_K;
  static constexpr int kSub = 32;
  static constexpr bool kMin = true;
  static void dec(const W& x, int8_t* q, int32_t* sc, int32_t* corr, int32_t* mp, float* d, float* dm) {
    uint8_t s8[8], m8[8];
    unpack_scales_k4(x.scales, s8, m8);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
      const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 64 * c), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 64 * c + 32), hi);
      corr[2 * c] = -128 * sum_s8_32(lo);
      corr[2 * c + 1] = -128 * sum_s8_32(hi);
    }
    for (int s = 0; s < 8; ++s) sc[s] = s8[s];
    for (int p = 0; p < 4; ++p) mp[p] = static_cast<int32_t>(m8[2 * p] | (static_cast<uint32_t>(m8[2 * p + 1]) << 16));
    *d = h2f(x.d);
    *dm = -h2f(x.dmin);
  }
};

struct DecQ6_K {
  using W = BlockQ6_K;
  static constexpr int kSub = 16;
  static constexpr bool kMin = false;
  static void dec(const W& x, int8_t* q, int32_t* sc, int32_t* corr, int32_t*, float* d, float* dm) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), k32 = _mm256_set1_epi8(32);
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * h));
      __m256i v[4];
      v[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
      v[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
      v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
      v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
      for (int c = 0; c < 4; ++c) {
        const __m256i sv = _mm256_sub_epi8(v[c], k32);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 128 * h + 32 * c), sv);
        int32_t lo, hi;
        sum_s8_16x2(sv, &lo, &hi);
        corr[8 * h + 2 * c] = -128 * lo;
        corr[8 * h + 2 * c + 1] = -128 * hi;
      }
    }
    for (int s = 0; s < 16; ++s) sc[s] = x.scales[s];
    *d = h2f(x.d);
    *dm = 0.0f;
  }
};

template <class D>
void decode_kpanel(const uint8_t* w, size_t ws, int nr, int64_t nsb, const KPanel& p) {
  using W = typename D::W;
  for (int r = 0; r < kRows; ++r) {
    const W* x = r < nr ? reinterpret_cast<const W*>(w + r * ws) : nullptr;
    for (int64_t i = 0; i < nsb; ++i) {
      const int64_t ir = i * kRows + r;
      if (!x) {
        std::memset(p.q + ir * 256, 0, 256);
        std::memset(p.sc + ir * 16, 0, 16 * sizeof(int32_t));
        std::memset(p.corr + ir * 16, 0, 16 * sizeof(int32_t));
        std::memset(p.mp + ir * 4, 0, 4 * sizeof(int32_t));
        p.d[ir] = 0.0f;
        p.dm[ir] = 0.0f;
        continue;
      }
      D::dec(x[i], p.q + ir * 256, p.sc + ir * 16, p.corr + ir * 16, p.mp + ir * 4, p.d + ir, p.dm + ir);
    }
  }
}

// One token group against 8 rows (rb..rb+7) of a decoded K-quant panel.
template <class D>
inline void kpanel_group(const KPanel& p, int rb, int64_t nsb, const GemmAct& act, int64_t g, __m512 (&acc)[8]) {
  constexpr int kR = 8;
  constexpr int kQuads = D::kSub / 4;  // vpdpbusd per sub-block
#pragma GCC unroll 8
  for (int r = 0; r < kR; ++r) acc[r] = _mm512_setzero_ps();
  const uint8_t* aq = act.q + g * nsb * 8 * 512;
  for (int64_t i = 0; i < nsb; ++i) {
    __m512i tot[kR];
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) tot[r] = _mm512_setzero_si512();
    for (int b = 0; b < 8; ++b) {  // 32-element blocks of the super-block
      __m512i a[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) a[j] = _mm512_loadu_si512(aq + (i * 8 + b) * 512 + 64 * j);
#pragma GCC unroll 2
      for (int h = 0; h < 32 / D::kSub; ++h) {
        const int s = b * (32 / D::kSub) + h;  // sub-block index
#pragma GCC unroll 8
        for (int r = 0; r < kR; ++r) {
          const int64_t ir = i * kRows + rb + r;
          const int8_t* wq = p.q + ir * 256 + 32 * b + 4 * kQuads * h;
          __m512i ps = _mm512_set1_epi32(p.corr[ir * 16 + s]);
#pragma GCC unroll 8
          for (int j = 0; j < kQuads; ++j)
            ps = _mm512_dpbusd_epi32(ps, a[kQuads * h + j], _mm512_set1_epi32(load_i32(wq + 4 * j)));
          tot[r] = _mm512_add_epi32(tot[r], _mm512_mullo_epi32(ps, _mm512_set1_epi32(p.sc[ir * 16 + s])));
        }
      }
    }
    const __m512 da = _mm512_loadu_ps(act.d + (g * nsb + i) * kGemmTokens);
    __m512i sums[4];
    if constexpr (D::kMin) {
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) sums[q] = _mm512_loadu_si512(act.sums + (g * nsb + i) * 64 + 16 * q);
    }
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) {
      const int64_t ir = i * kRows + rb + r;
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot[r]), _mm512_mul_ps(da, _mm512_set1_ps(p.d[ir])), acc[r]);
      if constexpr (D::kMin) {
        __m512i m = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) m = _mm512_dpwssd_epi32(m, sums[q], _mm512_set1_epi32(p.mp[ir * 4 + q]));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(da, _mm512_set1_ps(p.dm[ir])), acc[r]);
      }
    }
  }
}

template <class D>
void gemm_k(const void* w, size_t ws, int64_t rows, const GemmAct& act, int64_t g0, int64_t g1, float* out,
            size_t os) {
  const int64_t nsb = act.n / QK_K;
  const KPanel p = kpanel_buffer(nsb);
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kRows, rows - r0));
    decode_kpanel<D>(static_cast<const uint8_t*>(w) + r0 * ws, ws, nr, nsb, p);
    for (int64_t g = g0; g < g1; ++g) {
      alignas(64) float tmp[kRows][kGemmTokens];
      for (int rb = 0; rb < nr; rb += 8) {
        __m512 acc[8];
        kpanel_group<D>(p, rb, nsb, act, g, acc);
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) _mm512_store_ps(tmp[rb + r], acc[r]);
      }
      const int nt = static_cast<int>(std::min<int64_t>(kGemmTokens, act.T - g * kGemmTokens));
      for (int t = 0; t < nt; ++t) {
        float* o = out + (g * kGemmTokens + t) * os + r0;
        for (int r = 0; r < nr; ++r) o[r] = tmp[r][t];
      }
    }
  }
}


// ----------------------------------------------------------------- attention
//
// The F16-cache attention of one query head (Kernels::attn_f16, same
// roundings as ops::attend_head's portable loop) for long contexts, as in
// prompt processing: scores of 16 keys at a time, summed across lanes by a
// transpose tree into one vector (instead of one horizontal sum per key),
// exp of 16 scores at once, and two accumulator sets for the values.

inline __m512 load_h(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// Lane u = the sum of the 16 lanes of s[u].
inline __m512 hsum16(__m512 (&s)[16]) {
  __m512 t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)
    t[i] = _mm512_add_ps(_mm512_unpacklo_ps(s[2 * i], s[2 * i + 1]), _mm512_unpackhi_ps(s[2 * i], s[2 * i + 1]));
  __m512 u[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
    u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  // u[i]: per 128-bit chunk L, partial sums of keys 4i..4i+3.
  const __m512 v01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
  const __m512 v23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(v01, v23, 0x88), _mm512_shuffle_f32x4(v01, v23, 0xDD));
}

void attn_f16_blocked(const float* q, const uint16_t* k, const uint16_t* v, int64_t ks, int64_t vs, int n_pos,
                      int hdk, int hdv, float scale, float* scores, float* out) {
  const int nk = hdk / 16, nv = hdv / 16;
  __m512 qr[16];
  for (int c = 0; c < nk; ++c)  // q rounded to F16, as the reference computes with an F16 cache
    qr[c] = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(q + 16 * c), _MM_FROUND_TO_NEAREST_INT));
  const __m512 vscale = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 16 <= n_pos; j += 16) {
    __m512 s[16];
#pragma GCC unroll 16
    for (int u = 0; u < 16; ++u) {
      const uint16_t* kj = k + (j + u) * ks;
      __m512 a = _mm512_mul_ps(qr[0], load_h(kj));
      for (int c = 1; c < nk; ++c) a = _mm512_fmadd_ps(qr[c], load_h(kj + 16 * c), a);
      s[u] = a;
    }
    const __m512 sc = _mm512_mul_ps(hsum16(s), vscale);
    _mm512_storeu_ps(scores + j, sc);
    vmax = _mm512_max_ps(vmax, sc);
  }
  float mx = _mm512_reduce_max_ps(vmax);
  for (; j < n_pos; ++j) {
    const uint16_t* kj = k + j * ks;
    __m512 a = _mm512_mul_ps(qr[0], load_h(kj));
    for (int c = 1; c < nk; ++c) a = _mm512_fmadd_ps(qr[c], load_h(kj + 16 * c), a);
    const float sc = _mm512_reduce_add_ps(a) * scale;
    scores[j] = sc;
    mx = sc > mx ? sc : mx;
  }
  // Softmax: exponentials summed in double, then probabilities rounded to F16.
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
  for (j = 0; j < n_pos; j += 16) {
    const __mmask16 m = n_pos - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n_pos - j)) - 1);
    const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + j), vmx)));
    _mm512_mask_storeu_ps(scores + j, m, e);
    sum0 = _mm512_add_pd(sum0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    sum1 = _mm512_add_pd(sum1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  const double sum = _mm512_reduce_add_pd(_mm512_add_pd(sum0, sum1));
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (j = 0; j < n_pos; j += 16) {
    const __mmask16 m = n_pos - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n_pos - j)) - 1);
    const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, scores + j), inv);
    _mm512_mask_storeu_ps(scores + j, m, _mm512_cvtph_ps(_mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT)));
  }
  __m512 acc[16], acc2[8];
  for (int c = 0; c < nv; ++c) acc[c] = _mm512_setzero_ps();
  j = 0;
  if (nv <= 8) {  // two accumulator sets: the FMA chains of even and odd positions overlap
    for (int c = 0; c < nv; ++c) acc2[c] = _mm512_setzero_ps();
    for (; j + 2 <= n_pos; j += 2) {
      const __m512 p0 = _mm512_set1_ps(scores[j]), p1 = _mm512_set1_ps(scores[j + 1]);
      const uint16_t* v0 = v + j * vs;
      const uint16_t* v1 = v0 + vs;
      for (int c = 0; c < nv; ++c) {
        acc[c] = _mm512_fmadd_ps(p0, load_h(v0 + 16 * c), acc[c]);
        acc2[c] = _mm512_fmadd_ps(p1, load_h(v1 + 16 * c), acc2[c]);
      }
    }
    for (int c = 0; c < nv; ++c) acc[c] = _mm512_add_ps(acc[c], acc2[c]);
  }
  for (; j < n_pos; ++j) {
    const __m512 p = _mm512_set1_ps(scores[j]);
    const uint16_t* vj = v + j * vs;
    for (int c = 0; c < nv; ++c) acc[c] = _mm512_fmadd_ps(p, load_h(vj + 16 * c), acc[c]);
  }
  for (int c = 0; c < nv; ++c) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

}  // namespace

void fill_gemm_avx512(Kernels& k) {
  auto id = [](DType t) { return static_cast<uint32_t>(t); };
  k.gemm[id(DType::Q4_0)] = gemm_leg<DecQ4_0>;
  k.gemm[id(DType::Q5_0)] = gemm_leg<DecQ5_0>;
  k.gemm[id(DType::Q8_0)] = gemm_leg<DecQ8_0>;
  k.gemm[id(DType::Q4_K)] = gemm_k<DecQ4_K>;
  k.gemm[id(DType::Q6_K)] = gemm_k<DecQ6_K>;
  // Replaces kernels_avx512.cpp's attn_f16 (same contract and roundings;
  // 16 keys per step instead of one horizontal sum per key).
  k.attn_f16 = attn_f16_blocked;
}

}  // namespace lmhost::detail
