// vec_dot throughput per weight type and ISA: one quantized activation row
// (K = 4096) against every row of a weight matrix, reported as GB/s of
// weight bytes read. Two working sets:
//   hot : 8 rows, in L1/L2 (pure compute: the kernel's headroom)
//   l3  : a 4096 x 4096 matrix (fits this machine's L3 for the 4-5 bit types)
//   dram: enough rows for >= 256 MiB of weights (decode-like, memory bound)
// Plus activation quantization (Q8_0/Q8_1/Q8_K) of a 4096-float row.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tensor/gemv.h"
#include "tensor/kernels.h"
#include "tensor/types.h"
#include "util/fp16.h"

using namespace lmhost;

namespace {

constexpr int64_t K = 4096;

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                        DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                        DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Random block bytes with small fp16 scales at the right offsets.
std::vector<uint8_t> random_matrix(DType t, int64_t rows, std::mt19937& rng) {
  const size_t rb = row_bytes(t, K);
  std::vector<uint8_t> buf(rb * rows);
  const DTypeInfo& info = dtype_info(t);
  if (info.block_size == 1) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> row(K);
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : row) v = nd(rng);
      quantize_row(t, row.data(), buf.data() + r * rb, K);
    }
    return buf;
  }
  uint32_t* w = reinterpret_cast<uint32_t*>(buf.data());
  for (size_t i = 0; i < buf.size() / 4; ++i) w[i] = rng();
  std::vector<size_t> offs;
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: offs = {0}; break;
    case DType::Q2_K: offs = {80, 82}; break;
    case DType::Q3_K: offs = {108}; break;
    case DType::Q6_K: offs = {208}; break;
    default: offs = {0, 2}; break;
  }
  const uint16_t h = fp32_to_fp16(0.01f);
  for (size_t o = 0; o < buf.size(); o += info.type_size)
    for (size_t f : offs) std::memcpy(&buf[o + f], &h, 2);
  return buf;
}

void bm_vec_dot(benchmark::State& st, DType t, Isa isa, int64_t rows, int nw) {
  std::mt19937 rng(1);
  const std::vector<uint8_t> w = random_matrix(t, rows, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> act(K);
  for (auto& v : act) v = nd(rng);
  const DType vt = vec_dot_type(t);
  std::vector<uint8_t> aq(row_bytes(vt, K));
  quantize_row(vt, act.data(), aq.data(), K);
  const Kernels& k = kernels_for(isa);
  const VecDotFn f = k.vec_dot[static_cast<uint32_t>(t)];
  const VecDotTileFn tile = k.vec_dot_tile[static_cast<uint32_t>(t)];
  const size_t rb = row_bytes(t, K);
  std::vector<float> out(rows + 4);
  std::vector<int8_t> gq(K + 256);
  std::vector<float> gd(gemv_act_lanes(K));
  std::vector<int32_t> gc(gemv_act_lanes(K));
  const GemvFn gemv = k.gemv[static_cast<uint32_t>(t)];
  const GemvQ8Fn gemv_q8 = t == DType::Q8_0 ? gemv_q8_0_kernel(isa) : nullptr;  // gemv.h layout
  std::vector<int8_t> q8s(K);
  std::vector<float> q8d(gemv_q8_lanes(K));
  std::vector<int32_t> q8c(gemv_q8_lanes(K));
  if (gemv_q8) prepare_gemv_act_q8(aq.data(), K, q8s.data(), q8d.data(), q8c.data());
  const GemvActQ8 q8act{aq.data(), q8s.data(), q8d.data(), q8c.data()};
  if (nw == 0 && !gemv && !gemv_q8) {
    st.SkipWithError("no gemv kernel");
    return;
  }
  if (gemv) prepare_gemv_act(aq.data(), K, gq.data(), gd.data(), gc.data());
  const GemvAct gact{aq.data(), gq.data(), gd.data(), gc.data()};
  for (auto _ : st) {
    if (nw == 0 && gemv_q8) {
      gemv_q8(K, w.data(), rb, rows, q8act, out.data());
    } else if (nw == 0) {
      gemv(K, w.data(), rb, rows, gact, out.data());
    } else if (nw == 1) {
      for (int64_t r = 0; r < rows; ++r) out[r] = f(K, w.data() + r * rb, aq.data());
    } else {  // decode as nw weight rows x 1 activation tiles
      for (int64_t r = 0; r < rows; r += nw)
        tile(K, w.data() + r * rb, rb, aq.data(), 0, static_cast<int>(std::min<int64_t>(nw, rows - r)), 1, out.data() + r, 1);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(w.size()));
}

// A 256-row weight block (L2-resident) times 4 activation rows, as a matmul
// for prompt processing runs it: 4x4 tiles vs one vec_dot per (row, act).
// Reported as weight-row x activation-row dot products per second.
void bm_matmul4(benchmark::State& st, DType t, Isa isa, bool tiled) {
  constexpr int64_t rows = 256, nact = 4;
  std::mt19937 rng(3);
  const std::vector<uint8_t> w = random_matrix(t, rows, rng);
  const DType vt = vec_dot_type(t);
  const size_t ws = row_bytes(t, K), as = row_bytes(vt, K);
  std::vector<uint8_t> aq(as * nact);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> act(K);
  for (int c = 0; c < nact; ++c) {
    for (auto& v : act) v = nd(rng);
    quantize_row(vt, act.data(), aq.data() + c * as, K);
  }
  const Kernels& k = kernels_for(isa);
  const VecDotFn dot = k.vec_dot[static_cast<uint32_t>(t)];
  const VecDotTileFn tile = k.vec_dot_tile[static_cast<uint32_t>(t)];
  std::vector<float> out(rows * nact);
  for (auto _ : st) {
    for (int64_t r = 0; r < rows; r += 4) {
      if (tiled) {
        tile(K, w.data() + r * ws, ws, aq.data(), as, 4, 4, out.data() + r * nact, nact);
      } else {
        for (int rr = 0; rr < 4; ++rr)
          for (int c = 0; c < nact; ++c) out[(r + rr) * nact + c] = dot(K, w.data() + (r + rr) * ws, aq.data() + c * as);
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * rows * nact);
}

void bm_quantize(benchmark::State& st, DType t, Isa isa) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(K);
  for (auto& v : x) v = nd(rng);
  std::vector<uint8_t> q(row_bytes(t, K));
  const QuantizeFn f = kernels_for(isa).quantize[static_cast<uint32_t>(t)];
  for (auto _ : st) {
    f(x.data(), q.data(), K);
    benchmark::DoNotOptimize(q.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * K * 4);
}

const bool registered = [] {
  std::vector<Isa> isas{Isa::Scalar};
  if (detect_isa() >= Isa::AVX2) isas.push_back(Isa::AVX2);
  if (detect_isa() >= Isa::AVX512) isas.push_back(Isa::AVX512);
  for (DType t : kTypes) {
    const int64_t dram_rows = (256ll << 20) / static_cast<int64_t>(row_bytes(t, K)) + 1;
    for (Isa isa : isas) {
      const std::string base = std::string("vec_dot/") + dtype_name(t) + "/" + isa_name(isa);
      for (int nw : {1, 4, 0}) {
        if (nw == 0 && !kernels_for(isa).gemv[static_cast<uint32_t>(t)] &&
            !(t == DType::Q8_0 && gemv_q8_0_kernel(isa)))
          continue;
        const std::string b = nw == 1 ? base : std::string(nw == 4 ? "gemv4x1/" : "gemv/") + dtype_name(t) + "/" + isa_name(isa);
        benchmark::RegisterBenchmark((b + "/hot").c_str(), bm_vec_dot, t, isa, 8, nw)->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark((b + "/l3").c_str(), bm_vec_dot, t, isa, K, nw)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark((b + "/dram").c_str(), bm_vec_dot, t, isa, dram_rows, nw)
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  for (DType t : kTypes)
    for (Isa isa : isas) {
      const std::string base = std::string("matmul4/") + dtype_name(t) + "/" + isa_name(isa);
      benchmark::RegisterBenchmark((base + "/vec_dot").c_str(), bm_matmul4, t, isa, false)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark((base + "/tile4x4").c_str(), bm_matmul4, t, isa, true)->Unit(benchmark::kMicrosecond);
    }
  for (DType t : {DType::Q8_0, DType::Q8_1, DType::Q8_K})
    for (Isa isa : isas)
      benchmark::RegisterBenchmark((std::string("quantize/") + dtype_name(t) + "/" + isa_name(isa)).c_str(),
                                   bm_quantize, t, isa);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
