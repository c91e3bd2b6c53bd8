// Tensor element types with the numbering and block layouts of the GGUF
// format (ggml's type ids). A "block" packs block_size elements into
// type_size bytes; a row of n elements takes n / block_size * type_size bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lmhost {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35,
  // Internal layouts (never in a file; ids from kFirstInternalDType up):
  // weights repacked at load for the decode kernels (tensor/packed.h).
  Q4_0_X16 = 40, Q8_0_X16 = 41, Q6_K_X16 = 42, Q4_K_X16 = 43, Q5_0_X16 = 44, Q5_K_X16 = 45,
};
inline constexpr uint32_t kFirstInternalDType = 40;  // GGUF ids stay below (39 is MXFP4 there)
inline constexpr uint32_t kDTypeCount = 48;          // upper bound on type ids, for tables

struct DTypeInfo {
  const char* name;     // "F32", "Q4_K", ... ("" for ids that do not exist)
  int64_t block_size;   // elements per block (1 for plain types); 0 = unknown id
  size_t type_size;     // bytes per block
  bool compute;         // we can dequantize it and use it in a matmul
  bool internal = false;  // an in-memory layout of ours (never read from or written to a file)
};

// Info for any id < kDTypeCount; unknown ids have block_size 0.
const DTypeInfo& dtype_info(DType t);
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive; file types only

// Bytes for n elements of type t. n must be a multiple of the block size.
size_t row_bytes(DType t, int64_t n);

}  // namespace lmhost
