// Binding weights and hyper-parameters from a GGUF file, with errors that
// name the file, the tensor or key, and what was expected. Shared by the
// decoder (model.cpp) and the encoders (bert.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tensor/tensor.h"

namespace lmhost::weights {

std::string shape_str(const std::vector<int64_t>& dims);  // "[64, 128]"

// "{arch}.{suffix}" as a positive int (at most 2^30); missing → error / def.
int required_int(const gguf::File& f, const std::string& arch, const char* suffix);
int optional_int(const gguf::File& f, const std::string& arch, const char* suffix, int def);

// A 1-D tensor of n elements (F32, F16 or BF16) as floats; absent and not
// required → empty.
std::vector<float> load_vector(const gguf::File& f, const std::string& name, int64_t n, bool required);

// A matrix {ne0 = K, ne1 = N} of a type the matmul kernels compute with.
TensorView load_matrix(const gguf::File& f, const std::string& name, int64_t K, int64_t N);

}  // namespace lmhost::weights
