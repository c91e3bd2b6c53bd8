// Scalar reference kernels: the oracle for the SIMD kernels and the fallback
// on CPUs without AVX2. Bit layouts follow ggml/GGUF exactly (see blocks.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace lmhost::detail {
namespace {

using namespace lmhost::blocks;

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }
inline uint16_t f2h(float f) { return fp32_to_fp16(f); }
// Round to nearest, ties to even (what the SIMD cvtps2dq does by default).
inline int rne(float x) { return static_cast<int>(std::nearbyint(x)); }

// ---------------------------------------------------------------- plain types

void dequant_f32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
void quant_f32(const float* src, void* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
void dequant_f16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
}
void quant_f16(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
}
void dequant_bf16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
}
void quant_bf16(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
}
float dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = static_cast<const float*>(w);
  const float* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * y[i];
  return static_cast<float>(s);
}
float dot_f16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(fp16_to_fp32(x[i])) * y[i];
  return static_cast<float>(s);
}
float dot_bf16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(bf16_to_fp32(x[i])) * y[i];
  return static_cast<float>(s);
}

// ------------------------------------------------------------- legacy blocks

void dequant_q4_0(const void* src, float* y, int64_t n) {
  const BlockQ4_0* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / QK; ++i, y += QK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * ((b[i].qs[j] & 0xF) - 8);
      y[j + 16] = d * ((b[i].qs[j] >> 4) - 8);
    }
  }
}
void quant_q4_0(const float* x, void* dst, int64_t n) {
  BlockQ4_0* b = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    float amax = 0, vmax = 0;  // the value of largest magnitude maps to -8
    for (int j = 0; j < QK; ++j)
      if (std::fabs(x[j]) > amax) { amax = std::fabs(x[j]); vmax = x[j]; }
    const float d = vmax / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::clamp(static_cast<int>(std::floor(x[j] * id + 8.5f)), 0, 15);
      const int q1 = std::clamp(static_cast<int>(std::floor(x[j + 16] * id + 8.5f)), 0, 15);
      b[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}
void dequant_q4_1(const void* src, float* y, int64_t n) {
  const BlockQ4_1* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / QK; ++i, y += QK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * (b[i].qs[j] & 0xF) + m;
      y[j + 16] = d * (b[i].qs[j] >> 4) + m;
    }
  }
}
void quant_q4_1(const float* x, void* dst, int64_t n) {
  BlockQ4_1* b = static_cast<BlockQ4_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < QK; ++j) { mn = std::min(mn, x[j]); mx = std::max(mx, x[j]); }
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(mn);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::clamp(rne((x[j] - mn) * id), 0, 15);
      const int q1 = std::clamp(rne((x[j + 16] - mn) * id), 0, 15);
      b[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}
inline uint32_t load_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

void dequant_q5_0(const void* src, float* y, int64_t n) {
  const BlockQ5_0* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / QK; ++i, y += QK) {
    const float d = h2f(b[i].d);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int q0 = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int q1 = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * (q0 - 16);
      y[j + 16] = d * (q1 - 16);
    }
  }
}
void quant_q5_0(const float* x, void* dst, int64_t n) {
  BlockQ5_0* b = static_cast<BlockQ5_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    float amax = 0, vmax = 0;
    for (int j = 0; j < QK; ++j)
      if (std::fabs(x[j]) > amax) { amax = std::fabs(x[j]); vmax = x[j]; }
    const float d = vmax / -16.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::clamp(static_cast<int>(std::floor(x[j] * id + 16.5f)), 0, 31);
      const int q1 = std::clamp(static_cast<int>(std::floor(x[j + 16] * id + 16.5f)), 0, 31);
      b[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
    }
    std::memcpy(b[i].qh, &qh, 4);
  }
}
void dequant_q5_1(const void* src, float* y, int64_t n) {
  const BlockQ5_1* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / QK; ++i, y += QK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int q0 = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int q1 = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * q0 + m;
      y[j + 16] = d * q1 + m;
    }
  }
}
void quant_q5_1(const float* x, void* dst, int64_t n) {
  BlockQ5_1* b = static_cast<BlockQ5_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < QK; ++j) { mn = std::min(mn, x[j]); mx = std::max(mx, x[j]); }
    const float d = (mx - mn) / 31.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(mn);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::clamp(rne((x[j] - mn) * id), 0, 31);
      const int q1 = std::clamp(rne((x[j + 16] - mn) * id), 0, 31);
      b[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
    }
    std::memcpy(b[i].qh, &qh, 4);
  }
}
void dequant_q8_0(const void* src, float* y, int64_t n) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / QK; ++i, y += QK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < QK; ++j) y[j] = d * b[i].qs[j];
  }
}
// Q8_0 / Q8_1 / Q8_K quantization: d = amax/127, q = rne(x * (127/amax)).
// The SIMD versions do the same float operations in the same order, so
// they produce identical bytes.
void quant_q8_0(const float* x, void* dst, int64_t n) {
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    float amax = 0;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    b[i].d = f2h(d);
    for (int j = 0; j < QK; ++j) b[i].qs[j] = static_cast<int8_t>(rne(x[j] * id));
  }
}
void dequant_q8_1(const void* src, float* y, int64_t n) {
  const BlockQ8_1* b = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < n / QK; ++i, y += QK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < QK; ++j) y[j] = d * b[i].qs[j];
  }
}
void quant_q8_1(const float* x, void* dst, int64_t n) {
  BlockQ8_1* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, x += QK) {
    float amax = 0;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; ++j) {
      const int q = rne(x[j] * id);
      b[i].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    b[i].d = f2h(d);
    b[i].s = f2h(d * static_cast<float>(sum));
  }
}

float dot_q4_0(int64_t n, const void* w, const void* a) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int acc = 0;
    for (int j = 0; j < 16; ++j)
      acc += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
    s += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(acc);
  }
  return s;
}
float dot_q4_1(int64_t n, const void* w, const void* a) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int acc = 0;
    for (int j = 0; j < 16; ++j)
      acc += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
    s += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(acc) + h2f(x[i].m) * h2f(y[i].s);
  }
  return s;
}
float dot_q5_0(int64_t n, const void* w, const void* a) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    const uint32_t qh = load_u32(x[i].qh);
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = ((x[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
      const int q1 = ((x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
      acc += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
    }
    s += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(acc);
  }
  return s;
}
float dot_q5_1(int64_t n, const void* w, const void* a) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    const uint32_t qh = load_u32(x[i].qh);
    int acc = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = (x[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int q1 = (x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      acc += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
    }
    s += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(acc) + h2f(x[i].m) * h2f(y[i].s);
  }
  return s;
}
float dot_q8_0(int64_t n, const void* w, const void* a) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int acc = 0;
    for (int j = 0; j < QK; ++j) acc += x[i].qs[j] * y[i].qs[j];
    s += h2f(x[i].d) * h2f(y[i].d) * static_cast<float>(acc);
  }
  return s;
}

// ------------------------------------------------------------------- K-quants

void dequant_q8_k(const void* src, float* y, int64_t n) {
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K)
    for (int j = 0; j < QK_K; ++j) y[j] = b[i].d * b[i].qs[j];
}
void quant_q8_k(const float* x, void* dst, int64_t n) {
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    float amax = 0;
    for (int j = 0; j < QK_K; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    b[i].d = amax / 127.0f;
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 16 * g; j < 16 * g + 16; ++j) {
        const int q = rne(x[j] * id);
        b[i].qs[j] = static_cast<int8_t>(q);
        sum += q;
      }
      b[i].bsums[g] = static_cast<int16_t>(sum);
    }
  }
}

// Element e of a Q2_K/Q3_K super-block: 2-bit field (e%128)/32 of qs[32*(e/128) + e%32].
inline int q2_bits(const uint8_t* qs, int e) { return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

void dequant_q2_k(const void* src, float* y, int64_t n) {
  const BlockQ2_K* b = static_cast<const BlockQ2_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const uint8_t sc = b[i].scales[e / 16];
      y[e] = d * (sc & 0xF) * q2_bits(b[i].qs, e) - dmin * (sc >> 4);
    }
  }
}
float dot_q2_k(int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sumq = 0, summ = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) acc += q2_bits(x[i].qs, e) * y[i].qs[e];
      sumq += (x[i].scales[g] & 0xF) * acc;
      summ += (x[i].scales[g] >> 4) * y[i].bsums[g];
    }
    s += y[i].d * (h2f(x[i].d) * static_cast<float>(sumq) - h2f(x[i].dmin) * static_cast<float>(summ));
  }
  return s;
}

void dequant_q3_k(const void* src, float* y, int64_t n) {
  const BlockQ3_K* b = static_cast<const BlockQ3_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
    const float d = h2f(b[i].d);
    int8_t sc[16];
    unpack_scales_q3k(b[i].scales, sc);
    for (int e = 0; e < QK_K; ++e) {
      const int h = (b[i].hmask[e % 32] >> (e / 32)) & 1;
      y[e] = d * sc[e / 16] * ((q2_bits(b[i].qs, e) | (h << 2)) - 4);
    }
  }
}
float dot_q3_k(int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int8_t sc[16];
    unpack_scales_q3k(x[i].scales, sc);
    int sum = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) {
        const int h = (x[i].hmask[e % 32] >> (e / 32)) & 1;
        acc += ((q2_bits(x[i].qs, e) | (h << 2)) - 4) * y[i].qs[e];
      }
      sum += sc[g] * acc;
    }
    s += h2f(x[i].d) * y[i].d * static_cast<float>(sum);
  }
  return s;
}

// Element e of a Q4_K/Q5_K super-block: nibble (e%64)/32 of qs[32*(e/64) + e%32].
// 5th bit of element e of a Q5_K super-block: bit e/32 of qh[e%32].
inline int q5k_hbit(const uint8_t* qh, int e) { return (qh[e % 32] >> (e / 32)) & 1; }

void dequant_q4_k(const void* src, float* y, int64_t n) {
  const BlockQ4_K* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    uint8_t sc[8], mn[8];
    unpack_scales_k4(b[i].scales, sc, mn);
    for (int e = 0; e < QK_K; ++e) y[e] = d * sc[e / 32] * q4k_bits(b[i].qs, e) - dmin * mn[e / 32];
  }
}
float dot_q4_k(int64_t n, const void* w, const void* a) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    uint8_t sc[8], mn[8];
    unpack_scales_k4(x[i].scales, sc, mn);
    int sumq = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int acc = 0;
      for (int e = 32 * j; e < 32 * j + 32; ++e) acc += q4k_bits(x[i].qs, e) * y[i].qs[e];
      sumq += sc[j] * acc;
      summ += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * (h2f(x[i].d) * static_cast<float>(sumq) - h2f(x[i].dmin) * static_cast<float>(summ));
  }
  return s;
}
void dequant_q5_k(const void* src, float* y, int64_t n) {
  const BlockQ5_K* b = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    uint8_t sc[8], mn[8];
    unpack_scales_k4(b[i].scales, sc, mn);
    for (int e = 0; e < QK_K; ++e) {
      const int q = q4k_bits(b[i].qs, e) | (q5k_hbit(b[i].qh, e) << 4);
      y[e] = d * sc[e / 32] * q - dmin * mn[e / 32];
    }
  }
}
float dot_q5_k(int64_t n, const void* w, const void* a) {
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    uint8_t sc[8], mn[8];
    unpack_scales_k4(x[i].scales, sc, mn);
    int sumq = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int acc = 0;
      for (int e = 32 * j; e < 32 * j + 32; ++e)
        acc += (q4k_bits(x[i].qs, e) | (q5k_hbit(x[i].qh, e) << 4)) * y[i].qs[e];
      sumq += sc[j] * acc;
      summ += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * (h2f(x[i].d) * static_cast<float>(sumq) - h2f(x[i].dmin) * static_cast<float>(summ));
  }
  return s;
}

// Element e of a Q6_K super-block (0..63, before the -32 offset). Within each
// 128-element half h: ql holds 64 bytes (low nibbles: elements 0..63, high
// nibbles: 64..127), qh 32 bytes (bit pair (e%128)/32 of qh[e%32]).
void dequant_q6_k(const void* src, float* y, int64_t n) {
  const BlockQ6_K* b = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
    const float d = h2f(b[i].d);
    for (int e = 0; e < QK_K; ++e) y[e] = d * b[i].scales[e / 16] * (q6k_bits(b[i], e) - 32);
  }
}
float dot_q6_k(int64_t n, const void* w, const void* a) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sum = 0;
    for (int g = 0; g < 16; ++g) {
      int acc = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) acc += (q6k_bits(x[i], e) - 32) * y[i].qs[e];
      sum += x[i].scales[g] * acc;
    }
    s += h2f(x[i].d) * y[i].d * static_cast<float>(sum);
  }
  return s;
}

// ------------------------------------------------------- K-quant quantizers
//
// A straightforward reference: each sub-block gets the (scale, min) pair
// that minimises the squared error over a small search of candidate
// scales (least-squares fit for each candidate's rounding), then the
// sub-block scales/mins are themselves quantized relative to the block
// maximum and the elements are re-rounded with the final scales.

// Fits x ~ scale*q - mn with q in [0, nmax], mn >= 0. Returns scale, sets *mn.
float fit_scale_min(const float* x, int n, int nmax, float* mn_out) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) { mn = std::min(mn, x[i]); mx = std::max(mx, x[i]); }
  if (mn > 0) mn = 0;
  if (mx <= mn) { *mn_out = -mn; return 0.0f; }
  float best_scale = (mx - mn) / nmax, best_min = mn, best_err = 0;
  for (int i = 0; i < n; ++i) {
    const int q = std::clamp(rne((x[i] - mn) / best_scale), 0, nmax);
    const float e = best_scale * q + mn - x[i];
    best_err += e * e;
  }
  for (int step = -10; step <= 10; ++step) {
    const float iscale = (nmax + 0.1f * step) / (mx - mn);
    float sl = 0, sl2 = 0, sx = 0, sxl = 0;
    int q[QK_K];
    for (int i = 0; i < n; ++i) {
      q[i] = std::clamp(rne((x[i] - mn) * iscale), 0, nmax);
      sl += q[i]; sl2 += static_cast<float>(q[i]) * q[i]; sx += x[i]; sxl += x[i] * q[i];
    }
    const float det = n * sl2 - sl * sl;
    if (det <= 0) continue;
    float scale = (n * sxl - sx * sl) / det;
    float off = (sl2 * sx - sl * sxl) / det;
    if (off > 0) { off = 0; scale = sl2 > 0 ? sxl / sl2 : 0; }
    float err = 0;
    for (int i = 0; i < n; ++i) { const float e = scale * q[i] + off - x[i]; err += e * e; }
    if (err < best_err) { best_err = err; best_scale = scale; best_min = off; }
  }
  *mn_out = -best_min;
  return best_scale;
}

// Fits x ~ scale*q with q in [-nmax, nmax-1]; returns scale (may be negative).
float fit_scale_sym(const float* x, int n, int nmax) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); vmax = x[i]; }
  if (amax == 0) return 0.0f;
  float best_scale = vmax / -nmax, best_err = -1;
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(nmax + 0.1f * step) / vmax;
    float sxl = 0, sl2 = 0;
    int q[QK_K];
    for (int i = 0; i < n; ++i) {
      q[i] = std::clamp(rne(x[i] * iscale), -nmax, nmax - 1);
      sxl += x[i] * q[i]; sl2 += static_cast<float>(q[i]) * q[i];
    }
    if (sl2 <= 0) continue;
    const float scale = sxl / sl2;
    float err = 0;
    for (int i = 0; i < n; ++i) { const float e = scale * q[i] - x[i]; err += e * e; }
    if (best_err < 0 || err < best_err) { best_err = err; best_scale = scale; }
  }
  return best_scale;
}

void pack_scales_k4(const uint8_t* sc, const uint8_t* mn, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): sets d/dmin/scales and L.
void quant_k4_common(const float* x, int nmax, uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales,
                     uint8_t* L) {
  float sc_f[8], mn_f[8], max_sc = 0, max_mn = 0;
  for (int j = 0; j < 8; ++j) {
    sc_f[j] = fit_scale_min(x + 32 * j, 32, nmax, &mn_f[j]);
    max_sc = std::max(max_sc, sc_f[j]);
    max_mn = std::max(max_mn, mn_f[j]);
  }
  uint8_t sc[8], mn[8];
  const float isc = max_sc > 0 ? 63.0f / max_sc : 0.0f, imn = max_mn > 0 ? 63.0f / max_mn : 0.0f;
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(std::clamp(rne(sc_f[j] * isc), 0, 63));
    mn[j] = static_cast<uint8_t>(std::clamp(rne(mn_f[j] * imn), 0, 63));
  }
  *d_out = f2h(max_sc / 63.0f);
  *dmin_out = f2h(max_mn / 63.0f);
  pack_scales_k4(sc, mn, scales);
  const float d = h2f(*d_out), dmin = h2f(*dmin_out);
  for (int j = 0; j < 8; ++j) {
    const float ds = d * sc[j], dm = dmin * mn[j];
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] = ds != 0 ? static_cast<uint8_t>(std::clamp(rne((x[32 * j + i] + dm) / ds), 0, nmax)) : 0;
  }
}

void quant_q4_k(const float* x, void* dst, int64_t n) {
  BlockQ4_K* b = static_cast<BlockQ4_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    uint8_t L[QK_K];
    quant_k4_common(x, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}
void quant_q5_k(const float* x, void* dst, int64_t n) {
  BlockQ5_K* b = static_cast<BlockQ5_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    uint8_t L[QK_K];
    quant_k4_common(x, 31, &b[i].d, &b[i].dmin, b[i].scales, L);
    std::memset(b[i].qh, 0, 32);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * c + l] = static_cast<uint8_t>((L[64 * c + l] & 0xF) | ((L[64 * c + 32 + l] & 0xF) << 4));
    for (int e = 0; e < QK_K; ++e) b[i].qh[e % 32] |= static_cast<uint8_t>((L[e] >> 4) << (e / 32));
  }
}
void quant_q6_k(const float* x, void* dst, int64_t n) {
  BlockQ6_K* b = static_cast<BlockQ6_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    float sf[16], amax = 0, vmax = 0;
    for (int g = 0; g < 16; ++g) {
      sf[g] = fit_scale_sym(x + 16 * g, 16, 32);
      if (std::fabs(sf[g]) > amax) { amax = std::fabs(sf[g]); vmax = sf[g]; }
    }
    std::memset(&b[i], 0, sizeof(BlockQ6_K));
    if (amax == 0) continue;
    const float iscale = -128.0f / vmax;
    b[i].d = f2h(1.0f / iscale);
    for (int g = 0; g < 16; ++g) b[i].scales[g] = static_cast<int8_t>(std::clamp(rne(sf[g] * iscale), -128, 127));
    const float d = h2f(b[i].d);
    uint8_t L[QK_K];
    for (int e = 0; e < QK_K; ++e) {
      const float ds = d * b[i].scales[e / 16];
      L[e] = static_cast<uint8_t>((ds != 0 ? std::clamp(rne(x[e] / ds), -32, 31) : 0) + 32);
    }
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* q = L + 128 * h + l;
        b[i].ql[64 * h + l] = static_cast<uint8_t>((q[0] & 0xF) | ((q[64] & 0xF) << 4));
        b[i].ql[64 * h + 32 + l] = static_cast<uint8_t>((q[32] & 0xF) | ((q[96] & 0xF) << 4));
        b[i].qh[32 * h + l] =
            static_cast<uint8_t>((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
      }
  }
}
void quant_q2_k(const float* x, void* dst, int64_t n) {
  BlockQ2_K* b = static_cast<BlockQ2_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    float sc_f[16], mn_f[16], max_sc = 0, max_mn = 0;
    for (int g = 0; g < 16; ++g) {
      sc_f[g] = fit_scale_min(x + 16 * g, 16, 3, &mn_f[g]);
      max_sc = std::max(max_sc, sc_f[g]);
      max_mn = std::max(max_mn, mn_f[g]);
    }
    const float isc = max_sc > 0 ? 15.0f / max_sc : 0.0f, imn = max_mn > 0 ? 15.0f / max_mn : 0.0f;
    for (int g = 0; g < 16; ++g)
      b[i].scales[g] = static_cast<uint8_t>(std::clamp(rne(sc_f[g] * isc), 0, 15) |
                                            (std::clamp(rne(mn_f[g] * imn), 0, 15) << 4));
    b[i].d = f2h(max_sc / 15.0f);
    b[i].dmin = f2h(max_mn / 15.0f);
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    uint8_t L[QK_K];
    for (int e = 0; e < QK_K; ++e) {
      const float ds = d * (b[i].scales[e / 16] & 0xF), dm = dmin * (b[i].scales[e / 16] >> 4);
      L[e] = ds != 0 ? static_cast<uint8_t>(std::clamp(rne((x[e] + dm) / ds), 0, 3)) : 0;
    }
    std::memset(b[i].qs, 0, 64);
    for (int e = 0; e < QK_K; ++e)
      b[i].qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(L[e] << (2 * ((e % 128) / 32)));
  }
}
void quant_q3_k(const float* x, void* dst, int64_t n) {
  BlockQ3_K* b = static_cast<BlockQ3_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    float sf[16], amax = 0, vmax = 0;
    for (int g = 0; g < 16; ++g) {
      sf[g] = fit_scale_sym(x + 16 * g, 16, 4);
      if (std::fabs(sf[g]) > amax) { amax = std::fabs(sf[g]); vmax = sf[g]; }
    }
    std::memset(&b[i], 0, sizeof(BlockQ3_K));
    if (amax == 0) continue;
    const float iscale = -32.0f / vmax;
    int8_t sc[16];
    for (int g = 0; g < 16; ++g) {
      const int l = std::clamp(rne(sf[g] * iscale), -32, 31) + 32;
      if (g < 8) b[i].scales[g] |= static_cast<uint8_t>(l & 0xF);
      else b[i].scales[g - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
      b[i].scales[8 + g % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (g / 4)));
    }
    b[i].d = f2h(1.0f / iscale);
    unpack_scales_q3k(b[i].scales, sc);
    const float d = h2f(b[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const float ds = d * sc[e / 16];
      const int q = (ds != 0 ? std::clamp(rne(x[e] / ds), -4, 3) : 0) + 4;
      b[i].qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>((q & 3) << (2 * ((e % 128) / 32)));
      b[i].hmask[e % 32] |= static_cast<uint8_t>((q >> 2) << (e / 32));
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

void fill_scalar(Kernels& k) {
  k.swiglu = swiglu;
  auto set = [&](DType t, DequantizeFn dq, QuantizeFn q, VecDotFn vd) {
    const uint32_t i = static_cast<uint32_t>(t);
    k.dequantize[i] = dq;
    k.quantize[i] = q;
    k.vec_dot[i] = vd;
  };
#define LMHOST_TILE(T, F) k.vec_dot_tile[static_cast<uint32_t>(DType::T)] = tile_from_dot<F>
  set(DType::F32, dequant_f32, quant_f32, dot_f32);
  set(DType::F16, dequant_f16, quant_f16, dot_f16);
  set(DType::BF16, dequant_bf16, quant_bf16, dot_bf16);
  set(DType::Q4_0, dequant_q4_0, quant_q4_0, dot_q4_0);
  set(DType::Q4_1, dequant_q4_1, quant_q4_1, dot_q4_1);
  set(DType::Q5_0, dequant_q5_0, quant_q5_0, dot_q5_0);
  set(DType::Q5_1, dequant_q5_1, quant_q5_1, dot_q5_1);
  set(DType::Q8_0, dequant_q8_0, quant_q8_0, dot_q8_0);
  set(DType::Q8_1, dequant_q8_1, quant_q8_1, nullptr);
  set(DType::Q2_K, dequant_q2_k, quant_q2_k, dot_q2_k);
  set(DType::Q3_K, dequant_q3_k, quant_q3_k, dot_q3_k);
  set(DType::Q4_K, dequant_q4_k, quant_q4_k, dot_q4_k);
  set(DType::Q5_K, dequant_q5_k, quant_q5_k, dot_q5_k);
  set(DType::Q6_K, dequant_q6_k, quant_q6_k, dot_q6_k);
  set(DType::Q8_K, dequant_q8_k, quant_q8_k, nullptr);
  LMHOST_TILE(F32, dot_f32); LMHOST_TILE(F16, dot_f16); LMHOST_TILE(BF16, dot_bf16);
  LMHOST_TILE(Q4_0, dot_q4_0); LMHOST_TILE(Q4_1, dot_q4_1); LMHOST_TILE(Q5_0, dot_q5_0);
  LMHOST_TILE(Q5_1, dot_q5_1); LMHOST_TILE(Q8_0, dot_q8_0); LMHOST_TILE(Q2_K, dot_q2_k);
  LMHOST_TILE(Q3_K, dot_q3_k); LMHOST_TILE(Q4_K, dot_q4_k); LMHOST_TILE(Q5_K, dot_q5_k);
  LMHOST_TILE(Q6_K, dot_q6_k);
#undef LMHOST_TILE
}

}  // namespace lmhost::detail
