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
#include <cstring>
#include <vector>

#include "tensor/blocks.h"

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
      __m512i s = _mm512_set1_epi32(wc[r]);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) s = _mm512_dpbusd_epi32(s, a[j], _mm512_set1_epi32(load_i32(wq + r * 32 + 4 * j)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(da, _mm512_set1_ps(wd[r])), acc[r]);
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

}  // namespace

void fill_gemm_avx512(Kernels& k) {
  auto id = [](DType t) { return static_cast<uint32_t>(t); };
  k.gemm[id(DType::Q4_0)] = gemm_leg<DecQ4_0>;
  k.gemm[id(DType::Q5_0)] = gemm_leg<DecQ5_0>;
  k.gemm[id(DType::Q8_0)] = gemm_leg<DecQ8_0>;
}

}  // namespace lmhost::detail
