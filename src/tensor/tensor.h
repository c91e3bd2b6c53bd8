// A read-only view of a tensor's bytes (usually memory-mapped from a GGUF
// file). ne[0] is the innermost (contiguous) dimension, as in GGUF: a weight
// matrix of shape ne = {K, N} is N rows of K elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/types.h"

namespace lmhost {

struct TensorView {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_stride() const { return row_bytes(type, ne[0]); }
  const uint8_t* row(int64_t i) const { return static_cast<const uint8_t*>(data) + i * row_stride(); }
};

}  // namespace lmhost
