// Weights packed at load (tensor/packed.h): the Q4_0_X16, Q5_0_X16,
// Q8_0_X16, Q4_K_X16, Q5_K_X16 and Q6_K_X16 layouts round-trip to the file's rows, the packed gemv (one token or a small
// batch) equals the scalar vec_dot on the plain rows, the types never come
// from a file or a name, and only CPUs with the kernels get a packed type.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/packed.h"
#include "tensor/types.h"
#include "util/error.h"
#include "util/fp16.h"
#include "unit/test_random.h"

using namespace lmhost;

namespace {

// rows rows of type t (one with a packed layout) of K elements: random bytes with sane
// scales (every quant code, -128 included) or quantized normal data with
// outliers.
std::vector<uint8_t> rows_of(DType t, int64_t K, int64_t rows, bool random_bytes, std::mt19937& rng) {
  const size_t wrow = row_bytes(t, K), bs = dtype_info(t).type_size;
  std::vector<uint8_t> w(wrow * rows);
  for (int64_t r = 0; r < rows; ++r) {
    if (random_bytes) {
      for (size_t i = 0; i < wrow; ++i) w[r * wrow + i] = static_cast<uint8_t>(rng());
      // where the block keeps its fp16 scales (Q4_K: d and dmin)
      const std::vector<size_t> at = t == DType::Q6_K ? std::vector<size_t>{bs - 2}
                                     : t == DType::Q4_K || t == DType::Q5_K ? std::vector<size_t>{0, 2}
                                                        : std::vector<size_t>{0};
      for (size_t o = 0; o < wrow; o += bs)
        for (size_t f : at) {
          const uint16_t h = fp32_to_fp16((rng() % 2 ? -1.0f : 1.0f) * (0.01f + 0.001f * static_cast<float>(rng() % 50)));
          std::memcpy(&w[r * wrow + o + f], &h, 2);
        }
    } else {
      const auto x = lmhost::testing::normal(K, rng, 1.0f, 61, 5.0f);
      quantize_row(t, x.data(), w.data() + r * wrow, K);
    }
  }
  return w;
}

// The file types with a packed layout.
constexpr DType kPackedFrom[] = {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

DType packed_of(DType t) {
  switch (t) {
    case DType::Q4_0: return DType::Q4_0_X16;
    case DType::Q5_0: return DType::Q5_0_X16;
    case DType::Q8_0: return DType::Q8_0_X16;
    case DType::Q4_K: return DType::Q4_K_X16;
    case DType::Q5_K: return DType::Q5_K_X16;
    default: return DType::Q6_K_X16;
  }
}

void check_gemv(DType wt, int64_t K, int64_t rows, int64_t T, bool random_bytes, uint32_t seed) {
  const GemvPackedFn gemv = kernels_for(Isa::AVX512).gemv_packed[static_cast<uint32_t>(packed_of(wt))];
  ASSERT_NE(gemv, nullptr) << dtype_name(wt);
  const VecDotFn dot = kernels_for(Isa::Scalar).vec_dot[static_cast<uint32_t>(wt)];
  std::mt19937 rng(seed);
  const size_t wrow = row_bytes(wt, K);
  const auto w = rows_of(wt, K, rows, random_bytes, rng);
  std::vector<uint8_t> wp(w.size());
  pack_x16(wt, w.data(), wrow, K, rows, wp.data());
  // Activation rows with a stride wider than a row (rows of a batch buffer).
  const DType at = vec_dot_type(wt);
  const size_t qrow = row_bytes(at, K), qstride = qrow + 36;
  std::vector<uint8_t> aq(qstride * T);
  const int64_t nb = K / 32;
  std::vector<float> d(nb * T);
  std::vector<int32_t> corr(nb * T);
  for (int64_t t = 0; t < T; ++t) {
    const auto a = lmhost::testing::normal(K, rng, 1.0f, 61, 5.0f);
    quantize_row(at, a.data(), aq.data() + t * qstride, K);
    if (at == DType::Q8_0) prepare_packed_act(aq.data() + t * qstride, K, d.data() + t * nb, corr.data() + t * nb);
  }
  const size_t os = rows + 5;
  std::vector<float> out(os * T + 1, -12345.0f);
  gemv(K, wp.data(), rows, PackedAct{aq.data(), qstride, d.data(), corr.data(), T}, out.data(), os);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      const float want = dot(K, w.data() + r * wrow, aq.data() + t * qstride);
      // Same integer block sums; only the float summation order differs.
      ASSERT_NEAR(out[t * os + r], want, 1e-4f * (1.0f + std::fabs(want)) + 1e-5f * static_cast<float>(K))
          << dtype_name(wt) << " K=" << K << " rows=" << rows << " T=" << T << " row " << r << " token " << t;
    }
    for (size_t r = rows; r < os; ++r) ASSERT_EQ(out[t * os + r], -12345.0f) << "wrote past the last row";
  }
  EXPECT_EQ(out[os * T], -12345.0f) << "wrote past the last token";
}

}  // namespace

TEST(Packed, RoundTripsToTheFileRows) {
  std::mt19937 rng(5);
  for (DType wt : kPackedFrom)
    for (int64_t nb : {1, 3, 28}) {
      const int64_t K = nb * dtype_info(wt).block_size, rows = 48;
      const size_t wrow = row_bytes(wt, K);
      const auto w = rows_of(wt, K, rows, true, rng);
      std::vector<uint8_t> wp(w.size(), 0xAB);
      pack_x16(wt, w.data(), wrow, K, rows, wp.data());
      EXPECT_NE(wp, w) << "packing must change the layout";
      // group g starts where row 16g did
      for (int64_t g = 0; g < rows / kPackRows; ++g) {
        const size_t at = g * kPackRows * wrow;
        std::vector<uint8_t> back(kPackRows * wrow);
        unpack_x16(packed_of(wt), wp.data() + at, K, back.data());
        ASSERT_EQ(0, std::memcmp(back.data(), w.data() + at, back.size()))
            << dtype_name(wt) << " nb=" << nb << " group " << g;
      }
      EXPECT_EQ(plain_type(packed_of(wt)), wt);
      std::vector<uint8_t> row(wrow);
      for (int64_t r : {0, 5, 16, 47}) {  // one row, as an embedding lookup reads it
        packed_row(packed_of(wt), wp.data(), K, r, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), w.data() + r * wrow, wrow)) << dtype_name(wt) << " row " << r;
      }
    }
  EXPECT_THROW(unpack_x16(DType::Q4_0, nullptr, 32, nullptr), Error) << "not a packed layout";
  EXPECT_THROW(plain_type(DType::Q4_K), Error);
}

TEST(Packed, GemvMatchesScalarVecDot) {
  if (detect_isa() < Isa::AVX512) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  uint32_t seed = 1;
  for (DType wt : kPackedFrom)
    for (int64_t nb : {1, 2, 3, 7, 28, 152}) {
      if (dtype_info(wt).block_size == 256 && nb > 19) continue;  // 256-element blocks: K up to 4864 as for the others
      for (int64_t rows : {16, 48})
        for (int64_t T : {1, 2, 3, 4, 5, 7, 8, 9, 17}) {
          const bool rb = seed % 2 == 0;
          check_gemv(wt, nb * dtype_info(wt).block_size, rows, T, rb, seed++);
        }
    }
}

TEST(Packed, TypeIsInternal) {
  const DTypeInfo& info = dtype_info(DType::Q4_0_X16);
  EXPECT_TRUE(info.internal);
  EXPECT_EQ(info.block_size, 32);
  for (DType wt : kPackedFrom) {
    const DType p = packed_of(wt);
    EXPECT_TRUE(dtype_info(p).internal);
    EXPECT_EQ(row_bytes(p, 1024), row_bytes(wt, 1024)) << "same bytes, other order";
    EXPECT_GE(static_cast<uint32_t>(p), kFirstInternalDType);
    EXPECT_FALSE(dtype_from_name(dtype_name(p)).has_value()) << "a user cannot ask for an internal layout";
    EXPECT_EQ(vec_dot_type(p), vec_dot_type(wt));
  }
  for (uint32_t t = 0; t < kFirstInternalDType; ++t) EXPECT_FALSE(dtype_info(static_cast<DType>(t)).internal);
}

TEST(Packed, OnlyWhereTheKernelsExist) {
  // The portable tables have no packed kernels: weights stay as in the file.
  EXPECT_EQ(packed_type(DType::Q4_0, kernels_for(Isa::Scalar)), DType::Q4_0);
  EXPECT_EQ(packed_type(DType::Q4_0, kernels_for(Isa::AVX2)), DType::Q4_0);
  EXPECT_FALSE(packable(DType::Q4_0, 896, 64, kernels_for(Isa::Scalar)));
  EXPECT_EQ(packed_type(DType::Q8_0, kernels_for(Isa::Scalar)), DType::Q8_0);
  if (detect_isa() < Isa::AVX512) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  const Kernels& k = kernels_for(Isa::AVX512);
  EXPECT_EQ(packed_type(DType::Q4_0, k), DType::Q4_0_X16);
  EXPECT_EQ(packed_type(DType::Q8_0, k), DType::Q8_0_X16);
  EXPECT_EQ(packed_type(DType::Q6_K, k), DType::Q6_K_X16);
  EXPECT_EQ(packed_type(DType::Q4_K, k), DType::Q4_K_X16);
  EXPECT_EQ(packed_type(DType::Q5_0, k), DType::Q5_0_X16);
  EXPECT_EQ(packed_type(DType::Q5_K, k), DType::Q5_K_X16);
  EXPECT_EQ(packed_type(DType::Q4_1, k), DType::Q4_1) << "no packed layout";
  EXPECT_EQ(packed_type(DType::Q3_K, k), DType::Q3_K) << "no packed layout";
  EXPECT_TRUE(packable(DType::Q4_0, 896, 64, k));
  EXPECT_FALSE(packable(DType::Q4_0, 896, 72, k)) << "rows not a multiple of 16";
  EXPECT_FALSE(packable(DType::Q4_0, 40, 64, k)) << "rows not whole blocks";
  EXPECT_FALSE(packable(DType::Q6_K, 896, 64, k)) << "rows not whole super-blocks";
  EXPECT_TRUE(packable(DType::Q6_K, 1024, 64, k));
}
