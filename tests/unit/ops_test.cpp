// Ops against naive references.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "ops/ops.h"
#include "ops/thread_pool.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"
#include "unit/test_random.h"

using namespace lmhost;
using namespace lmhost::ops;

namespace {

using lmhost::testing::randn;

struct Weight {
  std::vector<uint8_t> bytes;
  TensorView view;
  std::vector<float> dequant;  // what the weight really holds
};

Weight make_weight(DType t, int64_t K, int64_t N, uint32_t seed) {
  Weight w;
  auto f = randn(K * N, seed, 0.5f);
  const size_t rb = row_bytes(t, K);
  w.bytes.resize(rb * N);
  w.dequant.resize(K * N);
  for (int64_t r = 0; r < N; ++r) {
    uint8_t* dst = w.bytes.data() + r * rb;
    const float* src = f.data() + r * K;
    if (t == DType::F32) {
      std::memcpy(dst, src, K * 4);
    } else if (t == DType::F16) {
      for (int64_t k = 0; k < K; ++k) reinterpret_cast<uint16_t*>(dst)[k] = fp32_to_fp16(src[k]);
    } else if (t == DType::BF16) {
      for (int64_t k = 0; k < K; ++k) reinterpret_cast<uint16_t*>(dst)[k] = fp32_to_bf16(src[k]);
    } else {
      quantize_row(t, src, dst, K);
    }
    dequantize_row(t, dst, w.dequant.data() + r * K, K);
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

// Naive: activations converted to vec_dot_type and back, then an exact dot.
std::vector<float> naive_matmul(const Weight& w, const std::vector<float>& X, int64_t T) {
  const int64_t K = w.view.ne[0], N = w.view.ne[1];
  const DType qt = vec_dot_type(w.view.type);
  std::vector<float> xr(X);
  if (qt != DType::F32) {
    std::vector<uint8_t> q(row_bytes(qt, K));
    for (int64_t t = 0; t < T; ++t) {
      quantize_row(qt, X.data() + t * K, q.data(), K);
      dequantize_row(qt, q.data(), xr.data() + t * K, K);
    }
  }
  std::vector<float> Y(T * N);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(w.dequant[n * K + k]) * xr[t * K + k];
      Y[t * N + n] = static_cast<float>(s);
    }
  return Y;
}

}  // namespace

TEST(ThreadPool, RunsEveryTaskOnce) {
  for (int nt : {1, 2, 3, 4}) {
    ThreadPool pool(nt);
    EXPECT_EQ(pool.n_threads(), nt);
    for (int64_t n : {0, 1, 2, 7, 100, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<bool> bad_thread{false};
      pool.parallel_for(n, [&](int64_t i, int th) {
        hits[i].fetch_add(1);
        if (th < 0 || th >= nt) bad_thread = true;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "nt=" << nt << " n=" << n << " i=" << i;
      EXPECT_FALSE(bad_thread.load());
    }
  }
}

TEST(ThreadPool, ManyBackToBackJobs) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 2000; ++rep) pool.parallel_for(5, [&](int64_t i, int) { sum += i; });
  EXPECT_EQ(sum.load(), 2000 * 10);
}

TEST(ThreadPool, PropagatesExceptions) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(100, [&](int64_t i, int) { if (i == 37) throw Error("boom"); }), Error);
  // Still usable afterwards.
  std::atomic<int> n{0};
  pool.parallel_for(10, [&](int64_t, int) { ++n; });
  EXPECT_EQ(n.load(), 10);
}

// Each thread takes its own run of consecutive tasks front to back (one
// forward stream per thread over consecutive row chunks); what it takes from
// another's run comes from that run's back.
TEST(ThreadPool, EachThreadWalksItsOwnRunInOrder) {
  for (int nt : {2, 3, 4}) {
    ThreadPool pool(nt);
    for (int64_t n : {2, 5, 64, 301}) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::vector<int64_t>> seen(nt);
        std::mutex mu;
        pool.parallel_for(n, [&](int64_t i, int th) {
          std::lock_guard<std::mutex> lk(mu);
          seen[th].push_back(i);
        });
        int64_t total = 0;
        for (int t = 0; t < nt; ++t) {
          const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
          std::vector<int64_t> own, stolen;
          for (int64_t i : seen[t]) (i >= begin && i < end ? own : stolen).push_back(i);
          for (size_t k = 0; k < own.size(); ++k)
            ASSERT_EQ(own[k], begin + static_cast<int64_t>(k)) << "nt=" << nt << " n=" << n << " thread " << t;
          total += static_cast<int64_t>(seen[t].size());
          for (size_t k = 1; k < stolen.size(); ++k) {
            // from one other run: descending; the next run only once that one is empty
            const bool same_run = (stolen[k] * nt / n) == (stolen[k - 1] * nt / n);
            if (same_run) {
              EXPECT_LT(stolen[k], stolen[k - 1]) << "nt=" << nt << " n=" << n << " thread " << t;
            }
          }
        }
        ASSERT_EQ(total, n);
      }
    }
  }
}

// A thread stuck in one task loses the rest of its run: the caller takes it
// from the back. Task 39 (the last of the worker's run) releases the stuck
// task 20 (its first), so without stealing this waits for the 10 s timeout.
TEST(ThreadPool, AStuckThreadsRemainingTasksAreTakenByTheOthers) {
  ThreadPool pool(2);
  std::atomic<bool> released{false};
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(40, [&](int64_t i, int) {
    if (i == 20) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!released.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    }
    if (i == 39) released = true;
  });
  EXPECT_TRUE(released.load());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << "task 20 waited for its timeout";
}

TEST(ThreadPool, DefaultIsPhysicalCores) {
  ThreadPool pool;
  EXPECT_GE(pool.n_threads(), 1);
  EXPECT_EQ(pool.n_threads(), ThreadPool::physical_cores());
}

class MatmulTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulTest, MatchesNaive) {
  const DType t = GetParam();
  const int64_t K = (t == DType::Q4_K || t == DType::Q6_K || t == DType::Q5_K) ? 512 : 96;
  const int64_t N = 70;
  const Weight w = make_weight(t, K, N, 11);
  for (int64_t T : {1, 3, 37, 130}) {
    const auto X = randn(T * K, 100 + T);
    const auto ref = naive_matmul(w, X, T);
    for (int nt : {1, 2, 3}) {
      ThreadPool pool(nt);
      std::vector<float> Y(T * N, -12345.0f);
      matmul(w.view, X.data(), Y.data(), T, pool);
      for (int64_t i = 0; i < T * N; ++i) {
        const float tol = 1e-4f * std::sqrt(static_cast<float>(K)) + 1e-4f * std::fabs(ref[i]);
        ASSERT_NEAR(Y[i], ref[i], tol) << dtype_name(t) << " T=" << T << " nt=" << nt << " i=" << i;
      }
    }
  }
}

TEST_P(MatmulTest, SameResultForAnyThreadCount) {
  const DType t = GetParam();
  const int64_t K = 256, N = 33, T = 20;
  const Weight w = make_weight(t, K, N, 5);
  const auto X = randn(T * K, 6);
  ThreadPool p1(1), p3(3);
  std::vector<float> a(T * N), b(T * N);
  matmul(w.view, X.data(), a.data(), T, p1);
  matmul(w.view, X.data(), b.data(), T, p3);
  EXPECT_EQ(a, b);
  // A batch row equals the same row computed alone.
  std::vector<float> one(N);
  matmul(w.view, X.data() + 7 * K, one.data(), 1, p3);
  // (tile kernels may sum in another order: equal up to rounding)
  for (int64_t n = 0; n < N; ++n) EXPECT_NEAR(one[n], a[7 * N + n], 1e-5f * (1.0f + std::fabs(one[n])));
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulTest,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0,
                                           DType::Q4_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Matmul, RejectsBadRowLength) {
  ThreadPool pool(1);
  std::vector<uint8_t> bytes(1000);
  TensorView v;
  v.name = "blk.0.attn_q.weight";
  v.type = DType::Q8_0;
  v.ne[0] = 40;  // not a multiple of 32
  v.ne[1] = 2;
  v.data = bytes.data();
  std::vector<float> x(40), y(2);
  try {
    matmul(v, x.data(), y.data(), 1, pool);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
  }
}

TEST(Norms, RmsNorm) {
  const auto x = randn(77, 1), w = randn(77, 2);
  std::vector<float> y(77);
  rmsnorm(x.data(), w.data(), y.data(), 77, 1e-5f);
  double ss = 0;
  for (float v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / 77 + 1e-5);
  for (int i = 0; i < 77; ++i) EXPECT_NEAR(y[i], x[i] * s * w[i], 1e-5);
  std::vector<float> z(x);
  rmsnorm(z.data(), nullptr, z.data(), 77, 1e-5f);
  for (int i = 0; i < 77; ++i) EXPECT_NEAR(z[i], x[i] * s, 1e-5);
}

TEST(Norms, LayerNorm) {
  auto x = randn(50, 3);
  for (auto& v : x) v += 3.0f;
  const auto w = randn(50, 4), b = randn(50, 5);
  std::vector<float> y(50);
  layernorm(x.data(), w.data(), b.data(), y.data(), 50, 1e-12f);
  double m = 0, var = 0;
  for (float v : x) m += v;
  m /= 50;
  for (float v : x) var += (v - m) * (v - m);
  var /= 50;
  for (int i = 0; i < 50; ++i) EXPECT_NEAR(y[i], (x[i] - m) / std::sqrt(var + 1e-12) * w[i] + b[i], 1e-4);
}

TEST(Activations, SoftmaxSiluSwigluGeluAdd) {
  auto x = randn(40, 7, 5.0f);
  auto s = x;
  softmax(s.data(), 40);
  double mx = -1e30, sum = 0;
  for (float v : x) mx = std::max<double>(mx, v);
  for (float v : x) sum += std::exp(v - mx);
  for (int i = 0; i < 40; ++i) EXPECT_NEAR(s[i], std::exp(x[i] - mx) / sum, 1e-6);

  std::vector<float> big = {1000.0f, 1000.0f};  // no overflow
  softmax(big.data(), 2);
  EXPECT_FLOAT_EQ(big[0], 0.5f);

  auto g = randn(40, 8), u = randn(40, 9);
  std::vector<float> o(40);
  swiglu(g.data(), u.data(), o.data(), 40);
  auto si = g;
  silu(si.data(), 40);
  for (int i = 0; i < 40; ++i) {
    const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i])));
    EXPECT_NEAR(si[i], ref, 1e-6);
    EXPECT_NEAR(o[i], ref * u[i], 1e-5);
  }
  auto ge = x;
  gelu(ge.data(), 40);
  for (int i = 0; i < 40; ++i) {
    const double v = x[i];
    EXPECT_NEAR(ge[i], 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-4);
  }
  auto a = x;
  add(a.data(), u.data(), 40);
  for (int i = 0; i < 40; ++i) EXPECT_FLOAT_EQ(a[i], x[i] + u[i]);
}

namespace {
// Reference rope: pair (a, b) turned by angle pos * scale * base^(-2i/n_rot) / ff[i].
std::vector<float> naive_rope(std::vector<float> x, int n_heads, int hd, int n_rot, bool neox, int pos, double base,
                              double scale, const std::vector<float>& ff) {
  for (int h = 0; h < n_heads; ++h) {
    float* v = x.data() + h * hd;
    for (int i = 0; i < n_rot / 2; ++i) {
      double th = pos * scale * std::pow(base, -2.0 * i / n_rot);
      if (!ff.empty()) th /= ff[i];
      const int ia = neox ? i : 2 * i, ib = neox ? i + n_rot / 2 : 2 * i + 1;
      const double a = v[ia], b = v[ib];
      v[ia] = static_cast<float>(a * std::cos(th) - b * std::sin(th));
      v[ib] = static_cast<float>(a * std::sin(th) + b * std::cos(th));
    }
  }
  return x;
}
}  // namespace

TEST(Rope, NormalAndNeoxMatchNaive) {
  const int nh = 3, hd = 16;
  for (bool neox : {false, true}) {
    for (int n_rot : {16, 8}) {
      for (int pos : {0, 1, 17, 500}) {
        RopeConfig cfg;
        cfg.style = neox ? RopeStyle::NeoX : RopeStyle::Normal;
        cfg.n_rot = n_rot;
        cfg.freq_base = neox ? 1000000.0f : 10000.0f;
        cfg.freq_scale = 0.5f;
        Rope rope(cfg);
        auto x = randn(nh * hd, pos + n_rot);
        const auto ref = naive_rope(x, nh, hd, n_rot, neox, pos, cfg.freq_base, 0.5, {});
        rope.apply(x.data(), nh, hd, pos);
        for (int i = 0; i < nh * hd; ++i) EXPECT_NEAR(x[i], ref[i], 1e-4) << "neox=" << neox << " pos=" << pos;
      }
    }
  }
}

TEST(Rope, PositionZeroIsIdentityAndNormsKept) {
  RopeConfig cfg;
  cfg.n_rot = 8;
  Rope rope(cfg);
  auto x = randn(8, 1);
  auto y = x;
  rope.apply(y.data(), 1, 8, 0);
  EXPECT_EQ(x, y);
  rope.apply(y.data(), 1, 8, 123);
  double nx = 0, ny = 0;
  for (int i = 0; i < 8; ++i) nx += x[i] * x[i], ny += y[i] * y[i];
  EXPECT_NEAR(nx, ny, 1e-4);
}

TEST(Rope, FreqFactorsAndLlama3) {
  const int n_rot = 32;
  const auto ff = llama3_freq_factors(n_rot, 500000.0f, 8.0f, 1.0f, 4.0f, 8192.0f);
  ASSERT_EQ(ff.size(), 16u);
  EXPECT_FLOAT_EQ(ff[0], 1.0f);    // highest frequency kept
  EXPECT_FLOAT_EQ(ff[15], 8.0f);   // lowest frequency scaled by the factor
  for (size_t i = 1; i < ff.size(); ++i) EXPECT_GE(ff[i], ff[i - 1]);
  RopeConfig cfg;
  cfg.n_rot = n_rot;
  cfg.freq_base = 500000.0f;
  cfg.freq_factors = ff;
  Rope rope(cfg);
  auto x = randn(n_rot, 3);
  const auto ref = naive_rope(x, 1, n_rot, n_rot, false, 77, 500000.0, 1.0, ff);
  rope.apply(x.data(), 1, n_rot, 77);
  for (int i = 0; i < n_rot; ++i) EXPECT_NEAR(x[i], ref[i], 1e-4);
  cfg.freq_factors.resize(3);
  EXPECT_THROW(Rope{cfg}, Error);
}

namespace {
void run_attention_test(DType kv_type) {
  const int n_head = 4, n_kv = 2, hd = 16, n_ctx = 40, T = 9;
  const int64_t row = n_kv * hd;
  auto Kf = randn(n_ctx * row, 1), Vf = randn(n_ctx * row, 2);
  std::vector<uint16_t> K16(Kf.size()), V16(Vf.size());
  if (kv_type == DType::F16) {
    for (size_t i = 0; i < Kf.size(); ++i) {
      K16[i] = fp32_to_fp16(Kf[i]);
      V16[i] = fp32_to_fp16(Vf[i]);
      Kf[i] = fp16_to_fp32(K16[i]);
      Vf[i] = fp16_to_fp32(V16[i]);
    }
  }
  KVView kv;
  kv.type = kv_type;
  kv.k = kv_type == DType::F16 ? static_cast<const void*>(K16.data()) : Kf.data();
  kv.v = kv_type == DType::F16 ? static_cast<const void*>(V16.data()) : Vf.data();
  kv.k_row_stride = kv.v_row_stride = row;
  const auto Q = randn(T * n_head * hd, 3);
  std::vector<int32_t> pos(T);
  for (int t = 0; t < T; ++t) pos[t] = 20 + t;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ThreadPool pool(2);
  std::vector<float> O(T * n_head * hd);
  attention(Q.data(), O.data(), T, pos.data(), n_head, n_kv, hd, hd, kv, scale, pool);
  const double tol = kv_type == DType::F16 ? 3e-3 : 1e-5;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < n_head; ++h) {
      const int g = h / (n_head / n_kv);
      const float* q = Q.data() + (t * n_head + h) * hd;
      std::vector<double> s(pos[t] + 1);
      double mx = -1e30;
      for (int j = 0; j <= pos[t]; ++j) {
        double d = 0;
        for (int k = 0; k < hd; ++k) d += q[k] * Kf[j * row + g * hd + k];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& v : s) sum += (v = std::exp(v - mx));
      for (int k = 0; k < hd; ++k) {
        double o = 0;
        for (int j = 0; j <= pos[t]; ++j) o += s[j] / sum * Vf[j * row + g * hd + k];
        ASSERT_NEAR(O[(t * n_head + h) * hd + k], o, tol) << "t=" << t << " h=" << h << " k=" << k;
      }
    }
}
}  // namespace

TEST(Attention, CausalGqaF32Cache) { run_attention_test(DType::F32); }
TEST(Attention, CausalGqaF16Cache) { run_attention_test(DType::F16); }

TEST(Attention, RejectsBadHeadGrouping) {
  ThreadPool pool(1);
  KVView kv;
  std::vector<float> q(48), o(48);
  int32_t pos = 0;
  EXPECT_THROW(attention(q.data(), o.data(), 1, &pos, 3, 2, 16, 16, kv, 1.0f, pool), Error);
}

TEST(Matmul, MultiEqualsSeparateCalls) {
  const int64_t K = 256, T = 21;
  const Weight a = make_weight(DType::Q4_0, K, 40, 1), b = make_weight(DType::Q8_0, K, 17, 2),
               c = make_weight(DType::F32, K, 9, 3), d = make_weight(DType::Q4_K, K, 33, 4);
  const auto X = randn(T * K, 5);
  ThreadPool pool(3);
  std::vector<float> ya(T * 40), yb(T * 17), yc(T * 9), yd(T * 33);
  const MatmulJob jobs[4] = {{&a.view, ya.data()}, {&b.view, yb.data()}, {&c.view, yc.data()}, {&d.view, yd.data()}};
  matmul_multi(jobs, X.data(), T, pool);
  for (const auto* w : {&a, &b, &c, &d}) {
    std::vector<float> ref(T * w->view.ne[1]);
    matmul(w->view, X.data(), ref.data(), T, pool);
    const auto& got = w == &a ? ya : w == &b ? yb : w == &c ? yc : yd;
    EXPECT_EQ(got, ref) << dtype_name(w->view.type);
  }
}
