// AVX-512 (F/BW/DQ/VL) + VNNI kernels. Integer dot products use vpdpbusd
// (u8 x s8 -> s32) and, for the K-quants, vpmaddubsw + vpdpwssd so that the
// per-sub-block scales are applied in the integer domain. Legacy 32-element
// blocks are processed two per 512-bit register.
// GCC 12 warns about its own _mm512_cast*/_mm512_undefined* helpers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>

#include <cstring>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace lmhost::detail {
namespace {

using namespace lmhost::blocks;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline __m512i load_2x256(const void* p0, const void* p1) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(p0))),
                            _mm256_loadu_si256(static_cast<const __m256i*>(p1)), 1);
}
// Per-lane d_w * d_a for two blocks (lanes 0..7: block 0, 8..15: block 1),
// from the raw fp16 scale bits: assembled in a GPR, converted and multiplied
// in an xmm, spread with one permute.
inline __m512 scale_pair(uint16_t w0, uint16_t a0, uint16_t w1, uint16_t a1) {
  const uint64_t bits = w0 | (static_cast<uint64_t>(a0) << 16) | (static_cast<uint64_t>(w1) << 32) |
                        (static_cast<uint64_t>(a1) << 48);
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(bits)));  // [w0 a0 w1 a1]
  const __m128 p = _mm_mul_ps(f, _mm_movehdup_ps(f));                              // [w0*a0, _, w1*a1, _]
  const __m512i idx = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(p));
}
// Accumulates m0*s0 + m1*s1 (fp16 bits) into lanes 0 and 2 of acc.
inline __m128 add_min_pair(__m128 acc, uint16_t m0, uint16_t s0, uint16_t m1, uint16_t s1) {
  const uint64_t bits = m0 | (static_cast<uint64_t>(s0) << 16) | (static_cast<uint64_t>(m1) << 32) |
                        (static_cast<uint64_t>(s1) << 48);
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(bits)));
  return _mm_fmadd_ps(f, _mm_movehdup_ps(f), acc);
}
inline float lanes_0_2(__m128 v) { return _mm_cvtss_f32(v) + _mm_cvtss_f32(_mm_movehl_ps(v, v)); }
inline int hsum_256_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
inline float hsum_256_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 16 weight nibbles of one block -> 32 bytes in element order (low nibbles
// are elements 0..15, high nibbles 16..31).
inline __m256i expand_q4_one(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}
// Two blocks' nibbles -> 64 bytes: [block0 elements 0..31, block1 elements 0..31].
inline __m512i expand_q4_pair(const uint8_t* q0, const uint8_t* q1) {
  const __m256i q = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q0))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(q1)), 1);
  __m512i v = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), _mm512_castsi256_si512(q));
  v = _mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
  return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}
inline uint32_t load_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

// ---------------------------------------------------------------- plain types

float dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = static_cast<const float*>(w);
  const float* y = static_cast<const float*>(a);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), s3);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

inline __m512 load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512 load_f16_mask(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline __m512 load_bf16_mask(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

template <__m512 (*Load)(const uint16_t*), __m512 (*LoadMask)(const uint16_t*, __mmask16)>
float dot_half(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(Load(x + i), _mm512_loadu_ps(y + i), s0);
    s1 = _mm512_fmadd_ps(Load(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    s2 = _mm512_fmadd_ps(Load(x + i + 32), _mm512_loadu_ps(y + i + 32), s2);
    s3 = _mm512_fmadd_ps(Load(x + i + 48), _mm512_loadu_ps(y + i + 48), s3);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
    s0 = _mm512_fmadd_ps(LoadMask(x + i, m), _mm512_maskz_loadu_ps(m, y + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

template <__m512 (*Load)(const uint16_t*), __m512 (*LoadMask)(const uint16_t*, __mmask16)>
void dequant_half(const void* src, float* dst, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, Load(x + i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, LoadMask(x + i, m));
  }
}

void quant_f16(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
}

// Round to nearest even in integer arithmetic (vcvtneps2bf16 would flush
// denormals); NaN stays NaN (quiet bit set), as in util/fp16.h.
void quant_bf16(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_loadu_si512(src + i);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, lsb)), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absmask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
}

// ------------------------------------------------- activation quantization

// 32 floats -> 32 int8 = rne(x * id); returns the int32 quants' sum.
inline int quant_32(const float* x, float id, int8_t* out) {
  const __m512 vid = _mm512_set1_ps(id);
  const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), vid));
  const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16), vid));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtsepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtsepi32_epi8(q1));
  return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}
inline float amax_32(const float* x) {
  const __m512 m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x)), _mm512_abs_ps(_mm512_loadu_ps(x + 16)));
  return _mm512_reduce_max_ps(m);
}

void quant_q8_0(const float* x, void* dst, int64_t n) {
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    const float amax = amax_32(x);
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    b[i].d = fp32_to_fp16(amax / 127.0f);
    quant_32(x, id, b[i].qs);
  }
}
void quant_q8_1(const float* x, void* dst, int64_t n) {
  BlockQ8_1* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    const float amax = amax_32(x);
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    const float d = amax / 127.0f;
    const int sum = quant_32(x, id, b[i].qs);
    b[i].d = fp32_to_fp16(d);
    b[i].s = fp32_to_fp16(d * static_cast<float>(sum));
  }
}
void quant_q8_k(const float* x, void* dst, int64_t n) {
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < QK_K; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    const float amax = _mm512_reduce_max_ps(m);
    const __m512 vid = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    b[i].d = amax / 127.0f;
    for (int g = 0; g < 16; ++g) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), vid));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(b[i].qs + 16 * g), _mm512_cvtsepi32_epi8(q));
      b[i].bsums[g] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
  }
}

// ------------------------------------------------------- legacy dot products

// sum(u * s) - c * sum(s) for 32-byte rows of unsigned weights u, signed s.
inline __m256i dot1_u8_offset(__m256i u, __m256i s, __m256i c) {
  return _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s),
                          _mm256_dpbusd_epi32(_mm256_setzero_si256(), c, s));
}
inline __m512i dot2_u8_offset(__m512i u, __m512i s, __m512i c) {
  return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s),
                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, s));
}

float dot_q4_0(int64_t n, const void* w, const void* a) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / QK;
  const __m512i k8 = _mm512_set1_epi8(8);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 4 <= nb; i += 4) {  // two independent block pairs per iteration
    const __m512i u0 = expand_q4_pair(x[i].qs, x[i + 1].qs);
    const __m512i u1 = expand_q4_pair(x[i + 2].qs, x[i + 3].qs);
    const __m512i s0 = load_2x256(y[i].qs, y[i + 1].qs);
    const __m512i s1 = load_2x256(y[i + 2].qs, y[i + 3].qs);
    const __m512 d0 = scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d);
    const __m512 d1 = scale_pair(x[i + 2].d, y[i + 2].d, x[i + 3].d, y[i + 3].d);
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot2_u8_offset(u0, s0, k8)), d0, acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot2_u8_offset(u1, s1, k8)), d1, acc1);
  }
  for (; i + 2 <= nb; i += 2) {
    const __m512i u = expand_q4_pair(x[i].qs, x[i + 1].qs);
    const __m512i s = load_2x256(y[i].qs, y[i + 1].qs);
    const __m512 d = scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d);
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot2_u8_offset(u, s, k8)), d, acc0);
  }
  float r = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < nb; ++i) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const int p = hsum_256_epi32(dot1_u8_offset(expand_q4_one(x[i].qs), s, _mm256_set1_epi8(8)));
    r += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(p);
  }
  return r;
}

float dot_q4_1(int64_t n, const void* w, const void* a) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  const int64_t nb = n / QK;
  __m512 acc = _mm512_setzero_ps();
  __m128 summ = _mm_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i u = expand_q4_pair(x[i].qs, x[i + 1].qs);
    const __m512i s = load_2x256(y[i].qs, y[i + 1].qs);
    const __m512 d = scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)), d, acc);
    summ = add_min_pair(summ, x[i].m, y[i].s, x[i + 1].m, y[i + 1].s);
  }
  float r = _mm512_reduce_add_ps(acc) + lanes_0_2(summ);
  for (; i < nb; ++i) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const int p = hsum_256_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), expand_q4_one(x[i].qs), s));
    r += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(p) + h2f(x[i].m) * h2f(y[i].s);
  }
  return r;
}

// Adds 16 to the bytes whose bit is set in the block's qh (the 5th bit).
inline __m512i add_q5_high_pair(__m512i q, const uint8_t* qh0, const uint8_t* qh1) {
  const __mmask64 m = static_cast<__mmask64>(load_u32(qh0)) | (static_cast<__mmask64>(load_u32(qh1)) << 32);
  return _mm512_mask_add_epi8(q, m, q, _mm512_set1_epi8(16));
}
inline __m256i add_q5_high_one(__m256i q, const uint8_t* qh) {
  return _mm256_mask_add_epi8(q, static_cast<__mmask32>(load_u32(qh)), q, _mm256_set1_epi8(16));
}

float dot_q5_0(int64_t n, const void* w, const void* a) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / QK;
  const __m512i k16 = _mm512_set1_epi8(16);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i u = add_q5_high_pair(expand_q4_pair(x[i].qs, x[i + 1].qs), x[i].qh, x[i + 1].qh);
    const __m512i s = load_2x256(y[i].qs, y[i + 1].qs);
    const __m512 d = scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot2_u8_offset(u, s, k16)), d, acc);
  }
  float r = _mm512_reduce_add_ps(acc);
  for (; i < nb; ++i) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m256i u = add_q5_high_one(expand_q4_one(x[i].qs), x[i].qh);
    const int p = hsum_256_epi32(dot1_u8_offset(u, s, _mm256_set1_epi8(16)));
    r += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(p);
  }
  return r;
}

float dot_q5_1(int64_t n, const void* w, const void* a) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  const int64_t nb = n / QK;
  __m512 acc = _mm512_setzero_ps();
  __m128 summ = _mm_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i u = add_q5_high_pair(expand_q4_pair(x[i].qs, x[i + 1].qs), x[i].qh, x[i + 1].qh);
    const __m512i s = load_2x256(y[i].qs, y[i + 1].qs);
    const __m512 d = scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)), d, acc);
    summ = add_min_pair(summ, x[i].m, y[i].s, x[i + 1].m, y[i + 1].s);
  }
  float r = _mm512_reduce_add_ps(acc) + lanes_0_2(summ);
  for (; i < nb; ++i) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m256i u = add_q5_high_one(expand_q4_one(x[i].qs), x[i].qh);
    const int p = hsum_256_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
    r += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(p) + h2f(x[i].m) * h2f(y[i].s);
  }
  return r;
}

// Signed x signed with vpdpbusd: sum(w * a) = sum((a + 128) * w) - 128 * sum(w).
float dot_q8_0(int64_t n, const void* w, const void* a) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / QK;
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i ws = load_2x256(x[i].qs, x[i + 1].qs);
    const __m512i as = load_2x256(y[i].qs, y[i + 1].qs);
    const __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(as, k80), ws),
                                       _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, ws));
    const __m512 d = scale_pair(x[i].d, y[i].d, x[i + 1].d, y[i + 1].d);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), d, acc);
  }
  float r = _mm512_reduce_add_ps(acc);
  for (; i < nb; ++i) {
    const __m256i k = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i ws = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    const __m256i as = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m256i p = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(as, k), ws),
                                       _mm256_dpbusd_epi32(_mm256_setzero_si256(), k, ws));
    r += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(hsum_256_epi32(p));
  }
  return r;
}

// ------------------------------------------------------------------ K-quants

// idx for _mm512_permutexvar_epi16: 16 lanes of element a, then 16 of b.
inline __m512i idx_2x16(int a, int b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(a))),
                            _mm256_set1_epi16(static_cast<short>(b)), 1);
}
// idx: 8 lanes each of a, a+1, a+2, a+3.
inline __m512i idx_4x8(int a) {
  const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(a))),
                                             _mm_set1_epi16(static_cast<short>(a + 1)), 1);
  const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(a + 2))),
                                             _mm_set1_epi16(static_cast<short>(a + 3)), 1);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Q4_K / Q5_K share everything but the 5th bit.
template <bool kQ5>
float dot_q45_k(int64_t n, const void* w, const void* a) {
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const int64_t nb = n / QK_K;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i idx0 = idx_2x16(0, 2), idx1 = idx_2x16(1, 3), idx2 = idx_2x16(4, 6), idx3 = idx_2x16(5, 7);
  const __m256i dup = _mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  // bit selectors for the 5th bit: [bit 4t (32 bytes) | bit 4t+2], [4t+1 | 4t+3]
  auto sel = [](int b0, int b1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(static_cast<char>(1 << b0))),
                              _mm256_set1_epi8(static_cast<char>(1 << b1)), 1);
  };
  const __m512i sel_l0 = sel(0, 2), sel_h0 = sel(1, 3), sel_l1 = sel(4, 6), sel_h1 = sel(5, 7);
  const __m512i k16 = _mm512_set1_epi8(16);
  __m512 acc = _mm512_setzero_ps();
  __m256 accm = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* qs;
    const uint8_t* scales;
    uint16_t dh, dminh;
    const uint8_t* qh = nullptr;
    if constexpr (kQ5) {
      const BlockQ5_K* x = static_cast<const BlockQ5_K*>(w) + i;
      qs = x->qs; scales = x->scales; dh = x->d; dminh = x->dmin; qh = x->qh;
    } else {
      const BlockQ4_K* x = static_cast<const BlockQ4_K*>(w) + i;
      qs = x->qs; scales = x->scales; dh = x->d; dminh = x->dmin;
    }
    uint64_t sc, mn;
    unpack_scales_k4_u64(scales, &sc, &mn);
    const float dy = y[i].d;
    // mins: sum_j mn[j] * (bsums[2j] + bsums[2j+1])
    const __m256i mins16 = _mm256_permutexvar_epi16(
        dup, _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn)))));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums));
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins16)), _mm256_set1_ps(h2f(dminh) * dy), accm);

    const __m512i sc16 =
        _mm512_castsi256_si512(_mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc)))));
    __m512i qh2 = _mm512_setzero_si512();
    if constexpr (kQ5) qh2 = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)));
    const int8_t* q8 = y[i].qs;
    __m512i sumi = _mm512_setzero_si512();
    for (int t = 0; t < 2; ++t) {
      const __m512i q = _mm512_loadu_si512(qs + 64 * t);
      __m512i wl = _mm512_and_si512(q, m4);
      __m512i wh = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      if constexpr (kQ5) {
        wl = _mm512_mask_add_epi8(wl, _mm512_test_epi8_mask(qh2, t ? sel_l1 : sel_l0), wl, k16);
        wh = _mm512_mask_add_epi8(wh, _mm512_test_epi8_mask(qh2, t ? sel_h1 : sel_h0), wh, k16);
      }
      const __m512i al = load_2x256(q8 + 128 * t, q8 + 128 * t + 64);
      const __m512i ah = load_2x256(q8 + 128 * t + 32, q8 + 128 * t + 96);
      const __m512i pl = _mm512_maddubs_epi16(wl, al);
      const __m512i ph = _mm512_maddubs_epi16(wh, ah);
      sumi = _mm512_dpwssd_epi32(sumi, pl, _mm512_permutexvar_epi16(t ? idx2 : idx0, sc16));
      sumi = _mm512_dpwssd_epi32(sumi, ph, _mm512_permutexvar_epi16(t ? idx3 : idx1, sc16));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(h2f(dh) * dy), acc);
  }
  return _mm512_reduce_add_ps(acc) - hsum_256_ps(accm);
}

float dot_q6_k(int64_t n, const void* w, const void* a) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const int64_t nb = n / QK_K;
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i rot_l = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);     // pair 0 -> <<4, pair 1 -> <<2
  const __m512i rot_h = _mm512_set_epi64(62, 62, 62, 62, 0, 0, 0, 0); // pair 2 -> as is, pair 3 -> >>2
  const __m512i idx[4] = {idx_4x8(0), idx_4x8(4), idx_4x8(8), idx_4x8(12)};
  __m512 acc = _mm512_setzero_ps();
  __m256 accm = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d) * y[i].d;
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales)));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums));
    // the -32 offset: 32 * sum_g sc[g] * bsums[g]
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, sc16)), _mm256_set1_ps(32.0f * d), accm);
    const __m512i sc = _mm512_castsi256_si512(sc16);
    __m512i sumi = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
      const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * h)));
      // (l & 0x0F) | (rot(hb) & 0x30)
      const __m512i wl = _mm512_ternarylogic_epi32(l, m4, _mm512_and_si512(_mm512_rolv_epi64(hb, rot_l), m30), 0xEA);
      const __m512i wh = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), m4,
                                                   _mm512_and_si512(_mm512_rolv_epi64(hb, rot_h), m30), 0xEA);
      const __m512i al = _mm512_loadu_si512(y[i].qs + 128 * h);
      const __m512i ah = _mm512_loadu_si512(y[i].qs + 128 * h + 64);
      sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(wl, al), _mm512_permutexvar_epi16(idx[2 * h], sc));
      sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(wh, ah), _mm512_permutexvar_epi16(idx[2 * h + 1], sc));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(d), acc);
  }
  return _mm512_reduce_add_ps(acc) - hsum_256_ps(accm);
}

// Q2_K / Q3_K: 2-bit fields j = 0..3 of the 64 qs bytes hold elements
// [32j..32j+31 | 128+32j..128+32j+31].
inline __m512i idx_q2(int j) {  // 8 lanes each of scales 2j, 2j+1, 8+2j, 9+2j
  const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(2 * j))),
                                             _mm_set1_epi16(static_cast<short>(2 * j + 1)), 1);
  const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(8 + 2 * j))),
                                             _mm_set1_epi16(static_cast<short>(9 + 2 * j)), 1);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

float dot_q2_k(int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const int64_t nb = n / QK_K;
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m512i idx[4] = {idx_q2(0), idx_q2(1), idx_q2(2), idx_q2(3)};
  __m512 acc = _mm512_setzero_ps();
  __m256 accm = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float dy = y[i].d;
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0x0F)));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F)));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums));
    accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mn16)), _mm256_set1_ps(h2f(x[i].dmin) * dy), accm);
    const __m512i sc = _mm512_castsi256_si512(sc16);
    const __m512i q = _mm512_loadu_si512(x[i].qs);
    __m512i sumi = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
      const __m512i wq = _mm512_and_si512(_mm512_srli_epi16(q, 2 * j), m3);
      const __m512i as = load_2x256(y[i].qs + 32 * j, y[i].qs + 128 + 32 * j);
      sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(wq, as), _mm512_permutexvar_epi16(idx[j], sc));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(h2f(x[i].d) * dy), acc);
  }
  return _mm512_reduce_add_ps(acc) - hsum_256_ps(accm);
}

float dot_q3_k(int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const int64_t nb = n / QK_K;
  const __m512i m3 = _mm512_set1_epi8(3), k4 = _mm512_set1_epi8(4);
  const __m512i idx[4] = {idx_q2(0), idx_q2(1), idx_q2(2), idx_q2(3)};
  __m512i sel[4];
  for (int j = 0; j < 4; ++j)
    sel[j] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(static_cast<char>(1 << j))),
                                _mm256_set1_epi8(static_cast<char>(1 << (4 + j))), 1);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    uint32_t scb[4];
    unpack_scales_q3k_biased(x[i].scales, scb);
    // built from registers: a 16-byte load of four just-stored words would stall store forwarding
    const __m128i scv = _mm_set_epi32(static_cast<int>(scb[3]), static_cast<int>(scb[2]), static_cast<int>(scb[1]),
                                      static_cast<int>(scb[0]));
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(scv, _mm_set1_epi8(32)));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums));
    // the -4 offset: 4 * sum_g sc[g] * bsums[g], folded into the integer sum
    const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 2);
    const __m512i sc = _mm512_castsi256_si512(sc16);
    const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].hmask)));
    const __m512i q = _mm512_loadu_si512(x[i].qs);
    __m512i sumi = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), off));
    sumi = _mm512_inserti64x4(sumi, _mm256_setzero_si256(), 1);
    for (int j = 0; j < 4; ++j) {
      __m512i wq = _mm512_and_si512(_mm512_srli_epi16(q, 2 * j), m3);
      wq = _mm512_mask_add_epi8(wq, _mm512_test_epi8_mask(hm, sel[j]), wq, k4);
      const __m512i as = load_2x256(y[i].qs + 32 * j, y[i].qs + 128 + 32 * j);
      sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(wq, as), _mm512_permutexvar_epi16(idx[j], sc));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(h2f(x[i].d) * y[i].d), acc);
  }
  return _mm512_reduce_add_ps(acc);
}


// ------------------------------------------------------------- matmul tiles
//
// NW weight rows x NA activation rows. Each weight block is decoded once for
// all NA activations, each activation block loaded once for all NW weights.
// K-quant tiles run at most 8 (row, column) pairs at a time to stay within
// the 32 vector registers; larger tiles are split into column groups.

using TileImpl = void (*)(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os);

// 16 fp16 scales of two blocks as floats: lanes 0..7 = h0, 8..15 = h1.
inline __m512 half_pair(uint16_t h0, uint16_t h1) {
  return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16(static_cast<short>(h1)), _mm_set1_epi16(static_cast<short>(h0))));
}

// Legacy weight types with unsigned quants: Q4_0 / Q5_0 (offset 8 / 16,
// Q8_0 activations) and Q4_1 / Q5_1 (min m, Q8_1 activations with s = d*sum).
struct LegQ4_0 {
  using W = BlockQ4_0; using A = BlockQ8_0;
  static constexpr int kOffset = 8; static constexpr bool kMin = false;
  static __m512i decode(const W* x) { return expand_q4_pair(x[0].qs, x[1].qs); }
  static float dot(int64_t n, const void* w, const void* a) { return dot_q4_0(n, w, a); }
  static uint16_t m(const W&) { return 0; }
  static uint16_t s(const A&) { return 0; }
};
struct LegQ5_0 {
  using W = BlockQ5_0; using A = BlockQ8_0;
  static constexpr int kOffset = 16; static constexpr bool kMin = false;
  static __m512i decode(const W* x) { return add_q5_high_pair(expand_q4_pair(x[0].qs, x[1].qs), x[0].qh, x[1].qh); }
  static float dot(int64_t n, const void* w, const void* a) { return dot_q5_0(n, w, a); }
  static uint16_t m(const W&) { return 0; }
  static uint16_t s(const A&) { return 0; }
};
struct LegQ4_1 {
  using W = BlockQ4_1; using A = BlockQ8_1;
  static constexpr int kOffset = 0; static constexpr bool kMin = true;
  static __m512i decode(const W* x) { return expand_q4_pair(x[0].qs, x[1].qs); }
  static float dot(int64_t n, const void* w, const void* a) { return dot_q4_1(n, w, a); }
  static uint16_t m(const W& x) { return x.m; }
  static uint16_t s(const A& y) { return y.s; }
};
struct LegQ5_1 {
  using W = BlockQ5_1; using A = BlockQ8_1;
  static constexpr int kOffset = 0; static constexpr bool kMin = true;
  static __m512i decode(const W* x) { return add_q5_high_pair(expand_q4_pair(x[0].qs, x[1].qs), x[0].qh, x[1].qh); }
  static float dot(int64_t n, const void* w, const void* a) { return dot_q5_1(n, w, a); }
  static uint16_t m(const W& x) { return x.m; }
  static uint16_t s(const A& y) { return y.s; }
};

template <class L, int NW, int NA>
void tile_leg(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  using W = typename L::W;
  using A = typename L::A;
  const int64_t nb = n / QK;
  const __m512i koff = _mm512_set1_epi8(static_cast<char>(L::kOffset));
  __m512 acc[NW][NA];
#pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    __m512i av[NA], corr[NA];
    __m512 da[NA], sa[NA];
#pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) {
      const A* y = reinterpret_cast<const A*>(a + c * as) + i;
      av[c] = load_2x256(y[0].qs, y[1].qs);
      if constexpr (L::kOffset != 0)  // -offset * sum(a), folded into the dpbusd accumulator
        corr[c] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, av[c]));
      else
        corr[c] = _mm512_setzero_si512();
      da[c] = half_pair(y[0].d, y[1].d);
      if constexpr (L::kMin) sa[c] = half_pair(L::s(y[0]), L::s(y[1]));
    }
#pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const W* x = reinterpret_cast<const W*>(w + r * ws) + i;
      const __m512i u = L::decode(x);
      const __m512 dw = half_pair(x[0].d, x[1].d);
      __m512 mw = _mm512_setzero_ps();
      if constexpr (L::kMin)  // m0 in lane 0, m1 in lane 8: one FMA adds m*s per block
        mw = _mm512_maskz_mov_ps(0x0101, half_pair(L::m(x[0]), L::m(x[1])));
#pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const __m512i p = _mm512_dpbusd_epi32(corr[c], u, av[c]);
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, da[c]), acc[r][c]);
        if constexpr (L::kMin) acc[r][c] = _mm512_fmadd_ps(mw, sa[c], acc[r][c]);
      }
    }
  }
  for (int r = 0; r < NW; ++r)
    for (int c = 0; c < NA; ++c) {
      float s = _mm512_reduce_add_ps(acc[r][c]);
      if (i < nb) s += L::dot(QK, reinterpret_cast<const W*>(w + r * ws) + i, reinterpret_cast<const A*>(a + c * as) + i);
      out[r * os + c] = s;
    }
}
template <int NW, int NA> void tile_q4_0(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_leg<LegQ4_0, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_q5_0(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_leg<LegQ5_0, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_q4_1(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_leg<LegQ4_1, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_q5_1(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_leg<LegQ5_1, NW, NA>(n, w, ws, a, as, out, os);
}

template <int NW, int NA>
void tile_q8_0(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  const int64_t nb = n / QK;
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[NW][NA];
  #pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    __m512i au[NA];
    __m512 da[NA];
    #pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) {
      const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(a + c * as) + i;
      au[c] = _mm512_xor_si512(load_2x256(y[0].qs, y[1].qs), k80);  // a + 128 as unsigned
      da[c] = half_pair(y[0].d, y[1].d);
    }
    #pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(w + r * ws) + i;
      const __m512i wv = load_2x256(x[0].qs, x[1].qs);
      // -128 * sum(w)
      const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, wv));
      const __m512 dw = half_pair(x[0].d, x[1].d);
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const __m512i p = _mm512_dpbusd_epi32(corr, au[c], wv);
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, da[c]), acc[r][c]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) {
      float s = _mm512_reduce_add_ps(acc[r][c]);
      if (i < nb)
        s += dot_q8_0(QK, reinterpret_cast<const BlockQ8_0*>(w + r * ws) + i,
                      reinterpret_cast<const BlockQ8_0*>(a + c * as) + i);
      out[r * os + c] = s;
    }
}

// Field view of the i-th Q4_K or Q5_K block of a row.
struct KBlock { uint16_t d, dmin; const uint8_t* scales; const uint8_t* qs; const uint8_t* qh; };
template <bool kQ5>
inline KBlock kblock(const uint8_t* row, int64_t i) {
  if constexpr (kQ5) {
    const BlockQ5_K* x = reinterpret_cast<const BlockQ5_K*>(row) + i;
    return {x->d, x->dmin, x->scales, x->qs, x->qh};
  } else {
    const BlockQ4_K* x = reinterpret_cast<const BlockQ4_K*>(row) + i;
    return {x->d, x->dmin, x->scales, x->qs, nullptr};
  }
}
template <bool kQ5, int NW, int NA>
void tile_q45_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  const int64_t nb = n / QK_K;
  const __m512i m4 = _mm512_set1_epi8(0x0F), k16 = _mm512_set1_epi8(16);
  auto sel = [](int b0, int b1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(static_cast<char>(1 << b0))),
                              _mm256_set1_epi8(static_cast<char>(1 << b1)), 1);
  };
  const __m512i sel_l[2] = {sel(0, 2), sel(4, 6)}, sel_h[2] = {sel(1, 3), sel(5, 7)};
  const __m512i idx[4] = {idx_2x16(0, 2), idx_2x16(1, 3), idx_2x16(4, 6), idx_2x16(5, 7)};
  const __m256i dup = _mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  __m512 acc[NW][NA];
  #pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    __m512i sumi[NW][NA];
    #pragma GCC unroll 8
    for (int r = 0; r < NW; ++r)
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) sumi[r][c] = _mm512_setzero_si512();
    __m512i sc16[NW];
    #pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const KBlock x = kblock<kQ5>(w + r * ws, i);
      uint64_t sc, mn;
      unpack_scales_k4_u64(x.scales, &sc, &mn);
      sc16[r] = _mm512_castsi256_si512(_mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc)))));
      const __m256i mins16 = _mm256_permutexvar_epi16(
          dup, _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn)))));
      const float dmin = h2f(x.dmin);
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(a + c * as) + i;
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y->bsums));
        const __m512 m = _mm512_zextps256_ps512(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins16)));
        acc[r][c] = _mm512_fnmadd_ps(m, _mm512_set1_ps(dmin * y->d), acc[r][c]);
      }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < 2; ++t) {
      __m512i al[NA], ah[NA];
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const int8_t* q8 = (reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->qs + 128 * t;
        al[c] = load_2x256(q8, q8 + 64);
        ah[c] = load_2x256(q8 + 32, q8 + 96);
      }
      #pragma GCC unroll 8
      for (int r = 0; r < NW; ++r) {
        const KBlock x = kblock<kQ5>(w + r * ws, i);
        const __m512i q = _mm512_loadu_si512(x.qs + 64 * t);
        __m512i wl = _mm512_and_si512(q, m4);
        __m512i wh = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        if constexpr (kQ5) {
          const __m512i qh2 = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh)));
          wl = _mm512_mask_add_epi8(wl, _mm512_test_epi8_mask(qh2, sel_l[t]), wl, k16);
          wh = _mm512_mask_add_epi8(wh, _mm512_test_epi8_mask(qh2, sel_h[t]), wh, k16);
        }
        const __m512i sl = _mm512_permutexvar_epi16(idx[2 * t], sc16[r]);
        const __m512i sh = _mm512_permutexvar_epi16(idx[2 * t + 1], sc16[r]);
        #pragma GCC unroll 8
        for (int c = 0; c < NA; ++c) {
          sumi[r][c] = _mm512_dpwssd_epi32(sumi[r][c], _mm512_maddubs_epi16(wl, al[c]), sl);
          sumi[r][c] = _mm512_dpwssd_epi32(sumi[r][c], _mm512_maddubs_epi16(wh, ah[c]), sh);
        }
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const float d = h2f(kblock<kQ5>(w + r * ws, i).d);
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const float dy = (reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->d;
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[r][c]), _mm512_set1_ps(d * dy), acc[r][c]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) out[r * os + c] = _mm512_reduce_add_ps(acc[r][c]);
}

template <int NW, int NA>
void tile_q6_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  const int64_t nb = n / QK_K;
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i rot_l = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
  const __m512i rot_h = _mm512_set_epi64(62, 62, 62, 62, 0, 0, 0, 0);
  const __m512i idx[4] = {idx_4x8(0), idx_4x8(4), idx_4x8(8), idx_4x8(12)};
  __m512 acc[NW][NA];
  #pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    __m512i sumi[NW][NA];
    #pragma GCC unroll 8
    for (int r = 0; r < NW; ++r)
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) sumi[r][c] = _mm512_setzero_si512();
    __m512i sc[NW];
    #pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(w + r * ws) + i;
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales)));
      sc[r] = _mm512_castsi256_si512(sc16);
      const float d = h2f(x->d);
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(a + c * as) + i;
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y->bsums));
        const __m512 m = _mm512_zextps256_ps512(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, sc16)));
        acc[r][c] = _mm512_fnmadd_ps(m, _mm512_set1_ps(32.0f * d * y->d), acc[r][c]);
      }
    }
    #pragma GCC unroll 8
    for (int h = 0; h < 2; ++h) {
      __m512i al[NA], ah[NA];
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const int8_t* q8 = (reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->qs + 128 * h;
        al[c] = _mm512_loadu_si512(q8);
        ah[c] = _mm512_loadu_si512(q8 + 64);
      }
      #pragma GCC unroll 8
      for (int r = 0; r < NW; ++r) {
        const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(w + r * ws) + i;
        const __m512i l = _mm512_loadu_si512(x->ql + 64 * h);
        const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->qh + 32 * h)));
        const __m512i wl = _mm512_ternarylogic_epi32(l, m4, _mm512_and_si512(_mm512_rolv_epi64(hb, rot_l), m30), 0xEA);
        const __m512i wh = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), m4,
                                                     _mm512_and_si512(_mm512_rolv_epi64(hb, rot_h), m30), 0xEA);
        const __m512i sl = _mm512_permutexvar_epi16(idx[2 * h], sc[r]);
        const __m512i sh = _mm512_permutexvar_epi16(idx[2 * h + 1], sc[r]);
        #pragma GCC unroll 8
        for (int c = 0; c < NA; ++c) {
          sumi[r][c] = _mm512_dpwssd_epi32(sumi[r][c], _mm512_maddubs_epi16(wl, al[c]), sl);
          sumi[r][c] = _mm512_dpwssd_epi32(sumi[r][c], _mm512_maddubs_epi16(wh, ah[c]), sh);
        }
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const float d = h2f((reinterpret_cast<const BlockQ6_K*>(w + r * ws) + i)->d);
      #pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const float dy = (reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->d;
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[r][c]), _mm512_set1_ps(d * dy), acc[r][c]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) out[r * os + c] = _mm512_reduce_add_ps(acc[r][c]);
}

template <int NW, int NA> void tile_q4_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_q45_k<false, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_q5_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_q45_k<true, NW, NA>(n, w, ws, a, as, out, os);
}

// F32 / F16 / BF16 weights with F32 activations: each weight vector is
// converted once for all activation rows.
inline __m512 load_f32(const uint8_t* p) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p)); }
inline __m512 load_f32_mask(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(p)); }
inline __m512 load_f16_b(const uint8_t* p) { return load_f16(reinterpret_cast<const uint16_t*>(p)); }
inline __m512 load_f16_mask_b(const uint8_t* p, __mmask16 m) { return load_f16_mask(reinterpret_cast<const uint16_t*>(p), m); }
inline __m512 load_bf16_b(const uint8_t* p) { return load_bf16(reinterpret_cast<const uint16_t*>(p)); }
inline __m512 load_bf16_mask_b(const uint8_t* p, __mmask16 m) { return load_bf16_mask(reinterpret_cast<const uint16_t*>(p), m); }

template <int kEltBytes, __m512 (*Load)(const uint8_t*), __m512 (*LoadMask)(const uint8_t*, __mmask16)>
struct FloatTile {
  // 16 elements of every (row, column) pair; m = 0xFFFF in the main loop.
  template <int NW, int NA>
  static inline __attribute__((always_inline)) void step(const uint8_t* w, size_t ws, const uint8_t* a, size_t as,
                                                         int64_t i, __mmask16 m, __m512 (&acc)[NW][NA]) {
    __m512 av[NA];
#pragma GCC unroll 8
    for (int c = 0; c < NA; ++c)
      av[c] = m == 0xFFFF ? _mm512_loadu_ps(reinterpret_cast<const float*>(a + c * as) + i)
                          : _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(a + c * as) + i);
#pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wp = w + r * ws + i * kEltBytes;
      const __m512 wv = m == 0xFFFF ? Load(wp) : LoadMask(wp, m);
#pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) acc[r][c] = _mm512_fmadd_ps(wv, av[c], acc[r][c]);
    }
  }
  template <int NW, int NA>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
    __m512 acc[NW][NA];
#pragma GCC unroll 8
    for (int r = 0; r < NW; ++r)
#pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) step(w, ws, a, as, i, 0xFFFF, acc);
    if (i < n) step(w, ws, a, as, i, static_cast<__mmask16>((1u << (n - i)) - 1), acc);
    for (int r = 0; r < NW; ++r)
      for (int c = 0; c < NA; ++c) out[r * os + c] = _mm512_reduce_add_ps(acc[r][c]);
  }
};
template <int NW, int NA> void tile_f32(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  FloatTile<4, load_f32, load_f32_mask>::run<NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_f16(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  FloatTile<2, load_f16_b, load_f16_mask_b>::run<NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_bf16(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  FloatTile<2, load_bf16_b, load_bf16_mask_b>::run<NW, NA>(n, w, ws, a, as, out, os);
}

// Q2_K (kQ3 = false) / Q3_K (kQ3 = true) tiles.
template <bool kQ3, int NW, int NA>
void tile_q23_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  const int64_t nb = n / QK_K;
  const __m512i m3 = _mm512_set1_epi8(3), k4 = _mm512_set1_epi8(4);
  const __m512i idx[4] = {idx_q2(0), idx_q2(1), idx_q2(2), idx_q2(3)};
  __m512 acc[NW][NA];
#pragma GCC unroll 8
  for (int r = 0; r < NW; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < NA; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    __m512i sumi[NW][NA], sc[NW];
#pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      __m256i sc16, mn16 = _mm256_setzero_si256();
      float dmin = 0;
      if constexpr (kQ3) {
        const BlockQ3_K* x = reinterpret_cast<const BlockQ3_K*>(w + r * ws) + i;
        uint32_t scb[4];
        unpack_scales_q3k_biased(x->scales, scb);
        const __m128i scv = _mm_set_epi32(static_cast<int>(scb[3]), static_cast<int>(scb[2]),
                                          static_cast<int>(scb[1]), static_cast<int>(scb[0]));
        sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(scv, _mm_set1_epi8(32)));
      } else {
        const BlockQ2_K* x = reinterpret_cast<const BlockQ2_K*>(w + r * ws) + i;
        const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales));
        sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0x0F)));
        mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F)));
        dmin = h2f(x->dmin);
      }
      sc[r] = _mm512_castsi256_si512(sc16);
#pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(a + c * as) + i;
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y->bsums));
        if constexpr (kQ3) {  // the -4 offset: -4 * sum_g sc[g] * bsums[g], in the integer sum
          sumi[r][c] = _mm512_zextsi256_si512(
              _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 2)));
        } else {
          sumi[r][c] = _mm512_setzero_si512();
          const __m512 m = _mm512_zextps256_ps512(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mn16)));
          acc[r][c] = _mm512_fnmadd_ps(m, _mm512_set1_ps(dmin * y->d), acc[r][c]);
        }
      }
    }
    for (int j = 0; j < 4; ++j) {
      __m512i av[NA];
#pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const int8_t* q8 = (reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->qs;
        av[c] = load_2x256(q8 + 32 * j, q8 + 128 + 32 * j);
      }
#pragma GCC unroll 8
      for (int r = 0; r < NW; ++r) {
        __m512i wq;
        if constexpr (kQ3) {
          const BlockQ3_K* x = reinterpret_cast<const BlockQ3_K*>(w + r * ws) + i;
          const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->hmask)));
          const __m512i sel = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(static_cast<char>(1 << j))),
                                                 _mm256_set1_epi8(static_cast<char>(1 << (4 + j))), 1);
          wq = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(x->qs), 2 * j), m3);
          wq = _mm512_mask_add_epi8(wq, _mm512_test_epi8_mask(hm, sel), wq, k4);
        } else {
          const BlockQ2_K* x = reinterpret_cast<const BlockQ2_K*>(w + r * ws) + i;
          wq = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(x->qs), 2 * j), m3);
        }
        const __m512i sv = _mm512_permutexvar_epi16(idx[j], sc[r]);
#pragma GCC unroll 8
        for (int c = 0; c < NA; ++c) sumi[r][c] = _mm512_dpwssd_epi32(sumi[r][c], _mm512_maddubs_epi16(wq, av[c]), sv);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NW; ++r) {
      const float d = kQ3 ? h2f((reinterpret_cast<const BlockQ3_K*>(w + r * ws) + i)->d)
                          : h2f((reinterpret_cast<const BlockQ2_K*>(w + r * ws) + i)->d);
#pragma GCC unroll 8
      for (int c = 0; c < NA; ++c) {
        const float dy = (reinterpret_cast<const BlockQ8_K*>(a + c * as) + i)->d;
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[r][c]), _mm512_set1_ps(d * dy), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < NW; ++r)
    for (int c = 0; c < NA; ++c) out[r * os + c] = _mm512_reduce_add_ps(acc[r][c]);
}
template <int NW, int NA> void tile_q2_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_q23_k<false, NW, NA>(n, w, ws, a, as, out, os);
}
template <int NW, int NA> void tile_q3_k(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, size_t os) {
  tile_q23_k<true, NW, NA>(n, w, ws, a, as, out, os);
}

#define LMHOST_TILE_TABLE(F)                                                   \
  {{F<1, 1>, F<1, 2>, F<1, 3>, F<1, 4>}, {F<2, 1>, F<2, 2>, F<2, 3>, F<2, 4>}, \
   {F<3, 1>, F<3, 2>, F<3, 3>, F<3, 4>}, {F<4, 1>, F<4, 2>, F<4, 3>, F<4, 4>}}

// Legacy tiles: any nw x na directly. K-quant tiles: at most 2 x 2 per pass
// (integer + float accumulators and the decoded blocks must fit in 32
// registers); larger tiles are split.
template <int kMaxRows, int kMaxCols>
void run_tile(const TileImpl (&tbl)[4][4], int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw,
              int na, float* out, size_t os) {
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t* ab = static_cast<const uint8_t*>(a);
  for (int r0 = 0; r0 < nw; r0 += kMaxRows) {
    const int nr = nw - r0 < kMaxRows ? nw - r0 : kMaxRows;
    for (int c0 = 0; c0 < na; c0 += kMaxCols) {
      const int nc = na - c0 < kMaxCols ? na - c0 : kMaxCols;
      tbl[nr - 1][nc - 1](n, wb + r0 * ws, ws, ab + c0 * as, as, out + r0 * os + c0, os);
    }
  }
}

// K-quant sub-tile shape (measured best on Zen 4: 2 x 2).
constexpr int kKqRows = 2, kKqCols = 2;
void vec_dot_tile_q4_0(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q4_0);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q5_0(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q5_0);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q4_1(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q4_1);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q5_1(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q5_1);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q8_0(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q8_0);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q4_k(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q4_k);
  run_tile<kKqRows, kKqCols>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q5_k(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q5_k);
  run_tile<kKqRows, kKqCols>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_f32(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                      size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_f32);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_f16(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                      size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_f16);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_bf16(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_bf16);
  run_tile<4, 4>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q2_k(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q2_k);
  run_tile<kKqRows, kKqCols>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q3_k(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q3_k);
  run_tile<kKqRows, kKqCols>(tbl, n, w, ws, a, as, nw, na, out, os);
}
void vec_dot_tile_q6_k(int64_t n, const void* w, size_t ws, const void* a, size_t as, int nw, int na, float* out,
                       size_t os) {
  static const TileImpl tbl[4][4] = LMHOST_TILE_TABLE(tile_q6_k);
  run_tile<kKqRows, kKqCols>(tbl, n, w, ws, a, as, nw, na, out, os);
}
#undef LMHOST_TILE_TABLE


// ---------------------------------------------------------------- decode gemv
//
// Q4_0 weights against one prepared activation row, one weight row at a time
// (a single sequential stream the hardware prefetcher follows; several rows
// at once break it into short streams and run at half the speed from DRAM).
// The row kernel is limited by shuffles (Zen 4 has two shuffle pipes): per
// block pair it widens nibbles across lanes and assembles scales. Here 8
// blocks (144 bytes) come in with two 64-byte loads and one 16-byte load;
// three byte permutes (VBMI) pick out the 4+4 blocks' nibbles and the 8
// fp16 scales, the activation is pre-arranged to match the low/high nibble
// halves, and the reduction keeps two partial sums per block so a single
// unpack pair and one FMA finish the group.

struct GemvIdx {
  alignas(64) uint8_t qa[64], qb[64], d[64];
};
constexpr GemvIdx make_gemv_idx() {
  GemvIdx x{};
  for (int k = 0; k < 64; ++k) {
    x.qa[k] = static_cast<uint8_t>(2 + 18 * (k / 16) + k % 16);
    x.qb[k] = static_cast<uint8_t>(2 + 18 * (4 + k / 16) + k % 16 - 64);
  }
  for (int j = 0; j < 16; ++j) {
    const int blk = j % 4 < 2 ? j / 4 : 4 + j / 4;
    x.d[2 * j] = static_cast<uint8_t>(18 * blk);
    x.d[2 * j + 1] = static_cast<uint8_t>(18 * blk + 1);
  }
  for (int j = 32; j < 64; ++j) x.d[j] = 0;
  return x;
}
constexpr GemvIdx kGemvIdx = make_gemv_idx();
#ifndef LMHOST_GEMV_PREFETCH
#define LMHOST_GEMV_PREFETCH 0
#endif
constexpr int kGemvPrefetch = LMHOST_GEMV_PREFETCH;  // bytes ahead; 0 (hardware prefetch only) measured fastest: 16 vs 13 GB/s from DRAM

__attribute__((target("avx512vbmi"))) void gemv_q4_0(int64_t n, const void* w, size_t ws, int64_t rows,
                                                      const GemvAct& act, float* out) {
  const int64_t nb = n / QK, ng = nb / 8;
  const __m512i iqa = _mm512_load_si512(kGemvIdx.qa), iqb = _mm512_load_si512(kGemvIdx.qb);
  const __m512i id = _mm512_load_si512(kGemvIdx.d);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(act.q8);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w) + r * ws;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; ++g) {
      const uint8_t* p = row + 144 * g;
      const int8_t* a = act.qs + 256 * g;
      if constexpr (kGemvPrefetch > 0) {
        _mm_prefetch(reinterpret_cast<const char*>(p) + kGemvPrefetch, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p) + kGemvPrefetch + 64, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p) + kGemvPrefetch + 128, _MM_HINT_T0);
      }
      const __m512i r0 = _mm512_loadu_si512(p), r1 = _mm512_loadu_si512(p + 64);
      const __m512i r2 = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 128)));
      const __m512i qa = _mm512_permutex2var_epi8(r0, iqa, r1);
      const __m512i qb = _mm512_permutex2var_epi8(r1, iqb, r2);
      const __m512i dh = _mm512_permutex2var_epi8(r0, id, r1);
      __m512i pa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qa, m4), _mm512_loadu_si512(a));
      pa = _mm512_dpbusd_epi32(pa, _mm512_and_si512(_mm512_srli_epi16(qa, 4), m4), _mm512_loadu_si512(a + 64));
      __m512i pb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qb, m4), _mm512_loadu_si512(a + 128));
      pb = _mm512_dpbusd_epi32(pb, _mm512_and_si512(_mm512_srli_epi16(qb, 4), m4), _mm512_loadu_si512(a + 192));
      __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(pa, pb), _mm512_unpackhi_epi64(pa, pb));
      t = _mm512_sub_epi32(t, _mm512_loadu_si512(act.corr + 16 * g));
      const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, _mm512_loadu_ps(act.d + 16 * g)), acc);
    }
    int64_t done = ng * 8;
    if (nb - done >= 4) {  // half group: blocks 0..3 only; masked loads stay inside the row
      const uint8_t* p = row + 144 * ng;
      const int8_t* a = act.qs + 256 * ng;
      const __m512i r0 = _mm512_maskz_loadu_epi8(~__mmask64{0}, p);
      const __m512i r1 = _mm512_maskz_loadu_epi8(0xFF, p + 64);
      const __m512i qa = _mm512_permutex2var_epi8(r0, iqa, r1);
      const __m512i dh = _mm512_maskz_permutex2var_epi8(0x0F0F0F0F, r0, id, r1);  // fp16 lanes of blocks 4..7 -> 0
      __m512i pa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qa, m4), _mm512_loadu_si512(a));
      pa = _mm512_dpbusd_epi32(pa, _mm512_and_si512(_mm512_srli_epi16(qa, 4), m4), _mm512_loadu_si512(a + 64));
      __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(pa, _mm512_setzero_si512()),
                                   _mm512_unpackhi_epi64(pa, _mm512_setzero_si512()));
      t = _mm512_sub_epi32(t, _mm512_loadu_si512(act.corr + 16 * ng));
      const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, _mm512_loadu_ps(act.d + 16 * ng)), acc);
      done += 4;
    }
    float s = _mm512_reduce_add_ps(acc);
    if (done < nb)
      s += dot_q4_0((nb - done) * QK, reinterpret_cast<const BlockQ4_0*>(row) + done, y + done);
    out[r] = s;
  }
}


// ---------------------------------------------------------------- attention

void attn_f16(const float* q, const uint16_t* k, const uint16_t* v, int64_t ks, int64_t vs, int n_pos, int hdk,
              int hdv, float scale, float* scores, float* out) {
  const int nk = hdk / 16, nv = hdv / 16;
  __m512 qr[16];
  for (int c = 0; c < nk; ++c)  // q rounded to F16, as the reference computes with an F16 cache
    qr[c] = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(q + 16 * c), _MM_FROUND_TO_NEAREST_INT));
  float mx = -INFINITY;
  for (int j = 0; j < n_pos; ++j) {
    const uint16_t* kj = k + j * ks;
    __m512 a0 = _mm512_mul_ps(qr[0], load_f16(kj));
    __m512 a1 = _mm512_setzero_ps();
    int c = 1;
    for (; c + 1 < nk; c += 2) {
      a1 = _mm512_fmadd_ps(qr[c], load_f16(kj + 16 * c), a1);
      a0 = _mm512_fmadd_ps(qr[c + 1], load_f16(kj + 16 * (c + 1)), a0);
    }
    if (c < nk) a1 = _mm512_fmadd_ps(qr[c], load_f16(kj + 16 * c), a1);
    const float sc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) * scale;
    scores[j] = sc;
    mx = sc > mx ? sc : mx;
  }
  double sum = 0.0;
  for (int j = 0; j < n_pos; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  __m512 acc[16];
  for (int c = 0; c < nv; ++c) acc[c] = _mm512_setzero_ps();
  for (int j = 0; j < n_pos; ++j) {
    const float pf = _cvtsh_ss(_cvtss_sh(scores[j] * inv, _MM_FROUND_TO_NEAREST_INT));
    const __m512 p = _mm512_set1_ps(pf);
    const uint16_t* vj = v + j * vs;
    for (int c = 0; c < nv; ++c) acc[c] = _mm512_fmadd_ps(p, load_f16(vj + 16 * c), acc[c]);
  }
  for (int c = 0; c < nv; ++c) _mm512_storeu_ps(out + 16 * c, acc[c]);
}
}  // namespace

void fill_avx512(Kernels& k) {
  auto id = [](DType t) { return static_cast<uint32_t>(t); };
  k.vec_dot[id(DType::F32)] = dot_f32;
  k.vec_dot[id(DType::F16)] = dot_half<load_f16, load_f16_mask>;
  k.vec_dot[id(DType::BF16)] = dot_half<load_bf16, load_bf16_mask>;
  k.dequantize[id(DType::F16)] = dequant_half<load_f16, load_f16_mask>;
  k.dequantize[id(DType::BF16)] = dequant_half<load_bf16, load_bf16_mask>;
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
  if (__builtin_cpu_supports("avx512vbmi")) k.gemv[id(DType::Q4_0)] = gemv_q4_0;
  k.attn_f16 = attn_f16;
  k.vec_dot[id(DType::Q2_K)] = dot_q2_k;
  k.vec_dot[id(DType::Q3_K)] = dot_q3_k;
  k.vec_dot[id(DType::Q4_K)] = dot_q45_k<false>;
  k.vec_dot[id(DType::Q5_K)] = dot_q45_k<true>;
  k.vec_dot[id(DType::Q6_K)] = dot_q6_k;
  k.vec_dot_tile[id(DType::F32)] = vec_dot_tile_f32;
  k.vec_dot_tile[id(DType::F16)] = vec_dot_tile_f16;
  k.vec_dot_tile[id(DType::BF16)] = vec_dot_tile_bf16;
  k.vec_dot_tile[id(DType::Q4_0)] = vec_dot_tile_q4_0;
  k.vec_dot_tile[id(DType::Q4_1)] = vec_dot_tile_q4_1;
  k.vec_dot_tile[id(DType::Q5_0)] = vec_dot_tile_q5_0;
  k.vec_dot_tile[id(DType::Q5_1)] = vec_dot_tile_q5_1;
  k.vec_dot_tile[id(DType::Q8_0)] = vec_dot_tile_q8_0;
  k.vec_dot_tile[id(DType::Q2_K)] = vec_dot_tile_q2_k;
  k.vec_dot_tile[id(DType::Q3_K)] = vec_dot_tile_q3_k;
  k.vec_dot_tile[id(DType::Q4_K)] = vec_dot_tile_q4_k;
  k.vec_dot_tile[id(DType::Q5_K)] = vec_dot_tile_q5_k;
  k.vec_dot_tile[id(DType::Q6_K)] = vec_dot_tile_q6_k;
}

}  // namespace lmhost::detail
