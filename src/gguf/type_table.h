// Private to gguf/: block size and bytes per block of each ggml type id.
// lmhost_gguf links only lmhost_util (the tokenizer uses it without the
// tensor library), so the reader and writer carry this small table of their
// own instead of calling dtype_info() from tensor/. Facts: ggml's type ids.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmhost::gguf::detail {

struct TypeFacts {
  const char* name;
  int64_t block_size;  // 0 = no such type id
  uint64_t type_size;
};

inline const TypeFacts& type_facts(uint32_t id) {
  static const TypeFacts kTable[40] = {
      {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},     {"Q4_1", 32, 20},
      {"", 0, 0},           {"", 0, 0},          {"Q5_0", 32, 22},     {"Q5_1", 32, 24},
      {"Q8_0", 32, 34},     {"Q8_1", 32, 36},    {"Q2_K", 256, 84},    {"Q3_K", 256, 110},
      {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},   {"Q8_K", 256, 292},
      {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
      {"IQ4_NL", 32, 18},   {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},   {"IQ4_XS", 256, 136},
      {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},        {"I64", 1, 8},
      {"F64", 1, 8},        {"IQ1_M", 256, 56},  {"BF16", 1, 2},       {"", 0, 0},
      {"", 0, 0},           {"", 0, 0},          {"TQ1_0", 256, 54},   {"TQ2_0", 256, 66},
      {"", 0, 0},           {"", 0, 0},          {"", 0, 0},           {"MXFP4", 32, 17},
  };
  static const TypeFacts kNone = {"", 0, 0};
  return id < 40 ? kTable[id] : kNone;
}

}  // namespace lmhost::gguf::detail
