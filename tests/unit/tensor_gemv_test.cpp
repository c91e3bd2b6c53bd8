// Decode gemv kernels (one activation row against many weight rows) against
// the scalar vec_dot oracle: Q4_0 and Q5_0 (Kernels::gemv) and Q8_0
// (gemv.h); every block-count remainder (full groups of 8 blocks, a half
// group of 4..7, 1..3 tail blocks), odd row counts, random block bytes
// (every code, including -128 for Q8_0 and all qh bits for Q5_0) as well as
// quantized normal data; and no write past the last row. Also the AVX-512
// F16-cache attention kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/gemv.h"
#include "tensor/kernels.h"
#include "tensor/types.h"
#include "util/fp16.h"
#include "unit/test_random.h"

using namespace lmhost;

namespace {

std::vector<float> normal(int64_t n, std::mt19937& rng) { return lmhost::testing::normal(n, rng, 1.0f, 61, 5.0f); }

// Weight rows are packed back to back (stride = row bytes) in a buffer that
// ends exactly at the last row, so a load past a row's end would read the
// next row (caught by the comparison) and past the matrix would read outside
// the vector (caught by ASan builds).
void check(DType wt, int64_t K, int64_t rows, bool random_bytes, uint32_t seed) {
  const Kernels& fast = kernels_for(Isa::AVX512);
  const Kernels& ref = kernels_for(Isa::Scalar);
  const GemvFn gemv = fast.gemv[static_cast<uint32_t>(wt)];
  const GemvQ8Fn gemv_q8 = wt == DType::Q8_0 ? gemv_q8_0_kernel(Isa::AVX512) : nullptr;
  ASSERT_TRUE(gemv || gemv_q8) << dtype_name(wt);
  std::mt19937 rng(seed);
  const size_t wrow = row_bytes(wt, K);
  std::vector<uint8_t> w(wrow * rows);
  for (int64_t r = 0; r < rows; ++r) {
    if (random_bytes) {
      for (size_t i = 0; i < wrow; ++i) w[r * wrow + i] = static_cast<uint8_t>(rng());
      const size_t bs = dtype_info(wt).type_size;
      for (size_t o = 0; o < wrow; o += bs) {
        const uint16_t h = fp32_to_fp16((rng() % 2 ? -1.0f : 1.0f) * (0.01f + 0.001f * static_cast<float>(rng() % 50)));
        std::memcpy(&w[r * wrow + o], &h, 2);
      }
    } else {
      const auto x = normal(K, rng);
      ref.quantize[static_cast<uint32_t>(wt)](x.data(), w.data() + r * wrow, K);
    }
  }
  const auto a = normal(K, rng);
  std::vector<uint8_t> aq(row_bytes(DType::Q8_0, K));
  ref.quantize[static_cast<uint32_t>(DType::Q8_0)](a.data(), aq.data(), K);
  std::vector<int8_t> qs(K + 256);
  std::vector<float> d(gemv_act_lanes(K) + 1);
  std::vector<int32_t> corr(gemv_act_lanes(K) + 1);
  prepare_gemv_act(aq.data(), K, qs.data(), d.data(), corr.data());
  const GemvAct act{aq.data(), qs.data(), d.data(), corr.data()};
  std::vector<int8_t> qs8(K);
  std::vector<float> d8(gemv_q8_lanes(K) + 1);
  std::vector<int32_t> corr8(gemv_q8_lanes(K) + 1);
  prepare_gemv_act_q8(aq.data(), K, qs8.data(), d8.data(), corr8.data());
  const GemvActQ8 act8{aq.data(), qs8.data(), d8.data(), corr8.data()};
  std::vector<float> out(rows + 1, -12345.0f);
  if (gemv_q8) gemv_q8(K, w.data(), wrow, rows, act8, out.data());
  else gemv(K, w.data(), wrow, rows, act, out.data());
  EXPECT_EQ(out[rows], -12345.0f) << "wrote past the last row";
  const float per_element = wt == DType::Q4_0 ? 1e-5f : 2e-5f;  // Q8_0 / Q5_0 quants (and sums) are larger
  for (int64_t r = 0; r < rows; ++r) {
    const float want = ref.vec_dot[static_cast<uint32_t>(wt)](K, w.data() + r * wrow, aq.data());
    // Same integer products; only the float summation order differs.
    EXPECT_NEAR(out[r], want, 1e-4f * (1.0f + std::fabs(want)) + per_element * static_cast<float>(K))
        << dtype_name(wt) << " K=" << K << " row " << r << (random_bytes ? " (random bytes)" : "");
  }
}

bool have_vbmi() { return detect_isa() >= Isa::AVX512 && __builtin_cpu_supports("avx512vbmi"); }

}  // namespace

TEST(Gemv, MatchesScalarVecDot) {
  if (!have_vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI + VBMI";
  uint32_t seed = 1;
  for (DType wt : {DType::Q4_0})
    for (int64_t nb : {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 15, 16, 20, 28, 29, 31, 152, 156})
      for (bool rb : {false, true}) check(wt, nb * 32, 5, rb, seed++);
}

TEST(Gemv, Q8_0AndQ5_0MatchScalarVecDot) {
  if (!have_vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI + VBMI";
  uint32_t seed = 100;
  for (DType wt : {DType::Q8_0, DType::Q5_0})
    for (int64_t nb : {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 19, 20, 27, 28, 31, 64, 152})
      for (bool rb : {false, true})
        for (int64_t rows : {1, 3, 7}) check(wt, nb * 32, rows, rb, seed++);
}

TEST(Gemv, ModelShapes) {
  if (!have_vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI + VBMI";
  // qwen2.5-0.5b (896, 4864) and llama-3.2-1b (2048, 8192) row lengths
  uint32_t seed = 900;
  for (DType wt : {DType::Q8_0, DType::Q5_0})
    for (int64_t K : {896, 4864, 2048, 8192}) check(wt, K, 33, false, seed++);
}

TEST(Gemv, OnlyForQ8_0ActivationTypes) {
  for (Isa isa : {Isa::Scalar, Isa::AVX2, Isa::AVX512}) {
    const Kernels& k = kernels_for(isa);
    for (uint32_t t = 0; t < kDTypeCount; ++t) {
      if (!k.gemv[t]) continue;
      EXPECT_EQ(vec_dot_type(static_cast<DType>(t)), DType::Q8_0) << dtype_name(static_cast<DType>(t));
    }
  }
}

// The AVX-512 F16-cache attention kernel against a plain double-precision
// loop with the same roundings (query and probabilities to F16).
TEST(AttnF16, MatchesPlainLoop) {
  const AttnF16Fn attn = kernels_for(Isa::AVX512).attn_f16;
  if (detect_isa() < Isa::AVX512 || !attn) GTEST_SKIP() << "no AVX-512 attention kernel on this CPU";
  std::mt19937 rng(7);
  for (int hd : {16, 48, 64, 128}) {
    for (int n_pos : {1, 2, 17, 300}) {
      const int64_t stride = 2 * hd + 16;  // rows of several heads, as in the cache
      std::vector<uint16_t> K(n_pos * stride), V(n_pos * stride);
      const auto kf = normal(n_pos * stride, rng), vf = normal(n_pos * stride, rng), q = normal(hd, rng);
      for (size_t i = 0; i < K.size(); ++i) K[i] = fp32_to_fp16(kf[i]), V[i] = fp32_to_fp16(vf[i]);
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      std::vector<float> scores(n_pos), out(hd + 1, -7.0f);
      attn(q.data(), K.data() + hd, V.data() + hd, stride, stride, n_pos, hd, hd, scale, scores.data(), out.data());
      EXPECT_EQ(out[hd], -7.0f);
      std::vector<double> s(n_pos);
      double mx = -1e30;
      for (int j = 0; j < n_pos; ++j) {
        double acc = 0;
        for (int d = 0; d < hd; ++d)
          acc += static_cast<double>(fp16_to_fp32(fp32_to_fp16(q[d]))) * fp16_to_fp32(K[j * stride + hd + d]);
        s[j] = acc * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (int d = 0; d < hd; ++d) {
        double o = 0;
        for (int j = 0; j < n_pos; ++j)
          o += fp16_to_fp32(fp32_to_fp16(static_cast<float>(s[j] / sum))) * fp16_to_fp32(V[j * stride + hd + d]);
        EXPECT_NEAR(out[d], o, 2e-3) << "hd " << hd << " n_pos " << n_pos << " d " << d;
      }
    }
  }
}
