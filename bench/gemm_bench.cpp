// Prompt-matmul kernels, old vs new in one process, one thread:
// Kernels::vec_dot_tile (4x4 tiles, as ops::matmul_multi ran them before the
// gemm kernels) against Kernels::gemm (16-token groups x 16-row panels),
// on qwen2.5-0.5b / llama-3.2-1b matrix shapes with T prompt tokens.
//
//   gemm_bench [T=512] [reps=5]
//
// Prints the best-of-reps thread CPU time of each, the multiply-accumulates per second
// and the ratio; the two are run alternately so machine load hits both.
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/types.h"

using namespace lmhost;

namespace {

// This thread's CPU time: time spent descheduled (the machine may be shared) does not count.
double now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Case {
  DType wt;
  int64_t K, N;
};

}  // namespace

int main(int argc, char** argv) {
  const int64_t T = argc > 1 ? std::atoll(argv[1]) : 512;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  const Kernels& kr = kernels();
  std::printf("isa %s, T = %lld, best of %d, 1 thread\n", isa_name(kr.isa), static_cast<long long>(T), reps);
  std::printf("%-6s %6s %6s %12s %12s %10s %10s %7s\n", "type", "K", "N", "tile ms", "gemm ms", "tile GMAC", "gemm GMAC",
              "ratio");
  const Case cases[] = {{DType::Q4_0, 896, 4864}, {DType::Q4_0, 4864, 896}, {DType::Q4_0, 2048, 2048},
                        {DType::Q8_0, 896, 4864}, {DType::Q8_0, 4864, 896}, {DType::Q8_0, 2048, 2048},
                        {DType::Q5_0, 896, 4864}, {DType::Q4_K, 2048, 8192}, {DType::Q4_K, 2048, 2048},
                        {DType::Q6_K, 8192, 2048}, {DType::Q6_K, 2048, 2048}};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& c : cases) {
    const uint32_t wt = static_cast<uint32_t>(c.wt);
    const GemmFn gemm = kr.gemm[wt];
    const VecDotTileFn tile = kr.vec_dot_tile[wt];
    const DType qt = vec_dot_type(c.wt);
    const size_t wrow = row_bytes(c.wt, c.K), qrow = row_bytes(qt, c.K);
    std::vector<uint8_t> w(wrow * c.N), a(qrow * T);
    std::vector<float> x(c.K);
    for (int64_t r = 0; r < c.N; ++r) {
      for (auto& v : x) v = nd(rng);
      kernels_for(Isa::Scalar).quantize[wt](x.data(), w.data() + r * wrow, c.K);
    }
    for (int64_t t = 0; t < T; ++t) {
      for (auto& v : x) v = nd(rng);
      quantize_row(qt, x.data(), a.data() + t * qrow, c.K);
    }
    std::vector<float> y(c.N * T);
    auto run_tile = [&] {
      // ops::matmul_multi's tile loop: token blocks of 64, 16 tokens (L1) per pass, 4x4 calls.
      float out[kTileMax * kTileMax];
      const int64_t tl = std::clamp<int64_t>(static_cast<int64_t>(16384 / qrow), 1, 16);
      for (int64_t tb = 0; tb < T; tb += 64)
        for (int64_t r0 = 0; r0 < c.N; r0 += 256)
          for (int64_t t0 = tb; t0 < std::min(T, tb + 64); t0 += tl) {
            const int64_t t1 = std::min({T, tb + 64, t0 + tl});
            for (int64_t r = r0; r < std::min(c.N, r0 + 256); r += kTileMax) {
              const int nw = static_cast<int>(std::min<int64_t>(kTileMax, c.N - r));
              for (int64_t ta = t0; ta < t1; ta += kTileMax) {
                const int na = static_cast<int>(std::min<int64_t>(kTileMax, t1 - ta));
                tile(c.K, w.data() + r * wrow, wrow, a.data() + ta * qrow, qrow, nw, na, out, kTileMax);
                for (int i = 0; i < nw; ++i)
                  for (int j = 0; j < na; ++j) y[(ta + j) * c.N + r + i] = out[i * kTileMax + j];
              }
            }
          }
    };
    std::vector<uint8_t> gq;
    std::vector<float> gd;
    std::vector<int32_t> gs;
    auto run_gemm = [&] {
      const int64_t G = gemm_groups(T);
      gq.resize(G * c.K * 16);
      gd.resize(G * c.K / 2);
      gs.resize(G * c.K / 4);
      prepare_gemm_act(qt, a.data(), qrow, c.K, T, 0, G, gq.data(), gd.data(), gs.data());
      const GemmAct act{gq.data(), gd.data(), gs.data(), c.K, T};
      gemm(w.data(), wrow, c.N, act, 0, G, y.data(), c.N);
    };
    double bt = 1e9, bg = 1e9;
    for (int i = 0; i < reps; ++i) {
      double t0 = now();
      run_tile();
      bt = std::min(bt, now() - t0);
      if (gemm) {
        t0 = now();
        run_gemm();
        bg = std::min(bg, now() - t0);
      }
    }
    const double macs = static_cast<double>(c.K) * c.N * T;
    std::printf("%-6s %6lld %6lld %12.2f %12.2f %10.1f %10.1f %6.2fx\n", dtype_name(c.wt), static_cast<long long>(c.K),
                static_cast<long long>(c.N), bt * 1e3, gemm ? bg * 1e3 : 0.0, macs / bt * 1e-9,
                gemm ? macs / bg * 1e-9 : 0.0, gemm ? bt / bg : 0.0);
  }
  return 0;
}
