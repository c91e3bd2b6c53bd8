// Scalar encoder kernels (the reference), panel packing, and the table.
#include "tensor/encoder_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "util/error.h"
#include "util/fp16.h"

namespace lmhost {

void layernorm_scalar(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / n);
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - mean;
    var += d * d;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(var / n) + eps);
  for (int64_t i = 0; i < n; ++i) {
    float v = (x[i] - mean) * scale;
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = v;
  }
}

namespace {

size_t elt_bytes(DType t) {
  if (t == DType::F16) return 2;
  if (t == DType::F32) return 4;
  throw Error(std::string("packed panels: type ") + dtype_name(t) + " is not supported (F16 or F32 only)");
}

inline float panel_value(DType t, const void* panels, int64_t K, int64_t n, int64_t k) {
  const int64_t idx = (n / kPanelRows) * K * kPanelRows + k * kPanelRows + n % kPanelRows;
  if (t == DType::F16) return fp16_to_fp32(static_cast<const uint16_t*>(panels)[idx]);
  return static_cast<const float*>(panels)[idx];
}

void attn_scalar(const float* q, const float* k, const float* v, int64_t ld, float* out, int64_t ld_out, int L,
                 int hd, float scale, float* scratch) {
  float* s = scratch;
  for (int i = 0; i < L; ++i) {
    const float* qi = q + i * ld;
    float mx = -INFINITY;
    for (int j = 0; j < L; ++j) {
      const float* kj = k + j * ld;
      float acc = 0.0f;
      for (int d = 0; d < hd; ++d) acc += qi[d] * kj[d];
      s[j] = acc * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0.0;
    for (int j = 0; j < L; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    float* o = out + i * ld_out;
    for (int d = 0; d < hd; ++d) o[d] = 0.0f;
    for (int j = 0; j < L; ++j) {
      const float p = s[j] * inv;
      const float* vj = v + j * ld;
      for (int d = 0; d < hd; ++d) o[d] += p * vj[d];
    }
  }
}

void gelu_scalar(float* x, int64_t n) {
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * v * (1.0f + 0.044715f * v * v)));
  }
}

void add_norm_scalar(float* x, const float* o, const float* bias, const float* w, const float* b, int64_t n,
                     float eps) {
  for (int64_t i = 0; i < n; ++i) x[i] += o[i] + (bias ? bias[i] : 0.0f);
  layernorm_scalar(x, w, b, x, n, eps);
}

EncoderKernels build(Isa isa) {
  EncoderKernels k{};
  k.isa = isa;
  k.attn = attn_scalar;
  k.gelu = gelu_scalar;
  k.add_norm = add_norm_scalar;
  if (isa >= Isa::AVX512 && detect_isa() >= Isa::AVX512) detail::fill_encoder_avx512(k);
  return k;
}

}  // namespace

size_t packed_bytes(DType t, int64_t N, int64_t K) {
  return static_cast<size_t>(panel_count(N)) * kPanelRows * static_cast<size_t>(K) * elt_bytes(t);
}

namespace {
template <class E>
void pack_typed(const uint8_t* src, size_t row_stride, int64_t N, int64_t K, E* out) {
  const int64_t np = panel_count(N);
  for (int64_t p = 0; p < np; ++p) {
    E* panel = out + p * kPanelRows * K;
    for (int i = 0; i < kPanelRows; ++i) {
      const int64_t r = p * kPanelRows + i;
      if (r >= N) {
        for (int64_t k = 0; k < K; ++k) panel[k * kPanelRows + i] = E{};
        continue;
      }
      E row_buf[256];
      const uint8_t* row = src + static_cast<size_t>(r) * row_stride;
      for (int64_t k0 = 0; k0 < K; k0 += 256) {  // rows may be unaligned: copy out in chunks
        const int64_t n = std::min<int64_t>(256, K - k0);
        std::memcpy(row_buf, row + k0 * sizeof(E), n * sizeof(E));
        for (int64_t k = 0; k < n; ++k) panel[(k0 + k) * kPanelRows + i] = row_buf[k];
      }
    }
  }
}
}  // namespace

void pack_panels(DType t, const void* w, size_t row_stride, int64_t N, int64_t K, void* out) {
  const uint8_t* src = static_cast<const uint8_t*>(w);
  if (elt_bytes(t) == 2) pack_typed(src, row_stride, N, K, static_cast<uint16_t*>(out));
  else pack_typed(src, row_stride, N, K, static_cast<float*>(out));
}

void gemm_packed_scalar(DType t, const void* panels, int64_t K, int64_t n_cols, const float* x, int64_t ldx,
                        int64_t T, float* y, int64_t ldy, const float* bias) {
  (void)elt_bytes(t);
  for (int64_t tt = 0; tt < T; ++tt)
    for (int64_t n = 0; n < n_cols; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += x[tt * ldx + k] * panel_value(t, panels, K, n, k);
      y[tt * ldy + n] = acc + (bias ? bias[n] : 0.0f);
    }
}

const EncoderKernels& encoder_kernels_for(Isa isa) {
  static const EncoderKernels scalar = build(Isa::Scalar);
  static const EncoderKernels avx2 = build(Isa::AVX2);
  static const EncoderKernels avx512 = build(Isa::AVX512);
  switch (isa) {
    case Isa::AVX2: return avx2;
    case Isa::AVX512: return avx512;
    default: return scalar;
  }
}

const EncoderKernels& encoder_kernels() {
  static const EncoderKernels& k = encoder_kernels_for(kernels().isa);
  return k;
}

}  // namespace lmhost
