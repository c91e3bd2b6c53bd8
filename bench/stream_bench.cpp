// How close each decode kernel streams to the memory read bandwidth, with
// the machine's noise taken out: a plain read of a weight buffer far larger
// than the caches and the kernels over the same bytes run alternately, round
// after round, on the same threads, so every pass sees the same load from the
// host's other tenants. The figure that matters is each kernel's time per
// byte against the read's in the same round (median over rounds).
//
//   stream_bench [threads=2] [rounds=15] [MiB=256] [K=896]
//
// Two schedules per kernel: "halves" (each thread one contiguous half, the
// longest streams possible) and "chunks" (256 KiB row chunks claimed in turn,
// as Context::forward_one runs a matmul).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ops/decode.h"
#include "ops/thread_pool.h"
#include "tensor/gemv.h"
#include "tensor/kernels.h"
#include "tensor/packed.h"
#include "tensor/types.h"
#include "util/fp16.h"

using namespace lmhost;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Weight rows of type t with random quants and small valid fp16 scales.
std::vector<uint8_t> random_rows(DType t, int64_t K, int64_t rows) {
  std::mt19937 rng(7);
  const size_t rb = row_bytes(t, K);
  std::vector<uint8_t> buf(rb * rows);
  uint32_t* w = reinterpret_cast<uint32_t*>(buf.data());
  for (size_t i = 0; i < buf.size() / 4; ++i) w[i] = rng();
  const uint16_t h = fp32_to_fp16(0.01f);
  const size_t bs = dtype_info(t).type_size;
  for (size_t o = 0; o < buf.size(); o += bs) std::memcpy(&buf[o], &h, 2);  // Q4_0/Q8_0: d first
  return buf;
}

__attribute__((target("avx2"))) uint64_t read_bytes(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  return static_cast<uint64_t>(_mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 3)) + (i < n ? p[i] : 0);
}

struct Pass {
  std::string name;
  std::function<void(int64_t r0, int64_t r1)> run;  // rows [r0, r1)
  int64_t rows;
  size_t row_bytes;
};

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 15;
  const int64_t mib = argc > 3 ? std::atoll(argv[3]) : 256;
  const int64_t K = argc > 4 ? std::atoll(argv[4]) : 896;
  if (threads < 1 || rounds < 1 || mib < 16 || K % 128 != 0) {
    std::fprintf(stderr, "usage: stream_bench [threads>=1] [rounds>=1] [MiB>=16] [K, a multiple of 128]\n");
    return 2;
  }
  ops::ThreadPool pool(threads);
  const int64_t r4 = (mib << 20) / static_cast<int64_t>(row_bytes(DType::Q4_0, K));
  const int64_t r8 = (mib << 20) / static_cast<int64_t>(row_bytes(DType::Q8_0, K));
  const std::vector<uint8_t> w4 = random_rows(DType::Q4_0, K, r4), w8 = random_rows(DType::Q8_0, K, r8);
  std::vector<float> x(K), y(std::max(r4, r8));
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : x) v = nd(rng);
  TensorView v4, v8;  // only what DecodeAct::setup/gemv read
  v4.type = DType::Q4_0, v4.ne[0] = K, v4.ne[1] = r4, v4.data = w4.data(), v4.nbytes = w4.size();
  v8.type = DType::Q8_0, v8.ne[0] = K, v8.ne[1] = r8, v8.data = w8.data(), v8.nbytes = w8.size();
  ops::DecodeAct a4, a8;
  a4.setup(K, {&v4});
  a4.quantize(x.data());
  a8.setup(K, {&v8});
  a8.quantize(x.data());
  std::vector<uint64_t> sink(threads * 8);

  // A plain read of a weight buffer, then the kernel over the same bytes.
  auto read_pass = [&](const char* name, const std::vector<uint8_t>& w, DType t, int64_t rows) {
    const size_t rb = row_bytes(t, K);
    return Pass{name, [&w, rb, &sink](int64_t r0, int64_t r1) { sink[0] += read_bytes(w.data() + r0 * rb, (r1 - r0) * rb); },
                rows, rb};
  };
  std::vector<Pass> passes;
  passes.push_back(read_pass("read (Q4_0 bytes)", w4, DType::Q4_0, r4));
  passes.push_back({"Q4_0 decode gemv", [&](int64_t r0, int64_t r1) { a4.gemv(v4, r0, r1, y.data() + r0); }, r4,
                    row_bytes(DType::Q4_0, K)});
  // The same rows packed 16 to a group (packed.h), where this CPU has the kernels.
  std::vector<float> pd(K / 32);
  std::vector<int32_t> psum(K / 32);
  std::vector<uint8_t> q8(row_bytes(DType::Q8_0, K));
  quantize_row(DType::Q8_0, x.data(), q8.data(), K);
  prepare_packed_act(q8.data(), K, pd.data(), psum.data());
  const PackedAct pact{q8.data(), 0, pd.data(), psum.data(), 1};
  std::vector<uint8_t> w4p, w8p;
  auto packed_passes = [&](const std::vector<uint8_t>& w, std::vector<uint8_t>& wp, DType t, int64_t rows,
                           const char* read_name, const char* name) {
    const DType pt = packed_type(t, kernels());
    if (pt == t) return;
    const int64_t rp = rows / kPackRows * kPackRows;
    const size_t rb = row_bytes(t, K);
    wp.resize(rb * rp);
    pack_x16(t, w.data(), rb, K, rp, wp.data());
    const GemvPackedFn fn = kernels().gemv_packed[static_cast<uint32_t>(pt)];
    passes.push_back(read_pass(read_name, wp, t, rp));
    passes.push_back({name,
                      [&wp, fn, rb, K, &pact, &y](int64_t r0, int64_t r1) {
                        r0 = r0 / kPackRows * kPackRows, r1 = r1 / kPackRows * kPackRows;
                        fn(K, wp.data() + r0 * rb, r1 - r0, pact, y.data() + r0, 0);
                      },
                      rp, rb});
  };
  packed_passes(w4, w4p, DType::Q4_0, r4, "read (Q4_0_X16)", "Q4_0_X16 gemv");
  passes.push_back(read_pass("read (Q8_0 bytes)", w8, DType::Q8_0, r8));
  passes.push_back({"Q8_0 decode", [&](int64_t r0, int64_t r1) { a8.gemv(v8, r0, r1, y.data() + r0); }, r8,
                    row_bytes(DType::Q8_0, K)});
  packed_passes(w8, w8p, DType::Q8_0, r8, "read (Q8_0_X16)", "Q8_0_X16 gemv");

  auto time_pass = [&](const Pass& p, bool chunked) {
    const auto t0 = Clock::now();
    if (chunked) {
      const std::vector<int64_t> c = ops::split_rows(p.rows, 16, (256 << 10) / static_cast<int64_t>(p.row_bytes));
      pool.parallel_for(static_cast<int64_t>(c.size()) - 1, [&](int64_t t, int) { p.run(c[t], c[t + 1]); });
    } else {
      pool.parallel_for(threads, [&](int64_t t, int) { p.run(p.rows * t / threads, p.rows * (t + 1) / threads); });
    }
    return static_cast<double>(p.rows * p.row_bytes) / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
  };

  const ops::ThreadPool::Busy hot(pool);
  for (const Pass& p : passes) time_pass(p, false);  // page in, warm up
  // gbs[pass][schedule] per round
  std::vector<std::vector<std::vector<double>>> gbs(passes.size(), std::vector<std::vector<double>>(2));
  for (int r = 0; r < rounds; ++r)
    for (int s = 0; s < 2; ++s)
      for (size_t i = 0; i < passes.size(); ++i) {
        const size_t j = r % 2 ? passes.size() - 1 - i : i;  // alternate the order
        gbs[j][s].push_back(time_pass(passes[j], s == 1));
      }
  std::printf("%d threads, %d rounds, %lld MiB per buffer, K = %lld (median GB/s; ratio = median per-round ratio to the read of the same bytes, same schedule)\n",
              threads, rounds, static_cast<long long>(mib), static_cast<long long>(K));
  std::printf("%-20s %10s %8s %10s %8s\n", "pass", "halves", "ratio", "chunks", "ratio");
  for (size_t i = 0; i < passes.size(); ++i) {
    const size_t base = i / 2 * 2;  // the read of the same buffer
    std::printf("%-20s", passes[i].name.c_str());
    for (int s = 0; s < 2; ++s) {
      std::vector<double> ratio;
      for (int r = 0; r < rounds; ++r) ratio.push_back(gbs[i][s][r] / gbs[base][s][r]);
      std::printf(" %10.1f %7.0f%%", median(gbs[i][s]), 100.0 * median(ratio));
    }
    std::printf("\n");
  }
  if (sink[0] == 42) std::printf(" \n");
  return 0;
}
