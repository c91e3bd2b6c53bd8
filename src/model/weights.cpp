#include "model/weights.h"

#include <cstring>

#include "ops/ops.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost::weights {

std::string shape_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

int optional_int(const gguf::File& f, const std::string& arch, const char* suffix, int def) {
  const auto v = f.get_arch_int(suffix);
  if (!v) return def;
  if (*v <= 0 || *v > (1 << 30))
    throw Error(f.path() + ": metadata key '" + arch + "." + suffix + "' has invalid value " + std::to_string(*v));
  return static_cast<int>(*v);
}

int required_int(const gguf::File& f, const std::string& arch, const char* suffix) {
  if (!f.get_arch_int(suffix)) throw Error(f.path() + ": missing metadata key '" + arch + "." + suffix + "'");
  return optional_int(f, arch, suffix, 0);
}

std::vector<float> load_vector(const gguf::File& f, const std::string& name, int64_t n, bool required) {
  const gguf::TensorInfo* t = f.tensor(name);
  if (!t) {
    if (required) throw Error(f.path() + ": tensor '" + name + "' is missing");
    return {};
  }
  if (t->n_elements() != n || t->dims.empty() || t->dims[0] != n)
    throw Error(f.path() + ": tensor '" + name + "' has shape " + shape_str(t->dims) + ", expected [" +
                std::to_string(n) + "]");
  std::vector<float> out(static_cast<size_t>(n));
  switch (t->type) {
    case DType::F32: std::memcpy(out.data(), t->data, n * sizeof(float)); break;
    case DType::F16: ops::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(t->data), out.data(), n); break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        out[i] = bf16_to_fp32(h);
      }
      break;
    default:
      throw Error(f.path() + ": tensor '" + name + "' has type " + dtype_name(t->type) +
                  "; vectors must be F32, F16 or BF16");
  }
  return out;
}

TensorView load_matrix(const gguf::File& f, const std::string& name, int64_t K, int64_t N) {
  const gguf::TensorInfo* t = f.tensor(name);
  if (!t) throw Error(f.path() + ": tensor '" + name + "' is missing");
  bool ok = t->dims.size() >= 2 && t->dims[0] == K && t->dims[1] == N;
  for (size_t i = 2; ok && i < t->dims.size(); ++i) ok = t->dims[i] == 1;
  if (!ok)
    throw Error(f.path() + ": tensor '" + name + "' has shape " + shape_str(t->dims) + ", expected " +
                shape_str({K, N}));
  const uint32_t ti = static_cast<uint32_t>(t->type);
  const DTypeInfo& info = dtype_info(t->type);
  if (ti >= kDTypeCount || info.block_size == 0 || !kernels().vec_dot[ti])
    throw Error(f.path() + ": tensor '" + name + "' has type " + (info.block_size ? dtype_name(t->type) : "unknown") +
                ", which lmhost cannot compute with yet");
  const DTypeInfo& qi = dtype_info(vec_dot_type(t->type));
  if (K % info.block_size != 0 || qi.block_size == 0 || K % qi.block_size != 0)
    throw Error(f.path() + ": tensor '" + name + "' rows of " + std::to_string(K) +
                " elements do not fit the block size of " + dtype_name(t->type));
  return t->view();
}

}  // namespace lmhost::weights
