// Prompt-processing matmul kernels (Kernels::gemm: token groups of 16 against
// panels of 16 weight rows) against the scalar vec_dot oracle: odd row
// counts (partial panels), token counts that leave partial groups, group
// sub-ranges, several block counts, Q4_0/Q5_0/Q8_0 and Q4_K/Q6_K, random block bytes (extreme codes) as well
// as quantized data, and an output stride wider than the rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/types.h"
#include "util/fp16.h"
#include "unit/test_random.h"

using namespace lmhost;

namespace {

std::vector<float> normal(int64_t n, std::mt19937& rng) { return lmhost::testing::normal(n, rng, 1.0f, 61, 5.0f); }

// Weight rows: quantized normal data or random bytes with a sane fp16 scale in every block.
std::vector<uint8_t> weights(DType wt, int64_t K, int64_t rows, bool random_bytes, std::mt19937& rng) {
  const Kernels& ref = kernels_for(Isa::Scalar);
  const size_t wrow = row_bytes(wt, K);
  std::vector<uint8_t> w(wrow * rows);
  for (int64_t r = 0; r < rows; ++r) {
    if (random_bytes) {
      for (size_t i = 0; i < wrow; ++i) w[r * wrow + i] = static_cast<uint8_t>(rng());
      const size_t bs = dtype_info(wt).type_size;
      // Sane fp16 scales where the block keeps them: first for the legacy
      // types and Q4_K (d, dmin), last for Q6_K.
      std::vector<size_t> at = {0};
      if (wt == DType::Q4_K) at = {0, 2};
      if (wt == DType::Q6_K) at = {bs - 2};
      for (size_t o = 0; o < wrow; o += bs)
        for (size_t f : at) {
          const uint16_t h = fp32_to_fp16(0.02f + 0.001f * static_cast<float>(rng() % 50));
          std::memcpy(&w[r * wrow + o + f], &h, 2);
        }
    } else {
      const auto x = normal(K, rng);
      ref.quantize[static_cast<uint32_t>(wt)](x.data(), w.data() + r * wrow, K);
    }
  }
  return w;
}

void check(DType wt, int64_t K, int64_t rows, int64_t T, bool random_bytes, uint32_t seed) {
  const Kernels& fast = kernels_for(Isa::AVX512);
  const Kernels& ref = kernels_for(Isa::Scalar);
  const GemmFn gemm = fast.gemm[static_cast<uint32_t>(wt)];
  ASSERT_NE(gemm, nullptr) << dtype_name(wt);
  std::mt19937 rng(seed);
  const size_t wrow = row_bytes(wt, K);
  const auto w = weights(wt, K, rows, random_bytes, rng);
  const DType at = vec_dot_type(wt);
  const size_t qrow = row_bytes(at, K);
  std::vector<uint8_t> aq(qrow * T);
  for (int64_t t = 0; t < T; ++t) {
    const auto a = normal(K, rng);
    ref.quantize[static_cast<uint32_t>(at)](a.data(), aq.data() + t * qrow, K);
  }
  const int64_t G = gemm_groups(T);
  std::vector<uint8_t> q(G * K * 16);
  std::vector<float> d(G * K / 2);
  std::vector<int32_t> sums(G * K / 4);
  // Prepared in two calls (the matmul splits groups across threads).
  prepare_gemm_act(at, aq.data(), qrow, K, T, 0, G / 2, q.data(), d.data(), sums.data());
  prepare_gemm_act(at, aq.data(), qrow, K, T, G / 2, G, q.data(), d.data(), sums.data());
  const GemmAct act{q.data(), d.data(), sums.data(), K, T};
  const size_t os = rows + 3;
  std::vector<float> out(os * T + 1, -12345.0f);
  // Groups in two ranges, like two tasks.
  gemm(w.data(), wrow, rows, act, 0, G / 2, out.data(), os);
  gemm(w.data(), wrow, rows, act, G / 2, G, out.data(), os);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      const float want = ref.vec_dot[static_cast<uint32_t>(wt)](K, w.data() + r * wrow, aq.data() + t * qrow);
      // Same integer products; only the float summation order differs.
      ASSERT_NEAR(out[t * os + r], want, 1e-4f * (1.0f + std::fabs(want)) + 1e-5f * static_cast<float>(K))
          << dtype_name(wt) << " K=" << K << " rows=" << rows << " T=" << T << " row " << r << " token " << t;
    }
    for (size_t r = rows; r < os; ++r) ASSERT_EQ(out[t * os + r], -12345.0f) << "wrote past the last row";
  }
  EXPECT_EQ(out[os * T], -12345.0f) << "wrote past the last token";
}

}  // namespace

TEST(Gemm, MatchesScalarVecDot) {
  if (detect_isa() < Isa::AVX512) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  uint32_t seed = 1;
  for (DType wt : {DType::Q4_0, DType::Q5_0, DType::Q8_0}) {
    for (int64_t nb : {1, 2, 3, 7, 28})
      for (int64_t rows : {1, 15, 16, 17, 40})
        for (int64_t T : {2, 15, 16, 17, 33}) {
          const bool rb = seed % 2 == 0;
          check(wt, nb * 32, rows, T, rb, seed++);
        }
    check(wt, 152 * 32, 20, 40, false, seed++);
    check(wt, 152 * 32, 20, 40, true, seed++);
  }
  // K-quants: super-blocks of 256, random bytes included (6-bit scales and
  // mins at their extremes, all Q6_K codes).
  for (DType wt : {DType::Q4_K, DType::Q6_K}) {
    for (int64_t nsb : {1, 2, 3, 8})
      for (int64_t rows : {1, 8, 9, 16, 17, 40})
        for (int64_t T : {2, 16, 17, 33}) {
          const bool rb = seed % 2 == 0;
          check(wt, nsb * 256, rows, T, rb, seed++);
        }
  }
}

TEST(Gemm, OnlyForQ8_0AndQ8_KActivationTypes) {
  for (Isa isa : {Isa::Scalar, Isa::AVX2, Isa::AVX512}) {
    const Kernels& k = kernels_for(isa);
    for (uint32_t t = 0; t < kDTypeCount; ++t) {
      if (!k.gemm[t]) continue;
      const DType at = vec_dot_type(static_cast<DType>(t));
      EXPECT_TRUE(at == DType::Q8_0 || at == DType::Q8_K) << dtype_name(static_cast<DType>(t));
      EXPECT_NE(k.vec_dot[t], nullptr);
    }
  }
}
