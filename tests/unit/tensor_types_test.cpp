#include <gtest/gtest.h>

#include "tensor/types.h"
#include "util/error.h"

using namespace lmhost;

TEST(TensorTypes, BlockSizesMatchGgml) {
  struct Row { DType t; int64_t bs; size_t ts; bool compute; };
  const Row rows[] = {
      {DType::F32, 1, 4, true},       {DType::F16, 1, 2, true},      {DType::BF16, 1, 2, true},
      {DType::Q4_0, 32, 18, true},    {DType::Q4_1, 32, 20, true},   {DType::Q5_0, 32, 22, true},
      {DType::Q5_1, 32, 24, true},    {DType::Q8_0, 32, 34, true},   {DType::Q8_1, 32, 36, true},
      {DType::Q2_K, 256, 84, true},   {DType::Q3_K, 256, 110, true}, {DType::Q4_K, 256, 144, true},
      {DType::Q5_K, 256, 176, true},  {DType::Q6_K, 256, 210, true}, {DType::Q8_K, 256, 292, true},
      {DType::IQ2_XXS, 256, 66, false}, {DType::IQ2_XS, 256, 74, false},
      {DType::IQ3_XXS, 256, 98, false}, {DType::IQ1_S, 256, 50, false},
      {DType::IQ4_NL, 32, 18, false},   {DType::IQ3_S, 256, 110, false},
      {DType::IQ2_S, 256, 82, false},   {DType::IQ4_XS, 256, 136, false},
      {DType::IQ1_M, 256, 56, false},   {DType::TQ1_0, 256, 54, false},
      {DType::TQ2_0, 256, 66, false},   {DType::I8, 1, 1, false},
      {DType::I16, 1, 2, false},        {DType::I32, 1, 4, false},
      {DType::I64, 1, 8, false},        {DType::F64, 1, 8, false},
  };
  for (const Row& r : rows) {
    const DTypeInfo& info = dtype_info(r.t);
    EXPECT_EQ(info.block_size, r.bs) << info.name;
    EXPECT_EQ(info.type_size, r.ts) << info.name;
    EXPECT_EQ(info.compute, r.compute) << info.name;
    EXPECT_EQ(dtype_from_name(info.name), r.t);
  }
}

TEST(TensorTypes, NamesAndUnknownIds) {
  EXPECT_STREQ(dtype_name(DType::Q4_K), "Q4_K");
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("bf16"), DType::BF16);
  EXPECT_FALSE(dtype_from_name("Q4_2").has_value());
  EXPECT_FALSE(dtype_from_name("").has_value());
  EXPECT_EQ(dtype_info(static_cast<DType>(4)).block_size, 0);
  EXPECT_EQ(dtype_info(static_cast<DType>(1000)).block_size, 0);
}

TEST(TensorTypes, RowBytes) {
  EXPECT_EQ(row_bytes(DType::F32, 4096), 16384u);
  EXPECT_EQ(row_bytes(DType::Q4_0, 4096), 128u * 18);
  EXPECT_EQ(row_bytes(DType::Q6_K, 4096), 16u * 210);
  EXPECT_THROW(row_bytes(DType::Q4_K, 100), Error);
  EXPECT_THROW(row_bytes(static_cast<DType>(5), 32), Error);
}
