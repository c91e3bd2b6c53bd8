// Decode gemv kernels beyond Q4_0 (src/tensor/gemv_avx512.cpp: Q8_0 via gemv.h, Q5_0 via Kernels::gemv)
// against the scalar vec_dot oracle: every block-count remainder (full groups
// of 8 blocks, a half group of 4..7, 1..3 tail blocks), odd row counts, random
// block bytes (every code, including -128 for Q8_0 and all qh bits for Q5_0)
// as well as quantized normal data; and no write past the last row.
#include <gtest/gtest.h>

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

std::vector<float> normal(int64_t n, std::mt19937& rng) { return lmhost::testing::normal(n, rng, 1.0f, 53, 6.0f); }

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
  for (int64_t r = 0; r < rows; ++r) {
    const float want = ref.vec_dot[static_cast<uint32_t>(wt)](K, w.data() + r * wrow, aq.data());
    // Same integer products; only the float summation order differs.
    EXPECT_NEAR(out[r], want, 1e-4f * (1.0f + std::fabs(want)) + 2e-5f * static_cast<float>(K))
        << dtype_name(wt) << " K=" << K << " row " << r << (random_bytes ? " (random bytes)" : "");
  }
}

bool have_vbmi() { return detect_isa() >= Isa::AVX512 && __builtin_cpu_supports("avx512vbmi"); }

}  // namespace

TEST(Gemv2, Q8_0AndQ5_0MatchScalarVecDot) {
  if (!have_vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI + VBMI";
  uint32_t seed = 100;
  for (DType wt : {DType::Q8_0, DType::Q5_0})
    for (int64_t nb : {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 19, 20, 27, 28, 31, 64, 152})
      for (bool rb : {false, true})
        for (int64_t rows : {1, 3, 7}) check(wt, nb * 32, rows, rb, seed++);
}

TEST(Gemv2, ModelShapes) {
  if (!have_vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI + VBMI";
  // qwen2.5-0.5b (896, 4864) and llama-3.2-1b (2048, 8192) row lengths
  uint32_t seed = 900;
  for (DType wt : {DType::Q8_0, DType::Q5_0})
    for (int64_t K : {896, 4864, 2048, 8192}) check(wt, K, 33, false, seed++);
}
