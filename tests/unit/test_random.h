// Random test data for the kernel and op tests (one generator, so the
// files that check kernels against their references draw data the same way).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace lmhost::testing {

// n values from normal(0, sd); with spike_every > 0, every spike_every-th
// value (from the first) is multiplied by spike: outliers that stress the
// block scales of quantized formats.
inline std::vector<float> normal(int64_t n, std::mt19937& rng, float sd = 1.0f, int64_t spike_every = 0,
                                 float spike = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  if (spike_every > 0)
    for (int64_t i = 0; i < n; i += spike_every) v[i] *= spike;
  return v;
}

// The same from a generator seeded with seed.
inline std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  return normal(static_cast<int64_t>(n), rng, sd);
}

}  // namespace lmhost::testing
