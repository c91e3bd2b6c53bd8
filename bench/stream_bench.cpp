// How close each decode kernel streams to the memory read bandwidth, with
// the machine's noise taken out: a plain read of a weight buffer far larger
// than the caches and the kernels over the same bytes run alternately, round
// after round, on the same threads, so every pass sees the same load from the
// host's other tenants. The figure that matters is each kernel's time per
// byte against the read's in the same round (median over rounds).
//
//   stream_bench [threads=2] [rounds=15] [MiB=256] [K=896] [TYPES, e.g. Q4_0,Q5_K]
//
// Every weight type with a decode kernel: Q4_0, Q5_0 and Q8_0, and with K a
// multiple of 256 also Q4_K, Q5_K and Q6_K; each on the file's layout and,
// where this CPU packs it, in its packed layout (tensor/packed.h).
//
// Three schedules per kernel: "halves" (each thread one contiguous half, the
// longest streams possible), "in order" (the same halves cut into 256 KiB
// row chunks, one call each) and "chunks" (256 KiB row chunks claimed in turn,
// as Context::forward_one runs a matmul).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
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

// Weight rows of type t with random quants and small valid fp16 scales
// (Q4_K/Q5_K: d and dmin first; Q6_K: d last; the 32-element types: d first).
std::vector<uint8_t> random_rows(DType t, int64_t K, int64_t rows) {
  std::mt19937 rng(7);
  const size_t rb = row_bytes(t, K);
  std::vector<uint8_t> buf(rb * rows);
  uint32_t* w = reinterpret_cast<uint32_t*>(buf.data());
  for (size_t i = 0; i < buf.size() / 4; ++i) w[i] = rng();
  const uint16_t h = fp32_to_fp16(0.01f);
  const size_t bs = dtype_info(t).type_size;
  const std::vector<size_t> at = t == DType::Q6_K                       ? std::vector<size_t>{bs - 2}
                                 : t == DType::Q4_K || t == DType::Q5_K ? std::vector<size_t>{0, 2}
                                                                        : std::vector<size_t>{0};
  for (size_t o = 0; o < buf.size(); o += bs)
    for (size_t f : at) std::memcpy(&buf[o + f], &h, 2);
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
    std::fprintf(stderr, "usage: stream_bench [threads>=1] [rounds>=1] [MiB>=16] [K, a multiple of 128]\n"
                         "(the K-quant types run where K is a multiple of 256)\n");
    return 2;
  }
  ops::ThreadPool pool(threads);
  std::vector<float> x(K);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : x) v = nd(rng);
  std::vector<uint64_t> sink(threads * 8);

  // Per weight type: a plain read of its buffer, the decode path on the
  // file's layout, then (where this CPU packs the type, packed.h) a read of
  // the packed copy and the packed kernel over it.
  struct Buffers {
    DType t;
    int64_t rows;
    std::vector<uint8_t> w, wp;
    TensorView v;  // only what DecodeAct::setup/gemv read
    ops::DecodeAct act;
    std::vector<uint8_t> q8;  // the packed kernel's activation row (Q8_0 or Q8_K)
    std::vector<float> pd;
    std::vector<int32_t> psum;
    PackedAct pact;
  };
  std::vector<std::unique_ptr<Buffers>> bufs;
  std::vector<float> y;
  const std::string only = argc > 5 ? argv[5] : "";  // e.g. "Q4_0,Q5_K"
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    if (K % dtype_info(t).block_size != 0) continue;  // K-quants: K a multiple of 256
    if (!only.empty() && ("," + only + ",").find("," + std::string(dtype_name(t)) + ",") == std::string::npos) continue;
    auto b = std::make_unique<Buffers>();
    b->t = t;
    b->rows = (mib << 20) / static_cast<int64_t>(row_bytes(t, K)) / kPackRows * kPackRows;
    b->w = random_rows(t, K, b->rows);
    b->v.type = t, b->v.ne[0] = K, b->v.ne[1] = b->rows, b->v.data = b->w.data(), b->v.nbytes = b->w.size();
    b->act.setup(K, {&b->v});
    b->act.quantize(x.data());
    const DType at = vec_dot_type(t);
    b->q8.resize(row_bytes(at, K));
    quantize_row(at, x.data(), b->q8.data(), K);
    b->pd.resize(K / 32);
    b->psum.resize(K / 32);
    if (at == DType::Q8_0) prepare_packed_act(b->q8.data(), K, b->pd.data(), b->psum.data());
    b->pact = PackedAct{b->q8.data(), 0, at == DType::Q8_0 ? b->pd.data() : nullptr,
                        at == DType::Q8_0 ? b->psum.data() : nullptr, 1};
    y.resize(std::max<size_t>(y.size(), b->rows));
    bufs.push_back(std::move(b));
  }

  // A plain read of a weight buffer, then the kernel over the same bytes.
  auto read_pass = [&](std::string name, const std::vector<uint8_t>& w, size_t rb, int64_t rows) {
    return Pass{std::move(name),
                [&w, rb, &sink](int64_t r0, int64_t r1) { sink[0] += read_bytes(w.data() + r0 * rb, (r1 - r0) * rb); },
                rows, rb};
  };
  std::vector<Pass> passes;
  for (auto& bp : bufs) {
    Buffers& b = *bp;
    const std::string n = dtype_name(b.t);
    const size_t rb = row_bytes(b.t, K);
    passes.push_back(read_pass("read (" + n + ")", b.w, rb, b.rows));
    passes.push_back({n + " file layout", [&b, &y](int64_t r0, int64_t r1) { b.act.gemv(b.v, r0, r1, y.data() + r0); },
                      b.rows, rb});
    const DType pt = packed_type(b.t, kernels());
    if (pt == b.t) continue;
    b.wp.resize(b.w.size());
    pack_x16(b.t, b.w.data(), rb, K, b.rows, b.wp.data());
    const GemvPackedFn fn = kernels().gemv_packed[static_cast<uint32_t>(pt)];
    passes.push_back(read_pass("read (" + std::string(dtype_name(pt)) + ")", b.wp, rb, b.rows));
    passes.push_back({std::string(dtype_name(pt)) + " packed",
                      [&b, fn, rb, K, &y](int64_t r0, int64_t r1) {
                        r0 = r0 / kPackRows * kPackRows, r1 = r1 / kPackRows * kPackRows;
                        fn(K, b.wp.data() + r0 * rb, r1 - r0, b.pact, y.data() + r0, 0);
                      },
                      b.rows, rb});
  }

  constexpr int kSchedules = 3;
  auto time_pass = [&](const Pass& p, int schedule) {
    const auto t0 = Clock::now();
    if (schedule > 0) {
      const std::vector<int64_t> c = ops::split_rows(p.rows, 16, (256 << 10) / static_cast<int64_t>(p.row_bytes));
      const int64_t n = static_cast<int64_t>(c.size()) - 1;
      if (schedule == 1) {
        pool.parallel_for(n, [&](int64_t t, int) { p.run(c[t], c[t + 1]); });
      } else {  // each thread its own run of consecutive chunks, in order
        pool.parallel_for(threads, [&](int64_t t, int) {
          for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) p.run(c[i], c[i + 1]);
        });
      }
    } else {
      pool.parallel_for(threads, [&](int64_t t, int) { p.run(p.rows * t / threads, p.rows * (t + 1) / threads); });
    }
    return static_cast<double>(p.rows * p.row_bytes) / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
  };

  const ops::ThreadPool::Busy hot(pool);
  for (const Pass& p : passes) time_pass(p, 0);  // page in, warm up
  // gbs[pass][schedule] per round
  std::vector<std::vector<std::vector<double>>> gbs(passes.size(), std::vector<std::vector<double>>(kSchedules));
  for (int r = 0; r < rounds; ++r)
    for (int s = 0; s < kSchedules; ++s)
      for (size_t i = 0; i < passes.size(); ++i) {
        const size_t j = r % 2 ? passes.size() - 1 - i : i;  // alternate the order
        gbs[j][s].push_back(time_pass(passes[j], s));
      }
  std::printf("%d threads, %d rounds, %lld MiB per buffer, K = %lld (median GB/s; ratio = median per-round ratio to the read of the same bytes, same schedule)\n",
              threads, rounds, static_cast<long long>(mib), static_cast<long long>(K));
  std::printf("%-20s %10s %8s %10s %8s %10s %8s\n", "pass", "halves", "ratio", "chunks", "ratio", "in order", "ratio");
  for (size_t i = 0; i < passes.size(); ++i) {
    size_t base = i;  // the read of the same buffer
    while (passes[base].name.rfind("read (", 0) != 0) --base;
    std::printf("%-20s", passes[i].name.c_str());
    for (int s = 0; s < kSchedules; ++s) {
      std::vector<double> ratio;
      for (int r = 0; r < rounds; ++r) ratio.push_back(gbs[i][s][r] / gbs[base][s][r]);
      std::printf(" %10.1f %7.0f%%", median(gbs[i][s]), 100.0 * median(ratio));
    }
    std::printf("\n");
  }
  if (sink[0] == 42) std::printf(" \n");
  return 0;
}
