// AVX2 + FMA + F16C kernels: vpmaddubsw-based integer dot products (one
// legacy block or one K-quant sub-block group per 256-bit register), fast
// activation quantization and F16/BF16 conversion.
#include <immintrin.h>

#include <cstring>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace lmhost::detail {
namespace {

using namespace lmhost::blocks;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline uint32_t load_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline __m256i loadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
inline float hmax_ps(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// 16 nibbles -> 32 bytes in element order (low nibbles first).
inline __m256i expand_q4(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}
// 32 bits -> 32 bytes, 0xFF where the bit is set (bit j -> byte j).
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                        3, 3, 3, 3, 3, 3);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i sel = _mm256_set1_epi64x(0x8040201008040201ll);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}
// sum of signed byte products in 8 int32 lanes (w signed, a signed).
inline __m256i dot_s8(__m256i w, __m256i a) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
// u unsigned, a signed.
inline __m256i dot_u8(__m256i u, __m256i a) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1));
}

// ---------------------------------------------------------------- plain types

float dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = static_cast<const float*>(w);
  const float* y = static_cast<const float*>(a);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
  float r = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) r += x[i] * y[i];
  return r;
}

inline __m256 load8_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 load8_bf16(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline float one_f16(uint16_t h) { return fp16_to_fp32(h); }
inline float one_bf16(uint16_t h) { return bf16_to_fp32(h); }

template <__m256 (*Load)(const uint16_t*), float (*One)(uint16_t)>
float dot_half(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(Load(x + i), _mm256_loadu_ps(y + i), s0);
    s1 = _mm256_fmadd_ps(Load(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    s2 = _mm256_fmadd_ps(Load(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
    s3 = _mm256_fmadd_ps(Load(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(Load(x + i), _mm256_loadu_ps(y + i), s0);
  float r = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) r += One(x[i]) * y[i];
  return r;
}

template <__m256 (*Load)(const uint16_t*), float (*One)(uint16_t)>
void dequant_half(const void* src, float* dst, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, Load(x + i));
  for (; i < n; ++i) dst[i] = One(x[i]);
}

void quant_f16(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
}

void quant_bf16(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
    const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i v = _mm256_blendv_epi8(r, qn, nan);
    // 8 x u32 (< 65536) -> 8 x u16
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), packed);
  }
  for (; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
}

// ------------------------------------------------- activation quantization

// 32 floats -> 32 int8 = rne(x * id); returns the sum of the quants.
inline int quant_32(const float* x, __m256 vid, int8_t* out) {
  const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
  const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
  const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
  const __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
  const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3));
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return hsum_epi32(sum);
}
inline float amax_n(const float* x, int n) {
  __m256 m = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + j)));
  return hmax_ps(m);
}

void quant_q8_0(const float* x, void* dst, int64_t n) {
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    const float amax = amax_n(x, QK);
    b[i].d = fp32_to_fp16(amax / 127.0f);
    quant_32(x, _mm256_set1_ps(amax != 0 ? 127.0f / amax : 0.0f), b[i].qs);
  }
}
void quant_q8_1(const float* x, void* dst, int64_t n) {
  BlockQ8_1* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    const float amax = amax_n(x, QK);
    const float d = amax / 127.0f;
    const int sum = quant_32(x, _mm256_set1_ps(amax != 0 ? 127.0f / amax : 0.0f), b[i].qs);
    b[i].d = fp32_to_fp16(d);
    b[i].s = fp32_to_fp16(d * static_cast<float>(sum));
  }
}
void quant_q8_k(const float* x, void* dst, int64_t n) {
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    const float amax = amax_n(x, QK_K);
    const __m256 vid = _mm256_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    b[i].d = amax / 127.0f;
    for (int g = 0; g < 8; ++g) {
      const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g), vid));
      const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8), vid));
      const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 16), vid));
      const __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 24), vid));
      b[i].bsums[2 * g] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q0, q1)));
      b[i].bsums[2 * g + 1] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q2, q3)));
      const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + 32 * g),
                          _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
  }
}

// ------------------------------------------------------- legacy dot products

float dot_q4_0(int64_t n, const void* w, const void* a) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK; ++i) {
    const __m256i q = _mm256_sub_epi8(expand_q4(x[i].qs), _mm256_set1_epi8(8));
    const __m256i p = dot_s8(q, loadu(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc);
  }
  return hsum_ps(acc);
}
float dot_q4_1(int64_t n, const void* w, const void* a) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  __m256 acc = _mm256_setzero_ps();
  float summ = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    const __m256i p = dot_u8(expand_q4(x[i].qs), loadu(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc);
    summ += h2f(x[i].m) * h2f(y[i].s);
  }
  return hsum_ps(acc) + summ;
}
inline __m256i q5_bytes(const uint8_t* qs, const uint8_t* qh) {
  return _mm256_or_si256(expand_q4(qs), _mm256_and_si256(bits_to_bytes(load_u32(qh)), _mm256_set1_epi8(16)));
}
float dot_q5_0(int64_t n, const void* w, const void* a) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK; ++i) {
    const __m256i q = _mm256_sub_epi8(q5_bytes(x[i].qs, x[i].qh), _mm256_set1_epi8(16));
    const __m256i p = dot_s8(q, loadu(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc);
  }
  return hsum_ps(acc);
}
float dot_q5_1(int64_t n, const void* w, const void* a) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  __m256 acc = _mm256_setzero_ps();
  float summ = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    const __m256i p = dot_u8(q5_bytes(x[i].qs, x[i].qh), loadu(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc);
    summ += h2f(x[i].m) * h2f(y[i].s);
  }
  return hsum_ps(acc) + summ;
}
float dot_q8_0(int64_t n, const void* w, const void* a) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  const int64_t nb = n / QK;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_s8(loadu(x[i].qs), loadu(y[i].qs))),
                           _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_s8(loadu(x[i + 1].qs), loadu(y[i + 1].qs))),
                           _mm256_set1_ps(h2f(x[i + 1].d) * h2f(y[i + 1].d)), acc1);
  }
  for (; i < nb; ++i)
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_s8(loadu(x[i].qs), loadu(y[i].qs))),
                           _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc0);
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

// ------------------------------------------------------------------ K-quants

// scale vector for madd: 8 int16 lanes of a (elements 0..15), 8 of b (16..31)
inline __m256i scales_2x8(int a, int b) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(b)), _mm_set1_epi16(static_cast<short>(a)));
}

template <bool kQ5>
float dot_q45_k(int64_t n, const void* w, const void* a) {
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  float summ_total = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const uint8_t *qs, *scales, *qh = nullptr;
    uint16_t dh, dminh;
    if constexpr (kQ5) {
      const BlockQ5_K* x = static_cast<const BlockQ5_K*>(w) + i;
      qs = x->qs; scales = x->scales; dh = x->d; dminh = x->dmin; qh = x->qh;
    } else {
      const BlockQ4_K* x = static_cast<const BlockQ4_K*>(w) + i;
      qs = x->qs; scales = x->scales; dh = x->d; dminh = x->dmin;
    }
    uint64_t sc64, mn64;
    unpack_scales_k4_u64(scales, &sc64, &mn64);
    uint8_t sc[8];
    std::memcpy(sc, &sc64, 8);
    // mins: sum_j mn[j] * (bsums[2j] + bsums[2j+1]) via madd on 16-bit lanes
    const __m128i mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn64)));
    const __m256i bs = loadu(y[i].bsums);
    const __m128i bsp = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    const __m128i pm = _mm_madd_epi16(bsp, mn16);
    __m128i t = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    const int summ = _mm_cvtsi128_si32(t);
    __m256i hb = _mm256_setzero_si256();
    if constexpr (kQ5) hb = loadu(qh);
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = loadu(qs + 32 * c);
      __m256i wl = _mm256_and_si256(q, m4);
      __m256i wh = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if constexpr (kQ5) {
        wl = _mm256_or_si256(wl, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
        wh = _mm256_or_si256(wh, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4));
      }
      const __m256i pl = _mm256_maddubs_epi16(wl, loadu(y[i].qs + 64 * c));
      const __m256i ph = _mm256_maddubs_epi16(wh, loadu(y[i].qs + 64 * c + 32));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pl, _mm256_set1_epi16(sc[2 * c])));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(ph, _mm256_set1_epi16(sc[2 * c + 1])));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(h2f(dh) * y[i].d), acc);
    summ_total += h2f(dminh) * y[i].d * static_cast<float>(summ);
  }
  return hsum_ps(acc) - summ_total;
}

float dot_q6_k(int64_t n, const void* w, const void* a) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const int8_t* sc = x[i].scales;
    int off = 0;
    for (int g = 0; g < 16; ++g) off += sc[g] * y[i].bsums[g];
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = loadu(x[i].ql + 64 * h), l1 = loadu(x[i].ql + 64 * h + 32);
      const __m256i hb = loadu(x[i].qh + 32 * h);
      const __m256i w[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4)),
      };
      for (int g = 0; g < 4; ++g) {
        const __m256i p = _mm256_maddubs_epi16(w[g], loadu(y[i].qs + 128 * h + 32 * g));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_2x8(sc[8 * h + 2 * g], sc[8 * h + 2 * g + 1])));
      }
    }
    sumi = _mm256_sub_epi32(sumi, _mm256_setr_epi32(32 * off, 0, 0, 0, 0, 0, 0, 0));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(h2f(x[i].d) * y[i].d), acc);
  }
  return hsum_ps(acc);
}

float dot_q2_k(int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i m3 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  float summ_total = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const uint8_t* sc = x[i].scales;
    int summ = 0;
    for (int g = 0; g < 16; ++g) summ += (sc[g] >> 4) * y[i].bsums[g];
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const __m256i q = loadu(x[i].qs + 32 * c);
      for (int j = 0; j < 4; ++j) {
        const __m256i wq = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
        const __m256i p = _mm256_maddubs_epi16(wq, loadu(y[i].qs + 128 * c + 32 * j));
        const int s = 8 * c + 2 * j;
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_2x8(sc[s] & 0xF, sc[s + 1] & 0xF)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(h2f(x[i].d) * y[i].d), acc);
    summ_total += h2f(x[i].dmin) * y[i].d * static_cast<float>(summ);
  }
  return hsum_ps(acc) - summ_total;
}

float dot_q3_k(int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    uint32_t scb[4];
    unpack_scales_q3k_biased(x[i].scales, scb);
    int8_t sc[16];
    std::memcpy(sc, scb, 16);
    for (int g = 0; g < 16; ++g) sc[g] = static_cast<int8_t>(sc[g] - 32);
    int off = 0;
    for (int g = 0; g < 16; ++g) off += sc[g] * y[i].bsums[g];
    const __m256i hm = loadu(x[i].hmask);
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const __m256i q = loadu(x[i].qs + 32 * c);
      for (int j = 0; j < 4; ++j) {
        const __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * c + j), one);
        const __m256i wq = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3), _mm256_slli_epi16(hbit, 2));
        const __m256i p = _mm256_maddubs_epi16(wq, loadu(y[i].qs + 128 * c + 32 * j));
        const int s = 8 * c + 2 * j;
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_2x8(sc[s], sc[s + 1])));
      }
    }
    sumi = _mm256_sub_epi32(sumi, _mm256_setr_epi32(4 * off, 0, 0, 0, 0, 0, 0, 0));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(h2f(x[i].d) * y[i].d), acc);
  }
  return hsum_ps(acc);
}


// ------------------------------------------------------------- matmul tiles
// 2 x 2 sub-tiles (16 ymm registers): each weight block is decoded once for
// both activation rows, each activation block loaded once for both weights.

using TileImpl = void (*)(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os);

// kQ4: Q4_0 weights (nibbles - 8), else Q8_0 weights; Q8_0 activations.
template <bool kQ4, int NW, int NA>
void tile_legacy(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  const int64_t nb = n / QK;
  const size_t wbs = kQ4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  __m256 acc[NW][NA];
#pragma GCC unroll 4
  for (int r = 0; r < NW; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    __m256i av[NA];
    float da[NA];
#pragma GCC unroll 4
    for (int c = 0; c < NA; ++c) {
      const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(a + c * as) + i;
      av[c] = loadu(y->qs);
      da[c] = h2f(y->d);
    }
#pragma GCC unroll 4
    for (int r = 0; r < NW; ++r) {
      const uint8_t* blk = w + r * ws + i * wbs;
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      const __m256i wv = kQ4 ? _mm256_sub_epi8(expand_q4(blk + 2), _mm256_set1_epi8(8)) : loadu(blk + 2);
      const __m256i wabs = _mm256_sign_epi8(wv, wv);
      const float dw = h2f(dh);
#pragma GCC unroll 4
      for (int c = 0; c < NA; ++c) {
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(av[c], wv)), _mm256_set1_epi16(1));
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * da[c]), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < NW; ++r)
    for (int c = 0; c < NA; ++c) out[r * os + c] = hsum_ps(acc[r][c]);
}
template <int NW, int NA> void tile_q4_0(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_legacy<true, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_q8_0(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_legacy<false, NW, NA>(n, w, ws, a, as, out, os);
}

template <int NW, int NA>
void tile_q6_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  const int64_t nb = n / QK_K;
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
  __m256 acc[NW][NA];
#pragma GCC unroll 4
  for (int r = 0; r < NW; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    __m256i sumi[NW][NA];
#pragma GCC unroll 4
    for (int r = 0; r < NW; ++r) {
      const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(w + r * ws) + i;
#pragma GCC unroll 4
      for (int c = 0; c < NA; ++c) {
        const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(a + c * as) + i;
        int off = 0;
        for (int g = 0; g < 16; ++g) off += x->scales[g] * y->bsums[g];
        sumi[r][c] = _mm256_setr_epi32(-32 * off, 0, 0, 0, 0, 0, 0, 0);
      }
    }
    for (int h = 0; h < 2; ++h) {
      for (int g = 0; g < 4; ++g) {
        __m256i av[NA];
#pragma GCC unroll 4
        for (int c = 0; c < NA; ++c) av[c] = loadu((reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->qs + 128 * h + 32 * g);
#pragma GCC unroll 4
        for (int r = 0; r < NW; ++r) {
          const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(w + r * ws) + i;
          const __m256i l = loadu(x->ql + 64 * h + 32 * (g & 1));
          const __m256i hb = loadu(x->qh + 32 * h);
          const __m256i lo = g < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
          const __m256i wq = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * g), m3), 4));
          const __m256i sc = scales_2x8(x->scales[8 * h + 2 * g], x->scales[8 * h + 2 * g + 1]);
#pragma GCC unroll 4
          for (int c = 0; c < NA; ++c)
            sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(wq, av[c]), sc));
        }
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NW; ++r) {
      const float d = h2f((reinterpret_cast<const BlockQ6_K*>(w + r * ws) + i)->d);
#pragma GCC unroll 4
      for (int c = 0; c < NA; ++c) {
        const float dy = (reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->d;
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r][c]), _mm256_set1_ps(d * dy), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < NW; ++r)
    for (int c = 0; c < NA; ++c) out[r * os + c] = hsum_ps(acc[r][c]);
}

// F32 / F16 / BF16 weights: each 8-element weight vector converted once
// for all activation rows. Tails (n % 8) are finished in scalar code.
inline __m256 w8_f32(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
inline __m256 w8_f16(const uint8_t* p) { return load8_f16(reinterpret_cast<const uint16_t*>(p)); }
inline __m256 w8_bf16(const uint8_t* p) { return load8_bf16(reinterpret_cast<const uint16_t*>(p)); }
inline float w1_f32(const uint8_t* p) { float f; std::memcpy(&f, p, 4); return f; }
inline float w1_f16(const uint8_t* p) { uint16_t h; std::memcpy(&h, p, 2); return fp16_to_fp32(h); }
inline float w1_bf16(const uint8_t* p) { uint16_t h; std::memcpy(&h, p, 2); return bf16_to_fp32(h); }

template <int kElt, __m256 (*Load8)(const uint8_t*), float (*Load1)(const uint8_t*), int NW, int NA>
void tile_float(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  __m256 acc[NW][NA];
#pragma GCC unroll 4
  for (int r = 0; r < NW; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 av[NA];
#pragma GCC unroll 4
    for (int c = 0; c < NA; ++c) av[c] = _mm256_loadu_ps(reinterpret_cast<const float*>(a + c * as) + i);
#pragma GCC unroll 4
    for (int r = 0; r < NW; ++r) {
      const __m256 wv = Load8(w + r * ws + i * kElt);
#pragma GCC unroll 4
      for (int c = 0; c < NA; ++c) acc[r][c] = _mm256_fmadd_ps(wv, av[c], acc[r][c]);
    }
  }
  for (int r = 0; r < NW; ++r)
    for (int c = 0; c < NA; ++c) {
      float s = hsum_ps(acc[r][c]);
      for (int64_t j = i; j < n; ++j) s += Load1(w + r * ws + j * kElt) * reinterpret_cast<const float*>(a + c * as)[j];
      out[r * os + c] = s;
    }
}
template <int NW, int NA> void tile_f32(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_float<4, w8_f32, w1_f32, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_f16(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_float<2, w8_f16, w1_f16, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_bf16(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_float<2, w8_bf16, w1_bf16, NW, NA>(n, w, ws, a, as, out, os);
}

template <TileImpl T11, TileImpl T12, TileImpl T21, TileImpl T22>
void run_tile_2x2(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                  size_t os) {
  static const TileImpl tbl[2][2] = {{T11, T12}, {T21, T22}};
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* ab = static_cast<const uint8_t*>(a);
  for (int r0 = 0; r0 < nw; r0 += 2) {
    const int nr = nw - r0 < 2 ? nw - r0 : 2;
    for (int c0 = 0; c0 < na; c0 += 2) {
      const int nc = na - c0 < 2 ? na - c0 : 2;
      tbl[nr - 1][nc - 1](n, wb + r0 * ws, ws, ab + c0 * as, as, out + r0 * os + c0, os);
    }
  }
}
#define LMHOST_TILE2(F) run_tile_2x2<F<1, 1>, F<1, 2>, F<2, 1>, F<2, 2>>

}  // namespace

void fill_avx2(Kernels& k) {
  auto id = [](DType t) { return static_cast<uint32_t>(t); };
  k.vec_dot[id(DType::F32)] = dot_f32;
  k.vec_dot[id(DType::F16)] = dot_half<load8_f16, one_f16>;
  k.vec_dot[id(DType::BF16)] = dot_half<load8_bf16, one_bf16>;
  k.dequantize[id(DType::F16)] = dequant_half<load8_f16, one_f16>;
  k.dequantize[id(DType::BF16)] = dequant_half<load8_bf16, one_bf16>;
  k.quantize[id(DType::F16)] = quant_f16;
  k.quantize[id(DType::BF16)] = quant_bf16;
  k.quantize[id(DType::Q8_0)] = quant_q8_0;
  k.quantize[id(DType::Q8_1)] = quant_q8_1;
  k.quantize[id(DType::Q8_K)] = quant_q8_k;
  k.vec_dot[id(DType::Q4_0)] = dot_q4_0;
  k.vec_dot[id(DType::Q4_1)] = dot_q4_1;
  k.vec_dot[id(DType::Q5_0)] = dot_q5_0;
  k.vec_dot[id(DType::Q5_1)] = dot_q5_1;
  k.vec_dot[id(DType::Q8_0)] = dot_q8_0;
  k.vec_dot[id(DType::Q2_K)] = dot_q2_k;
  k.vec_dot[id(DType::Q3_K)] = dot_q3_k;
  k.vec_dot[id(DType::Q4_K)] = dot_q45_k<false>;
  k.vec_dot[id(DType::Q5_K)] = dot_q45_k<true>;
  k.vec_dot[id(DType::Q6_K)] = dot_q6_k;
  k.vec_dot_tile[id(DType::F32)] = LMHOST_TILE2(tile_f32);
  k.vec_dot_tile[id(DType::F16)] = LMHOST_TILE2(tile_f16);
  k.vec_dot_tile[id(DType::BF16)] = LMHOST_TILE2(tile_bf16);
  k.vec_dot_tile[id(DType::Q4_0)] = LMHOST_TILE2(tile_q4_0);
  k.vec_dot_tile[id(DType::Q4_1)] = tile_from_dot<dot_q4_1>;
  k.vec_dot_tile[id(DType::Q5_0)] = tile_from_dot<dot_q5_0>;
  k.vec_dot_tile[id(DType::Q5_1)] = tile_from_dot<dot_q5_1>;
  k.vec_dot_tile[id(DType::Q8_0)] = LMHOST_TILE2(tile_q8_0);
  k.vec_dot_tile[id(DType::Q2_K)] = tile_from_dot<dot_q2_k>;
  k.vec_dot_tile[id(DType::Q3_K)] = tile_from_dot<dot_q3_k>;
  // a Q4_K 2x2 tile needs more than 16 ymm registers and loses to the row kernel
  k.vec_dot_tile[id(DType::Q4_K)] = tile_from_dot<dot_q45_k<false>>;
  k.vec_dot_tile[id(DType::Q5_K)] = tile_from_dot<dot_q45_k<true>>;
  k.vec_dot_tile[id(DType::Q6_K)] = LMHOST_TILE2(tile_q6_k);
}

}  // namespace lmhost::detail
