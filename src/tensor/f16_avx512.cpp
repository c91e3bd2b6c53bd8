// AVX-512 encoder kernels (see encoder_kernels.h): the packed-panel GEMM for
// F16 / F32 weights, per-sequence attention, GELU and residual + LayerNorm;
// and the decoder's SwiGLU (Kernels::swiglu), which shares their e^x.
//
// GEMM register tile: 3 panels (48 weight rows) x 8 tokens = 24 accumulators;
// per k, 3 weight vectors (vcvtph2ps from 16 halves each) and 8 activation
// broadcasts feed 24 FMAs. Each weight vector serves 8 tokens, each activation
// broadcast 48 rows; the panels of a call (K x 48 weights) stay in L2 while
// the token groups run over them.
// GCC 12 warns inside its own _mm512_reduce_* / masked-load intrinsics (_mm512_undefined_*).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/encoder_kernels.h"
#include "tensor/exp_avx512.h"
#include "tensor/kernels.h"

namespace lmhost {
namespace {

using detail::exp512;

constexpr int kNP = 3;  // panels per register tile
constexpr int kMT = 8;  // tokens per register tile

template <bool kF16>
inline __attribute__((always_inline)) __m512 load_w(const uint8_t* p) {
  if constexpr (kF16) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  else return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}

inline __mmask16 col_mask(int64_t rem) { return rem >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << rem) - 1); }

using MicroFn = void (*)(const uint8_t* panels, size_t panel_bytes, int64_t K, const float* x, int64_t ldx, float* y,
                         int64_t ldy, int64_t n_cols, const float* bias);

template <bool kF16, int NP, int MT>
void micro(const uint8_t* panels, size_t panel_bytes, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy,
           int64_t n_cols, const float* bias) {
  constexpr int64_t eb = kF16 ? 2 : 4;
  __m512 acc[NP][MT];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    const __m512 b = bias ? _mm512_maskz_loadu_ps(col_mask(n_cols - 16 * p), bias + 16 * p) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < MT; ++t) acc[p][t] = b;
  }
  const uint8_t* wp[NP];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) wp[p] = panels + p * panel_bytes;
  for (int64_t k = 0; k < K; ++k) {
    __m512 w[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) w[p] = load_w<kF16>(wp[p] + k * 16 * eb);
#pragma GCC unroll 8
    for (int t = 0; t < MT; ++t) {
      const __m512 xb = _mm512_set1_ps(x[t * ldx + k]);
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) acc[p][t] = _mm512_fmadd_ps(w[p], xb, acc[p][t]);
    }
  }
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    const int64_t rem = n_cols - 16 * p;
    if (rem >= 16) {
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) _mm512_storeu_ps(y + t * ldy + 16 * p, acc[p][t]);
    } else {
      const __mmask16 m = col_mask(rem);
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) _mm512_mask_storeu_ps(y + t * ldy + 16 * p, m, acc[p][t]);
    }
  }
}

#define LMHOST_MICRO_ROW(F, NP) \
  { micro<F, NP, 1>, micro<F, NP, 2>, micro<F, NP, 3>, micro<F, NP, 4>, micro<F, NP, 5>, micro<F, NP, 6>, micro<F, NP, 7>, micro<F, NP, 8> }

template <bool kF16>
void gemm(const void* panels, int64_t K, int64_t n_cols, const float* x, int64_t ldx, int64_t T, float* y,
          int64_t ldy, const float* bias) {
  static constexpr MicroFn tbl[kNP][kMT] = {LMHOST_MICRO_ROW(kF16, 1), LMHOST_MICRO_ROW(kF16, 2),
                                            LMHOST_MICRO_ROW(kF16, 3)};
  const size_t pb = static_cast<size_t>(K) * 16 * (kF16 ? 2 : 4);
  const int64_t np = panel_count(n_cols);
  const uint8_t* base = static_cast<const uint8_t*>(panels);
  for (int64_t p0 = 0; p0 < np; p0 += kNP) {
    const int nps = static_cast<int>(std::min<int64_t>(kNP, np - p0));
    const int64_t cols = n_cols - 16 * p0;
    const float* b = bias ? bias + 16 * p0 : nullptr;
    for (int64_t t0 = 0; t0 < T; t0 += kMT) {
      const int mt = static_cast<int>(std::min<int64_t>(kMT, T - t0));
      tbl[nps - 1][mt - 1](base + p0 * pb, pb, K, x + t0 * ldx, ldx, y + t0 * ldy + 16 * p0, ldy, cols, b);
    }
  }
}

void gelu(float* x, int64_t n) {
  const __m512 c = _mm512_set1_ps(2.0f * 0.79788456080286535588f), c3 = _mm512_set1_ps(0.044715f);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = col_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    // 0.5 v (1 + tanh(u)) = v - v / (1 + e^(2u))
    const __m512 u2 = _mm512_mul_ps(_mm512_mul_ps(c, v), _mm512_fmadd_ps(_mm512_mul_ps(c3, v), v, one));
    const __m512 e = exp512(_mm512_min_ps(u2, _mm512_set1_ps(80.0f)));
    _mm512_mask_storeu_ps(x + i, m, _mm512_sub_ps(v, _mm512_div_ps(v, _mm512_add_ps(one, e))));
  }
}

// out = silu(gate) * up = gate * up / (1 + e^-gate); out may alias gate or up.
void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = col_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));  // clamped: e^88 stays finite, gate/(1+e) -> 0
    _mm512_mask_storeu_ps(out + i, m, _mm512_div_ps(_mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, up + i)), _mm512_add_ps(one, e)));
  }
}

void add_norm(float* x, const float* o, const float* bias, const float* w, const float* b, int64_t n, float eps) {
  __m512 s = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = col_mask(n - i);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, o + i));
    if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
    _mm512_mask_storeu_ps(x + i, m, v);
    s = _mm512_add_ps(s, v);
  }
  const float mean = _mm512_reduce_add_ps(s) / static_cast<float>(n);
  const __m512 mv = _mm512_set1_ps(mean);
  __m512 var = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = col_mask(n - i);
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), mv);
    var = _mm512_fmadd_ps(d, d, var);
  }
  const float scale = 1.0f / std::sqrt(_mm512_reduce_add_ps(var) / static_cast<float>(n) + eps);
  const __m512 sv = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = col_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mv), sv);
    if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
    if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(x + i, m, v);
  }
}

// out_i = sum_j e_j v_j / sum_j e_j over the probabilities e (Lp floats, 0
// past L), ND vectors of 16 per row; four positions at a time.
template <int ND>
inline void weighted_sum(const float* e, const float* v, int64_t ld, int L, float inv, float* o) {
  __m512 acc[4][ND];
#pragma GCC unroll 4
  for (int u = 0; u < 4; ++u)
#pragma GCC unroll 4
    for (int d = 0; d < ND; ++d) acc[u][d] = _mm512_setzero_ps();
  int j = 0;
  for (; j + 4 <= L; j += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const __m512 p = _mm512_set1_ps(e[j + u]);
#pragma GCC unroll 4
      for (int d = 0; d < ND; ++d) acc[u][d] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + (j + u) * ld + 16 * d), acc[u][d]);
    }
  }
  for (; j < L; ++j) {
    const __m512 p = _mm512_set1_ps(e[j]);
#pragma GCC unroll 4
    for (int d = 0; d < ND; ++d) acc[0][d] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + j * ld + 16 * d), acc[0][d]);
  }
  const __m512 iv = _mm512_set1_ps(inv);
#pragma GCC unroll 4
  for (int d = 0; d < ND; ++d)
    _mm512_storeu_ps(o + 16 * d, _mm512_mul_ps(iv, _mm512_add_ps(_mm512_add_ps(acc[0][d], acc[1][d]),
                                                                 _mm512_add_ps(acc[2][d], acc[3][d]))));
}

void weighted_sum_any(const float* e, const float* v, int64_t ld, int L, int hd, float inv, float* o) {
  for (int d0 = 0; d0 < hd; d0 += 64) {
    const int nd = std::min(4, (hd - d0) / 16);
    switch (nd) {
      case 1: weighted_sum<1>(e, v + d0, ld, L, inv, o + d0); break;
      case 2: weighted_sum<2>(e, v + d0, ld, L, inv, o + d0); break;
      case 3: weighted_sum<3>(e, v + d0, ld, L, inv, o + d0); break;
      default: weighted_sum<4>(e, v + d0, ld, L, inv, o + d0); break;
    }
  }
}

void attn_scalar_fallback(const float* q, const float* k, const float* v, int64_t ld, float* out, int64_t ld_out,
                          int L, int hd, float scale, float* scratch);

void attn(const float* q, const float* k, const float* v, int64_t ld, float* out, int64_t ld_out, int L, int hd,
          float scale, float* scratch) {
  if (hd % 16 != 0 || hd > 256) {
    attn_scalar_fallback(q, k, v, ld, out, ld_out, L, hd, scale, scratch);
    return;
  }
  const int Lp = (L + 15) / 16 * 16, nv = Lp / 16;
  // K transposed (hd x Lp) and V copied contiguous (L x hd): the rows of one
  // head sit 3E floats apart in the QKV buffer, a stride that maps every row
  // to a few L1 sets (minilm: 4608 bytes, 8 of 64 sets), so reading them
  // once, row by row, is far cheaper than reading them per query.
  float* kt = scratch;
  float* vc = scratch + static_cast<int64_t>(hd) * Lp;
  float* s = vc + static_cast<int64_t>(L) * hd;  // Lp scores
  for (int j = 0; j < L; ++j) {
    const float* kr = k + static_cast<int64_t>(j) * ld;
    for (int d = 0; d < hd; ++d) kt[static_cast<int64_t>(d) * Lp + j] = kr[d];
    std::memcpy(vc + static_cast<int64_t>(j) * hd, v + static_cast<int64_t>(j) * ld, hd * sizeof(float));
  }
  for (int d = 0; d < hd; ++d)
    for (int j = L; j < Lp; ++j) kt[static_cast<int64_t>(d) * Lp + j] = 0.0f;
  const __mmask16 last = col_mask(L - (nv - 1) * 16);
  for (int i = 0; i < L; ++i) {
    const float* qi = q + static_cast<int64_t>(i) * ld;
    // scores, 8 vectors of positions at a time
    for (int c0 = 0; c0 < nv; c0 += 8) {
      const int nc = std::min(8, nv - c0);
      __m512 acc[8];
      for (int c = 0; c < 8; ++c) acc[c] = _mm512_setzero_ps();
      if (nc == 8) {
        for (int d = 0; d < hd; ++d) {
          const __m512 qb = _mm512_set1_ps(qi[d]);
          const float* row = kt + static_cast<int64_t>(d) * Lp + 16 * c0;
#pragma GCC unroll 8
          for (int c = 0; c < 8; ++c) acc[c] = _mm512_fmadd_ps(qb, _mm512_loadu_ps(row + 16 * c), acc[c]);
        }
      } else {
        for (int d = 0; d < hd; ++d) {
          const __m512 qb = _mm512_set1_ps(qi[d]);
          const float* row = kt + static_cast<int64_t>(d) * Lp + 16 * c0;
          for (int c = 0; c < nc; ++c) acc[c] = _mm512_fmadd_ps(qb, _mm512_loadu_ps(row + 16 * c), acc[c]);
        }
      }
      for (int c = 0; c < nc; ++c) _mm512_storeu_ps(s + 16 * (c0 + c), _mm512_mul_ps(acc[c], _mm512_set1_ps(scale)));
    }
    // softmax over the first L scores
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int c = 0; c < nv; ++c)
      mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), c == nv - 1 ? last : 0xFFFF, s + 16 * c));
    const __m512 mv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < nv; ++c) {
      const __mmask16 m = c == nv - 1 ? last : 0xFFFF;
      const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_loadu_ps(s + 16 * c), mv)));
      _mm512_storeu_ps(s + 16 * c, e);
      sum = _mm512_add_ps(sum, e);
    }
    const float inv = 1.0f / _mm512_reduce_add_ps(sum);
    weighted_sum_any(s, vc, hd, L, hd, inv, out + static_cast<int64_t>(i) * ld_out);
  }
}

void attn_scalar_fallback(const float* q, const float* k, const float* v, int64_t ld, float* out, int64_t ld_out,
                          int L, int hd, float scale, float* scratch) {
  encoder_kernels_for(Isa::Scalar).attn(q, k, v, ld, out, ld_out, L, hd, scale, scratch);
}

}  // namespace

namespace detail {
void fill_encoder_avx512(EncoderKernels& k) {
  k.gemm_f16 = gemm<true>;
  k.gemm_f32 = gemm<false>;
  k.attn = attn;
  k.gelu = gelu;
  k.add_norm = add_norm;
}
void fill_f32_avx512(Kernels& k) { k.swiglu = swiglu; }
}  // namespace detail

}  // namespace lmhost
