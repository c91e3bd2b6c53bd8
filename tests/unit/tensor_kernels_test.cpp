// Kernel tests: every SIMD kernel against the scalar oracle, the scalar
// vec_dot against dequantize+dot, quantize/dequantize round-trip bounds, and
// exhaustive fp16/bf16 conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/types.h"
#include "util/error.h"
#include "util/fp16.h"

using namespace lmhost;

namespace {

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                              DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<Isa> simd_isas() {
  std::vector<Isa> v;
  const Isa best = detect_isa();
  if (best >= Isa::AVX2) v.push_back(Isa::AVX2);
  if (best >= Isa::AVX512) v.push_back(Isa::AVX512);
  return v;
}

std::vector<float> random_floats(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  // a few outliers, as real activations have
  for (int64_t i = 0; i < n; i += 97) v[i] *= 6.0f;
  return v;
}

std::vector<uint8_t> quantize(const Kernels& k, DType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(t, static_cast<int64_t>(x.size())));
  k.quantize[static_cast<uint32_t>(t)](x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

std::vector<float> dequantize(const Kernels& k, DType t, const void* src, int64_t n) {
  std::vector<float> out(n);
  k.dequantize[static_cast<uint32_t>(t)](src, out.data(), n);
  return out;
}

// Random bytes in every bit field of every block, with the fp16 scale fields
// replaced by sane values: exercises extreme quants the quantizer avoids.
std::vector<uint8_t> random_blocks(DType t, int64_t n, std::mt19937& rng) {
  const DTypeInfo& info = dtype_info(t);
  std::vector<uint8_t> buf(row_bytes(t, n));
  if (info.block_size == 1) {  // plain float types: random values
    auto f = random_floats(n, rng);
    return quantize(kernels_for(Isa::Scalar), t, f);
  }
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  std::vector<size_t> half_offsets;
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: half_offsets = {0}; break;
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: half_offsets = {0, 2}; break;
    case DType::Q2_K: half_offsets = {80, 82}; break;
    case DType::Q3_K: half_offsets = {108}; break;
    case DType::Q6_K: half_offsets = {208}; break;
    default: ADD_FAILURE() << "no random blocks for " << dtype_name(t);
  }
  std::uniform_real_distribution<float> ud(0.001f, 0.05f);
  for (size_t off = 0; off < buf.size(); off += info.type_size)
    for (size_t h : half_offsets) {
      const uint16_t v = fp32_to_fp16(ud(rng) * ((rng() & 1) ? 1.0f : -1.0f));
      std::memcpy(&buf[off + h], &v, 2);
    }
  return buf;
}

// Dot product of dequantized rows in double, and the sum of |w_i * a_i| used
// to scale the tolerance of float reordering.
std::pair<double, double> ref_dot(const std::vector<float>& w, const std::vector<float>& a) {
  double s = 0, m = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    s += static_cast<double>(w[i]) * a[i];
    m += std::fabs(static_cast<double>(w[i]) * a[i]);
  }
  return {s, m};
}

std::vector<int64_t> lengths_for(DType t) {
  if (dtype_info(t).block_size == 256) return {256, 768, 4096};
  if (dtype_info(t).block_size == 1) return {1, 7, 17, 96, 4099, 11008};  // SIMD tails
  return {32, 96, 256, 4096, 4128, 11008};
}

}  // namespace

TEST(TensorKernels, TablesHaveEveryComputeType) {
  for (Isa isa : {Isa::Scalar, Isa::AVX2, Isa::AVX512}) {
    const Kernels& k = kernels_for(isa);
    EXPECT_EQ(k.isa, isa);
    for (DType t : kWeightTypes) {
      const uint32_t i = static_cast<uint32_t>(t);
      EXPECT_NE(k.dequantize[i], nullptr) << dtype_name(t);
      EXPECT_NE(k.quantize[i], nullptr) << dtype_name(t);
      EXPECT_NE(k.vec_dot[i], nullptr) << dtype_name(t);
      const DType vt = vec_dot_type(t);
      EXPECT_NE(k.quantize[static_cast<uint32_t>(vt)], nullptr) << dtype_name(vt);
    }
  }
}

TEST(TensorKernels, VecDotTypesMatchGgml) {
  EXPECT_EQ(vec_dot_type(DType::F16), DType::F32);
  EXPECT_EQ(vec_dot_type(DType::BF16), DType::F32);
  EXPECT_EQ(vec_dot_type(DType::Q4_0), DType::Q8_0);
  EXPECT_EQ(vec_dot_type(DType::Q5_0), DType::Q8_0);
  EXPECT_EQ(vec_dot_type(DType::Q8_0), DType::Q8_0);
  EXPECT_EQ(vec_dot_type(DType::Q4_1), DType::Q8_1);
  EXPECT_EQ(vec_dot_type(DType::Q5_1), DType::Q8_1);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    EXPECT_EQ(vec_dot_type(t), DType::Q8_K);
  EXPECT_THROW(vec_dot_type(DType::IQ2_XXS), Error);
  EXPECT_THROW(vec_dot_type(DType::I32), Error);
}

TEST(TensorKernels, WrappersRejectUnsupportedTypes) {
  std::vector<uint8_t> buf(1024);
  std::vector<float> f(256);
  EXPECT_THROW(dequantize_row(DType::IQ2_XXS, buf.data(), f.data(), 256), Error);
  EXPECT_THROW(quantize_row(DType::IQ4_XS, f.data(), buf.data(), 256), Error);
  EXPECT_THROW(vec_dot(DType::Q8_K, 256, buf.data(), buf.data()), Error);
  EXPECT_THROW(vec_dot(DType::Q4_0, 33, buf.data(), buf.data()), Error);
  EXPECT_THROW(dequantize_row(static_cast<DType>(4), buf.data(), f.data(), 32), Error);
  EXPECT_NO_THROW(dequantize_row(DType::Q4_0, buf.data(), f.data(), 32));
}

// The scalar vec_dot must equal the dot of the dequantized rows: this ties
// the dot kernels to the same bit layout as dequantize.
TEST(TensorKernels, ScalarVecDotMatchesDequantizedDot) {
  const Kernels& k = kernels_for(Isa::Scalar);
  std::mt19937 rng(1);
  for (DType t : kWeightTypes) {
    const DType vt = vec_dot_type(t);
    for (int64_t n : lengths_for(t)) {
      const auto wq = random_blocks(t, n, rng);
      const auto aq = quantize(k, vt, random_floats(n, rng));
      const auto [ref, mag] = ref_dot(dequantize(k, t, wq.data(), n), dequantize(k, vt, aq.data(), n));
      const float got = k.vec_dot[static_cast<uint32_t>(t)](n, wq.data(), aq.data());
      EXPECT_NEAR(got, ref, 2e-5 * mag + 1e-30) << dtype_name(t) << " n=" << n;
    }
  }
}

TEST(TensorKernels, SimdVecDotMatchesScalar) {
  const Kernels& ks = kernels_for(Isa::Scalar);
  std::mt19937 rng(2);
  if (simd_isas().empty()) GTEST_SKIP() << "this CPU has no AVX2";
  for (Isa isa : simd_isas()) {
    std::printf("  checking %s vec_dot kernels\n", isa_name(isa));
    const Kernels& kf = kernels_for(isa);
    for (DType t : kWeightTypes) {
      const DType vt = vec_dot_type(t);
      for (int64_t n : lengths_for(t)) {
        for (int rep = 0; rep < 2; ++rep) {
          const auto wq = rep == 0 ? random_blocks(t, n, rng) : quantize(ks, t, random_floats(n, rng));
          const auto aq = quantize(ks, vt, random_floats(n, rng, rep == 0 ? 1.0f : 30.0f));
          const auto mag = ref_dot(dequantize(ks, t, wq.data(), n), dequantize(ks, vt, aq.data(), n)).second;
          const uint32_t i = static_cast<uint32_t>(t);
          const float want = ks.vec_dot[i](n, wq.data(), aq.data());
          const float got = kf.vec_dot[i](n, wq.data(), aq.data());
          EXPECT_NEAR(got, want, 1e-5 * mag + 1e-30)
              << isa_name(isa) << " " << dtype_name(t) << " n=" << n << " rep=" << rep;
        }
      }
    }
  }
}

TEST(TensorKernels, SimdActivationQuantizeMatchesScalar) {
  const Kernels& ks = kernels_for(Isa::Scalar);
  std::mt19937 rng(3);
  for (Isa isa : simd_isas()) {
    const Kernels& kf = kernels_for(isa);
    for (DType t : {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::F16, DType::BF16, DType::F32}) {
      for (int64_t n : {256, 4096}) {
        if (dtype_info(t).block_size == 1) n += 13;  // SIMD tails
        auto x = random_floats(n, rng, 3.0f);
        for (int i = 0; i < 32; ++i) x[i] = 0.0f;  // an all-zero block
        const auto want = quantize(ks, t, x);
        const auto got = quantize(kf, t, x);
        EXPECT_EQ(want, got) << isa_name(isa) << " " << dtype_name(t) << " n=" << n;
      }
    }
  }
}

TEST(TensorKernels, SimdDequantizeMatchesScalar) {
  const Kernels& ks = kernels_for(Isa::Scalar);
  std::mt19937 rng(4);
  for (Isa isa : simd_isas()) {
    const Kernels& kf = kernels_for(isa);
    for (DType t : kWeightTypes) {
      for (int64_t n : lengths_for(t)) {
        const auto wq = random_blocks(t, n, rng);
        const auto want = dequantize(ks, t, wq.data(), n);
        const auto got = dequantize(kf, t, wq.data(), n);
        ASSERT_EQ(want.size(), got.size());
        for (int64_t i = 0; i < n; ++i)
          ASSERT_NEAR(got[i], want[i], 1e-6f * std::fabs(want[i]))
              << isa_name(isa) << " " << dtype_name(t) << " i=" << i;
      }
    }
  }
}

// Q8_K / Q8_1 side data must be what ggml expects: bsums = sums of 16 quants,
// s = d * sum(q).
TEST(TensorKernels, ActivationSideFields) {
  std::mt19937 rng(5);
  const auto x = random_floats(512, rng);
  for (Isa isa : {Isa::Scalar, detect_isa()}) {
    const Kernels& k = kernels_for(isa);
    const auto q8k = quantize(k, DType::Q8_K, x);
    for (int b = 0; b < 2; ++b) {
      const uint8_t* blk = q8k.data() + b * 292;
      float d;
      std::memcpy(&d, blk, 4);
      const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 4);
      for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int j = 0; j < 16; ++j) s += qs[16 * g + j];
        int16_t bs;
        std::memcpy(&bs, blk + 4 + 256 + 2 * g, 2);
        EXPECT_EQ(bs, s);
      }
      for (int j = 0; j < 256; ++j) EXPECT_NEAR(d * qs[j], x[256 * b + j], 0.5f * d * 1.0001f);
    }
    const auto q81 = quantize(k, DType::Q8_1, x);
    for (int b = 0; b < 16; ++b) {
      const uint8_t* blk = q81.data() + b * 36;
      uint16_t dh, sh;
      std::memcpy(&dh, blk, 2);
      std::memcpy(&sh, blk + 2, 2);
      int s = 0;
      for (int j = 0; j < 32; ++j) s += static_cast<int8_t>(blk[4 + j]);
      EXPECT_NEAR(fp16_to_fp32(sh), fp16_to_fp32(dh) * s, std::fabs(fp16_to_fp32(dh) * s) * 1e-3 + 1e-6);
    }
  }
}

// quantize -> dequantize error bounds.
TEST(TensorKernels, LegacyRoundTripBounds) {
  const Kernels& k = kernels_for(Isa::Scalar);
  std::mt19937 rng(6);
  const int64_t n = 4096;
  const auto x = random_floats(n, rng);
  // Per-block bound as a fraction of the block's max |x| (symmetric types)
  // or range (min/max types), plus fp16 rounding of the stored scale.
  struct Case { DType t; double frac_amax; double frac_range; };
  const Case cases[] = {
      {DType::Q8_0, 0.5 / 127 + 1.0 / 2048, 0},
      {DType::Q8_1, 0.5 / 127 + 1.0 / 2048, 0},
      {DType::Q4_0, 1.0 / 8 + 1.0 / 1024, 0},  // the top code (+8) is clamped to 7
      {DType::Q5_0, 1.0 / 16 + 1.0 / 1024, 0},
      {DType::Q4_1, 1.0 / 1024, 0.5 / 15 + 1.0 / 1024},
      {DType::Q5_1, 1.0 / 1024, 0.5 / 31 + 1.0 / 1024},
      {DType::F16, 1.0 / 2048, 0},
      {DType::BF16, 1.0 / 256, 0},
  };
  for (const Case& c : cases) {
    const auto y = dequantize(k, c.t, quantize(k, c.t, x).data(), n);
    const int bs = dtype_info(c.t).block_size == 1 ? 32 : 32;
    for (int64_t b = 0; b < n / bs; ++b) {
      double amax = 0, mn = 1e30, mx = -1e30;
      for (int j = 0; j < bs; ++j) {
        const double v = x[b * bs + j];
        amax = std::max(amax, std::fabs(v));
        mn = std::min(mn, v);
        mx = std::max(mx, v);
      }
      const double bound = c.frac_amax * amax + c.frac_range * (mx - mn) + 1e-7;
      for (int j = 0; j < bs; ++j)
        ASSERT_LE(std::fabs(y[b * bs + j] - x[b * bs + j]), bound) << dtype_name(c.t) << " block " << b;
    }
  }
}

TEST(TensorKernels, KQuantRoundTripRmse) {
  const Kernels& k = kernels_for(Isa::Scalar);
  std::mt19937 rng(7);
  const int64_t n = 8192;
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  // Relative RMS error bounds for Gaussian weights (ggml's reference
  // quantizers reach roughly 0.27 / 0.16 / 0.08 / 0.04 / 0.02).
  struct Case { DType t; double max_rel_rmse; };
  const Case cases[] = {{DType::Q2_K, 0.40}, {DType::Q3_K, 0.22}, {DType::Q4_K, 0.10},
                        {DType::Q5_K, 0.05}, {DType::Q6_K, 0.025}, {DType::Q8_K, 0.01}};
  double xs = 0;
  for (float v : x) xs += static_cast<double>(v) * v;
  for (const Case& c : cases) {
    const auto y = dequantize(k, c.t, quantize(k, c.t, x).data(), n);
    double es = 0;
    for (int64_t i = 0; i < n; ++i) es += (static_cast<double>(y[i]) - x[i]) * (y[i] - x[i]);
    const double rel = std::sqrt(es / xs);
    EXPECT_LT(rel, c.max_rel_rmse) << dtype_name(c.t);
    std::printf("  %s relative rmse %.4f\n", dtype_name(c.t), rel);
  }
  // All-zero input stays exactly zero, without NaN.
  std::vector<float> z(512, 0.0f);
  for (DType t : kWeightTypes) {
    const auto y = dequantize(k, t, quantize(k, t, z).data(), 512);
    for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(t);
  }
}

TEST(TensorKernels, Fp16ExhaustiveRoundTrip) {
  const Kernels& ks = kernels_for(Isa::Scalar);
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (Isa isa : {Isa::Scalar, Isa::AVX2, Isa::AVX512}) {
    if (isa > detect_isa()) continue;
    const Kernels& k = kernels_for(isa);
    std::vector<float> f(65536), fs(65536);
    k.dequantize[static_cast<uint32_t>(DType::F16)](all.data(), f.data(), 65536);
    ks.dequantize[static_cast<uint32_t>(DType::F16)](all.data(), fs.data(), 65536);
    std::vector<uint16_t> back(65536);
    k.quantize[static_cast<uint32_t>(DType::F16)](f.data(), back.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      if (std::isnan(fs[i])) {
        ASSERT_TRUE(std::isnan(f[i])) << i;
        ASSERT_EQ(back[i] & 0x7c00u, 0x7c00u);
        continue;
      }
      ASSERT_EQ(fp32_to_bits(f[i]), fp32_to_bits(fs[i])) << isa_name(isa) << " h=" << i;
      ASSERT_EQ(back[i], i) << isa_name(isa) << " h=" << i;
    }
    // Midpoints between neighbouring halves round to the even one.
    std::vector<float> mids;
    std::vector<uint16_t> expect;
    for (uint32_t i = 0; i < 0x7bff; ++i) {
      const float lo = fp16_to_fp32(static_cast<uint16_t>(i)), hi = fp16_to_fp32(static_cast<uint16_t>(i + 1));
      const float mid = lo + (hi - lo) * 0.5f;
      for (float sign : {1.0f, -1.0f}) {
        mids.push_back(sign * mid);
        expect.push_back(static_cast<uint16_t>(((i & 1) ? i + 1 : i) | (sign < 0 ? 0x8000u : 0u)));
      }
    }
    std::vector<uint16_t> got(mids.size());
    k.quantize[static_cast<uint32_t>(DType::F16)](mids.data(), got.data(), static_cast<int64_t>(mids.size()));
    for (size_t i = 0; i < mids.size(); ++i) ASSERT_EQ(got[i], expect[i]) << isa_name(isa) << " mid " << mids[i];
  }
}

TEST(TensorKernels, Bf16ExhaustiveRoundTrip) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (Isa isa : {Isa::Scalar, Isa::AVX2, Isa::AVX512}) {
    if (isa > detect_isa()) continue;
    const Kernels& k = kernels_for(isa);
    std::vector<float> f(65536);
    k.dequantize[static_cast<uint32_t>(DType::BF16)](all.data(), f.data(), 65536);
    std::vector<uint16_t> back(65536);
    k.quantize[static_cast<uint32_t>(DType::BF16)](f.data(), back.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      ASSERT_EQ(fp32_to_bits(f[i]), i << 16) << isa_name(isa) << " " << i;
      if (std::isnan(f[i])) ASSERT_TRUE(std::isnan(bf16_to_fp32(back[i])));
      else ASSERT_EQ(back[i], i) << isa_name(isa) << " " << i;
    }
    // ties to even
    const float tie = fp32_from_bits(0x3f808000u);  // halfway between bf16 0x3f80 and 0x3f81
    uint16_t out;
    k.quantize[static_cast<uint32_t>(DType::BF16)](&tie, &out, 1);
    EXPECT_EQ(out, 0x3f80u);
  }
}

// Guards the dispatch tables: each SIMD table has its own vec_dot for every
// weight type and its own activation quantizers (not the scalar fallback).
TEST(TensorKernels, SimdTablesUseSimdKernels) {
  const Kernels& ks = kernels_for(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    const Kernels& k = kernels_for(isa);
    for (DType t : kWeightTypes)
      EXPECT_NE(k.vec_dot[static_cast<uint32_t>(t)], ks.vec_dot[static_cast<uint32_t>(t)])
          << isa_name(isa) << " " << dtype_name(t);
    for (DType t : {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::F16, DType::BF16})
      EXPECT_NE(k.quantize[static_cast<uint32_t>(t)], ks.quantize[static_cast<uint32_t>(t)])
          << isa_name(isa) << " " << dtype_name(t);
  }
  if (simd_isas().size() == 2) {
    EXPECT_NE(kernels_for(Isa::AVX512).vec_dot[static_cast<uint32_t>(DType::Q4_0)],
              kernels_for(Isa::AVX2).vec_dot[static_cast<uint32_t>(DType::Q4_0)]);
  }
}

// Tiles (every nw x na up to kTileMax, every ISA) equal the scalar vec_dot.
TEST(TensorKernels, TilesMatchScalarVecDot) {
  const Kernels& ks = kernels_for(Isa::Scalar);
  std::mt19937 rng(8);
  std::vector<Isa> isas{Isa::Scalar};
  for (Isa isa : simd_isas()) isas.push_back(isa);
  for (DType t : kWeightTypes) {
    const DType vt = vec_dot_type(t);
    const uint32_t ti = static_cast<uint32_t>(t);
    const bool plain = dtype_info(t).block_size == 1;
    for (int64_t n : {dtype_info(t).block_size == 256 ? int64_t{512} : int64_t{96}, int64_t{plain ? 4099 : 4096}}) {
      const size_t ws = row_bytes(t, n), as = row_bytes(vt, n);
      std::vector<uint8_t> w, a;
      for (int r = 0; r < kTileMax; ++r) {
        const auto wr = random_blocks(t, n, rng);
        w.insert(w.end(), wr.begin(), wr.end());
        const auto ar = quantize(ks, vt, random_floats(n, rng));
        a.insert(a.end(), ar.begin(), ar.end());
      }
      float want[kTileMax][kTileMax], mag[kTileMax][kTileMax];
      for (int r = 0; r < kTileMax; ++r)
        for (int c = 0; c < kTileMax; ++c) {
          want[r][c] = ks.vec_dot[ti](n, w.data() + r * ws, a.data() + c * as);
          mag[r][c] = static_cast<float>(
              ref_dot(dequantize(ks, t, w.data() + r * ws, n), dequantize(ks, vt, a.data() + c * as, n)).second);
        }
      for (Isa isa : isas) {
        const VecDotTileFn f = kernels_for(isa).vec_dot_tile[ti];
        ASSERT_NE(f, nullptr) << isa_name(isa) << " " << dtype_name(t);
        for (int nw = 1; nw <= kTileMax; ++nw)
          for (int na = 1; na <= kTileMax; ++na) {
            float out[kTileMax * 5];
            for (float& o : out) o = -12345.0f;
            f(n, w.data(), ws, a.data(), as, nw, na, out, 5);
            for (int r = 0; r < kTileMax; ++r)
              for (int c = 0; c < 5; ++c) {
                if (r < nw && c < na)
                  ASSERT_NEAR(out[r * 5 + c], want[r][c], 1e-5 * mag[r][c] + 1e-30)
                      << isa_name(isa) << " " << dtype_name(t) << " n=" << n << " tile " << nw << "x" << na
                      << " at " << r << "," << c;
                else
                  ASSERT_EQ(out[r * 5 + c], -12345.0f) << "tile wrote outside its " << nw << "x" << na;
              }
          }
      }
    }
  }
  std::vector<uint8_t> buf(4096);
  float o[16];
  EXPECT_THROW(vec_dot_tile(DType::Q4_0, 32, buf.data(), 18, buf.data(), 34, 5, 1, o, 4), Error);
  EXPECT_THROW(vec_dot_tile(DType::IQ2_XXS, 256, buf.data(), 66, buf.data(), 292, 1, 1, o, 4), Error);
}

// kernels() is the best detected ISA unless LMHOST_ISA asks for a lower one
// (run this binary with LMHOST_ISA=scalar|avx2|avx512 to check each).
TEST(TensorKernels, KernelsHonourLmhostIsa) {
  const char* env = std::getenv("LMHOST_ISA");
  std::string v = env ? env : "";
  for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  Isa want = detect_isa();
  if (v == "scalar") want = Isa::Scalar;
  if (v == "avx2" && want >= Isa::AVX2) want = Isa::AVX2;
  EXPECT_EQ(kernels().isa, want) << "LMHOST_ISA=" << (env ? env : "(unset)");
  std::printf("  kernels() uses %s\n", isa_name(kernels().isa));
}
