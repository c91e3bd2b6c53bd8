// ops::DecodeAct (the decode path's prepared activation and row-range gemv)
// against the scalar vec_dot of the same quantized activation, for every
// weight type the decoder uses, with the input quantized in kAlign ranges
// (as the forward pass does from several threads) and rows computed in
// uneven ranges; plus split_rows and the errors for unusable weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ops/decode.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"
#include "unit/test_random.h"

using namespace lmhost;

namespace {

using lmhost::testing::randn;

struct W {
  std::vector<uint8_t> bytes;
  TensorView view;
};

W make(DType t, int64_t K, int64_t N, uint32_t seed) {
  W w;
  const auto f = randn(K * N, seed);
  const size_t rb = row_bytes(t, K);
  w.bytes.resize(rb * N);
  for (int64_t r = 0; r < N; ++r) {
    if (t == DType::F32) std::memcpy(w.bytes.data() + r * rb, f.data() + r * K, rb);
    else quantize_row(t, f.data() + r * K, w.bytes.data() + r * rb, K);
  }
  w.view.name = "w";
  w.view.type = t;
  w.view.n_dims = 2;
  w.view.ne[0] = K;
  w.view.ne[1] = N;
  w.view.data = w.bytes.data();
  w.view.nbytes = w.bytes.size();
  return w;
}

}  // namespace

TEST(DecodeAct, MatchesScalarVecDotForEveryDecoderType) {
  const Kernels& ref = kernels_for(Isa::Scalar);
  uint32_t seed = 1;
  for (DType t : {DType::F32, DType::F16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K,
                  DType::Q6_K}) {
    for (int64_t K : {256, 896, 2048}) {
      if (dtype_info(t).block_size == 256 && K % 256 != 0) continue;
      const int64_t N = 37;
      const W w = make(t, K, N, seed++);
      const W w2 = make(DType::Q4_0, K, 5, seed++);  // a second weight type sharing the input
      const auto x = randn(K, seed++);
      ops::DecodeAct act;
      act.setup(K, {&w.view, &w2.view});
      act.bind(x.data());
      for (int64_t e0 = K; e0 > 0;) {  // ranges in reverse order, as threads may finish them
        const int64_t b = (e0 - 1) / ops::DecodeAct::kAlign * ops::DecodeAct::kAlign;
        act.quantize_range(x.data(), b, e0);
        e0 = b;
      }
      const DType qt = vec_dot_type(t);
      std::vector<uint8_t> aq(row_bytes(qt, K));
      const void* a = x.data();
      if (qt != DType::F32) {
        quantize_row(qt, x.data(), aq.data(), K);
        a = aq.data();
      }
      std::vector<float> y(N + 1, -777.0f);
      act.gemv(w.view, 0, 7, y.data());
      act.gemv(w.view, 7, 8, y.data() + 7);
      act.gemv(w.view, 8, N, y.data() + 8);
      EXPECT_EQ(y[N], -777.0f);
      for (int64_t r = 0; r < N; ++r) {
        const float want = ref.vec_dot[static_cast<uint32_t>(t)](K, w.bytes.data() + r * w.view.row_stride(), a);
        EXPECT_NEAR(y[r], want, 2e-4f * (1.0f + std::fabs(want)) + 1e-5f * static_cast<float>(K))
            << dtype_name(t) << " K=" << K << " row " << r;
      }
    }
  }
}

TEST(DecodeAct, RejectsUnusableWeights) {
  const W w = make(DType::Q4_0, 256, 4, 3);
  ops::DecodeAct act;
  EXPECT_THROW(act.setup(512, {&w.view}), Error);  // width mismatch
  TensorView bad = w.view;
  bad.type = static_cast<DType>(kDTypeCount + 3);
  EXPECT_THROW(act.setup(256, {&bad}), Error);
}

TEST(SplitRows, AlignedChunksCoverTheRange) {
  const auto b = ops::split_rows(4864, 256, 300);
  ASSERT_GE(b.size(), 2u);
  EXPECT_EQ(b.front(), 0);
  EXPECT_EQ(b.back(), 4864);
  for (size_t i = 1; i + 1 < b.size(); ++i) {
    EXPECT_EQ(b[i] % 256, 0);
    EXPECT_GT(b[i], b[i - 1]);
  }
  EXPECT_EQ(ops::split_rows(100, 64, 1).size(), 3u);  // [0, 64, 100]
  EXPECT_EQ(ops::split_rows(10, 8, 1000), (std::vector<int64_t>{0, 10}));
}
