// Encoder kernels (tensor/encoder_kernels.h): the AVX-512 packed-panel GEMM
// (F16 and F32 weights), attention, GELU and residual + LayerNorm against
// the scalar references, over shapes with every tile remainder; the
// packing against the row-major matrix it came from; and the decoder's
// SwiGLU, which shares their e^x.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "tensor/encoder_kernels.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"
#include "unit/test_random.h"

using namespace lmhost;

namespace {

using lmhost::testing::normal;

bool have_avx512() { return detect_isa() >= Isa::AVX512; }

// Relative error bound for float dot products of length K computed in two orders.
double dot_bound(int64_t K, double abs_sum) { return 4e-7 * std::sqrt(static_cast<double>(K)) * abs_sum + 1e-6; }

void check_gemm(DType t, int64_t N, int64_t K, int64_t T, bool with_bias, uint32_t seed) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
               " T=" + std::to_string(T) + (with_bias ? " bias" : ""));
  std::mt19937 rng(seed);
  const std::vector<float> wf = normal(N * K, rng, 0.05f), x = normal(T * K, rng), bias = normal(N, rng);
  std::vector<uint16_t> wh(N * K);
  std::vector<float> wr(N * K);  // the weights as the kernel sees them
  for (int64_t i = 0; i < N * K; ++i) {
    wh[i] = fp32_to_fp16(wf[i]);
    wr[i] = t == DType::F16 ? fp16_to_fp32(wh[i]) : wf[i];
  }
  const void* src = t == DType::F16 ? static_cast<const void*>(wh.data()) : static_cast<const void*>(wf.data());
  const size_t es = t == DType::F16 ? 2 : 4;
  std::vector<uint8_t> packed(packed_bytes(t, N, K));
  pack_panels(t, src, K * es, N, K, packed.data());

  // Scalar GEMM over the panels equals a plain row-major product (packing is lossless).
  const int64_t ldy = N + 3;  // a padded output row: columns past N must stay untouched
  std::vector<float> ref(T * ldy, -7.0f), fast(T * ldy, -7.0f);
  gemm_packed_scalar(t, packed.data(), K, N, x.data(), K, T, ref.data(), ldy, with_bias ? bias.data() : nullptr);
  for (int64_t tt = 0; tt < T; ++tt)
    for (int64_t n = 0; n < N; ++n) {
      double d = with_bias ? bias[n] : 0.0, mag = std::fabs(d);
      for (int64_t k = 0; k < K; ++k) {
        d += static_cast<double>(x[tt * K + k]) * wr[n * K + k];
        mag += std::fabs(static_cast<double>(x[tt * K + k]) * wr[n * K + k]);
      }
      ASSERT_NEAR(ref[tt * ldy + n], d, dot_bound(K, mag)) << "scalar t=" << tt << " n=" << n;
    }
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const EncoderKernels& ek = encoder_kernels_for(Isa::AVX512);
  const GemmPackedFn g = t == DType::F16 ? ek.gemm_f16 : ek.gemm_f32;
  ASSERT_NE(g, nullptr);
  g(packed.data(), K, N, x.data(), K, T, fast.data(), ldy, with_bias ? bias.data() : nullptr);
  for (int64_t tt = 0; tt < T; ++tt) {
    for (int64_t n = 0; n < N; ++n) {
      double mag = with_bias ? std::fabs(bias[n]) : 0.0;
      for (int64_t k = 0; k < K; ++k) mag += std::fabs(static_cast<double>(x[tt * K + k]) * wr[n * K + k]);
      ASSERT_NEAR(fast[tt * ldy + n], ref[tt * ldy + n], 2 * dot_bound(K, mag)) << "t=" << tt << " n=" << n;
    }
    for (int64_t n = N; n < ldy; ++n) ASSERT_EQ(fast[tt * ldy + n], -7.0f) << "wrote past column " << N;
  }
}

TEST(TensorF16, PackedGemmMatchesScalarEveryRemainder) {
  uint32_t seed = 1;
  for (DType t : {DType::F16, DType::F32})
    for (int64_t N : {1, 15, 16, 17, 48, 50, 96, 113})
      for (int64_t T : {1, 3, 8, 9, 17})
        check_gemm(t, N, N == 113 ? 384 : 37, T, (N + T) % 2 == 0, seed++);
}

TEST(TensorF16, PackedGemmEncoderShapes) {
  check_gemm(DType::F16, 384, 384, 24, true, 7);
  check_gemm(DType::F16, 1536, 384, 11, true, 8);
  check_gemm(DType::F16, 384, 1536, 13, false, 9);
}

TEST(TensorF16, PackRejectsQuantizedTypes) {
  std::vector<uint8_t> w(64);
  EXPECT_THROW(packed_bytes(DType::Q8_0, 1, 32), Error);
  EXPECT_THROW(pack_panels(DType::Q4_0, w.data(), 18, 1, 32, w.data()), Error);
}

TEST(TensorF16, AttentionMatchesScalar) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const EncoderKernels& ref = encoder_kernels_for(Isa::Scalar);
  const EncoderKernels& fast = encoder_kernels_for(Isa::AVX512);
  std::mt19937 rng(11);
  for (int hd : {16, 32, 64, 80, 24})
    for (int L : {1, 2, 5, 16, 17, 128, 131}) {
      SCOPED_TRACE("hd=" + std::to_string(hd) + " L=" + std::to_string(L));
      const int64_t ld = 3 * hd + 5;  // q, k, v interleaved as in a fused QKV row
      std::vector<float> qkv = normal(L * ld, rng, 1.5f);
      std::vector<float> o1(L * hd), o2(L * hd), scratch(attn_scratch_floats(L, hd));
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      ref.attn(qkv.data(), qkv.data() + hd, qkv.data() + 2 * hd, ld, o1.data(), hd, L, hd, scale, scratch.data());
      fast.attn(qkv.data(), qkv.data() + hd, qkv.data() + 2 * hd, ld, o2.data(), hd, L, hd, scale, scratch.data());
      for (int64_t i = 0; i < L * hd; ++i) ASSERT_NEAR(o2[i], o1[i], 2e-5 * (1 + std::fabs(o1[i]))) << i;
    }
}

TEST(TensorF16, AttentionOfOnePositionIsItsValue) {
  for (Isa isa : {Isa::Scalar, Isa::AVX512}) {
    if (isa == Isa::AVX512 && !have_avx512()) continue;
    std::vector<float> q(32, 0.3f), k(32, -2.0f), v(32), o(32), scratch(attn_scratch_floats(1, 32));
    for (int i = 0; i < 32; ++i) v[i] = static_cast<float>(i) - 3.5f;
    encoder_kernels_for(isa).attn(q.data(), k.data(), v.data(), 32, o.data(), 32, 1, 32, 0.17f, scratch.data());
    for (int i = 0; i < 32; ++i) EXPECT_NEAR(o[i], v[i], 1e-6) << isa_name(isa);
  }
}

TEST(TensorF16, GeluAndAddNormMatchScalar) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const EncoderKernels& ref = encoder_kernels_for(Isa::Scalar);
  const EncoderKernels& fast = encoder_kernels_for(Isa::AVX512);
  std::mt19937 rng(5);
  for (int64_t n : {1, 15, 16, 33, 384, 1536}) {
    std::vector<float> a = normal(n, rng, 3.0f);
    a[0] = n > 1 ? 60.0f : -60.0f;  // saturated tails
    std::vector<float> b = a;
    ref.gelu(a.data(), n);
    fast.gelu(b.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(b[i], a[i], 2e-6 * (1 + std::fabs(a[i]))) << "gelu n=" << n << " i=" << i;

    const std::vector<float> x = normal(n, rng), o = normal(n, rng), bias = normal(n, rng), w = normal(n, rng),
                             bb = normal(n, rng);
    std::vector<float> x1 = x, x2 = x;
    ref.add_norm(x1.data(), o.data(), bias.data(), w.data(), bb.data(), n, 1e-12f);
    fast.add_norm(x2.data(), o.data(), bias.data(), w.data(), bb.data(), n, 1e-12f);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(x2[i], x1[i], 1e-4 * (1 + std::fabs(x1[i]))) << "norm n=" << n << " i=" << i;
    x1 = x;
    x2 = x;
    ref.add_norm(x1.data(), o.data(), nullptr, nullptr, nullptr, n, 1e-5f);
    fast.add_norm(x2.data(), o.data(), nullptr, nullptr, nullptr, n, 1e-5f);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(x2[i], x1[i], 1e-4 * (1 + std::fabs(x1[i]))) << "norm (no w/b) n=" << n;
  }
}

}  // namespace

// The decoder's SwiGLU (Kernels::swiglu) shares the encoder's e^x.
TEST(TensorF16, SwigluMatchesScalar) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const Kernels& ref = kernels_for(Isa::Scalar);
  const Kernels& fast = kernels_for(Isa::AVX512);
  std::mt19937 rng(9);
  for (int64_t n : {1, 7, 16, 31, 896, 4864}) {
    std::vector<float> g = normal(n, rng, 4.0f), u = normal(n, rng, 2.0f);
    g[0] = n > 1 ? 120.0f : -120.0f;  // e^-g past the clamp: silu(g) = g, or 0
    if (n > 2) g[1] = -95.0f, g[2] = 0.0f;
    std::vector<float> a(n), b = g;
    ref.swiglu(g.data(), u.data(), a.data(), n);
    fast.swiglu(b.data(), u.data(), b.data(), n);  // in place, as the forward pass runs it
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::isfinite(b[i])) << "n=" << n << " i=" << i;
      ASSERT_NEAR(b[i], a[i], 4e-7 * (1 + std::fabs(a[i]))) << "n=" << n << " i=" << i << " g=" << g[i];
    }
  }
  float g = 120.0f, u = 0.5f, out = 0.0f;
  fast.swiglu(&g, &u, &out, 1);
  EXPECT_FLOAT_EQ(out, 60.0f);
}
