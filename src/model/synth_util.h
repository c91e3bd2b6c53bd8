// Shared pieces of the synthesizers (synth.cpp: decoders, synth_bert.cpp:
// encoders): seeded per-row random values, and writing rows of floats into a
// tensor of any type on several threads. Every row has its own seed, so the
// bytes do not depend on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "tensor/types.h"

namespace lmhost::model::synth_util {

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// FNV-1a of a tensor name mixed with the user's seed.
inline uint64_t hash_name(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Approximately standard normal: the sum of four uniform 16-bit values,
// centred and scaled to unit variance (fast; good enough for weights).
inline float approx_normal(uint64_t r) {
  const float s = static_cast<float>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
  return (s / 65536.0f - 2.0f) * 1.7320508f;
}

// The per-row generator state: seeded from the tensor's seed and the row.
inline uint64_t row_seed(uint64_t tensor_seed, int64_t r) {
  return tensor_seed ^ (static_cast<uint64_t>(r) * 0xd1342543de82ef95ull);
}

// Fills nbytes of `dst` (rows of `row` elements of `type`): gen(r, buf)
// writes row r as floats into buf, which is then stored as F32/F16/BF16 or
// quantized. Errors from any thread are rethrown.
void fill_rows(DType type, int64_t row, uint8_t* dst, size_t nbytes, unsigned n_threads,
               const std::function<void(int64_t r, float* buf)>& gen);

}  // namespace lmhost::model::synth_util
