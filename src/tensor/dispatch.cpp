// Run-time kernel selection: CPUID-based ISA detection, one table per ISA
// (scalar entries where an ISA has no kernel of its own), LMHOST_ISA
// override, and the checked convenience wrappers.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::AVX2: return "avx2";
    case Isa::AVX512: return "avx512";
  }
  return "unknown";
}

Isa detect_isa() {
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's CPU model checks both CPUID and the OS-enabled state (XCR0).
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512vnni");
  if (avx512) return Isa::AVX512;
  if (avx2) return Isa::AVX2;
#endif
  return Isa::Scalar;
}

namespace detail {
void fill_gemm_avx512(Kernels& k);  // src/tensor/gemm_avx512.cpp
void fill_gemv_avx512(Kernels& k);  // src/tensor/gemv_avx512.cpp: decode gemv beyond Q4_0
void fill_f32_avx512(Kernels& k);   // src/tensor/f16_avx512.cpp: float element-wise (swiglu)
void fill_packed_avx512(Kernels& k);  // src/tensor/packed_avx512.cpp: weights packed at load
}  // namespace detail

namespace {

// The table for `isa`, using only kernels this CPU can execute: asking for
// AVX-512 on an AVX2 machine gives AVX2 entries (never an illegal instruction).
Kernels build(Isa isa) {
  Kernels k{};
  k.isa = isa;
  const int cpu = static_cast<int>(detect_isa());
  detail::fill_scalar(k);
  if (isa >= Isa::AVX2 && cpu >= static_cast<int>(Isa::AVX2)) detail::fill_avx2(k);
  if (isa >= Isa::AVX512 && cpu >= static_cast<int>(Isa::AVX512)) detail::fill_avx512(k);
  if (isa >= Isa::AVX512 && cpu >= static_cast<int>(Isa::AVX512)) detail::fill_gemm_avx512(k);
  if (isa >= Isa::AVX512 && cpu >= static_cast<int>(Isa::AVX512)) detail::fill_gemv_avx512(k);
  if (isa >= Isa::AVX512 && cpu >= static_cast<int>(Isa::AVX512)) detail::fill_f32_avx512(k);
  if (isa >= Isa::AVX512 && cpu >= static_cast<int>(Isa::AVX512)) detail::fill_packed_avx512(k);
  return k;
}

Isa selected_isa() {
  const Isa best = detect_isa();
  const char* env = std::getenv("LMHOST_ISA");
  if (!env || !*env) return best;
  std::string v(env);
  for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  Isa want;
  if (v == "scalar") want = Isa::Scalar;
  else if (v == "avx2") want = Isa::AVX2;
  else if (v == "avx512") want = Isa::AVX512;
  else throw Error("LMHOST_ISA=" + v + " is not valid; use scalar, avx2 or avx512");
  if (static_cast<int>(want) > static_cast<int>(best)) {
    std::fprintf(stderr, "lmhost: LMHOST_ISA=%s is not supported by this CPU; using %s\n", env, isa_name(best));
    return best;
  }
  return want;
}

}  // namespace

const Kernels& kernels_for(Isa isa) {
  static const Kernels scalar = build(Isa::Scalar);
  static const Kernels avx2 = build(Isa::AVX2);
  static const Kernels avx512 = build(Isa::AVX512);
  switch (isa) {
    case Isa::AVX2: return avx2;
    case Isa::AVX512: return avx512;
    default: return scalar;
  }
}

const Kernels& kernels() {
  static const Kernels& k = kernels_for(selected_isa());
  return k;
}

void prepare_gemv_act(const void* q8_row, int64_t n, int8_t* qs, float* d, int32_t* corr) {
  const blocks::BlockQ8_0* y = static_cast<const blocks::BlockQ8_0*>(q8_row);
  const int64_t nb = n / blocks::QK;
  const int64_t ng = gemv_act_lanes(n) / 16;  // groups of 8 blocks, the last maybe of 4
  for (int64_t g = 0; g < ng; ++g) {
    const blocks::BlockQ8_0* b = y + 8 * g;
    const int have = static_cast<int>(std::min<int64_t>(8, nb - 8 * g));  // 8, or 4 in a final half group
    int8_t* o = qs + 256 * g;
    for (int k = 0; k < have; ++k) {
      const int half = k / 4, kk = k % 4;
      std::memcpy(o + 128 * half + 16 * kk, b[k].qs, 16);
      std::memcpy(o + 128 * half + 64 + 16 * kk, b[k].qs + 16, 16);
    }
    for (int lane = 0; lane < 16; ++lane) {
      const int q = lane / 4, slot = lane % 4;
      const int blk = slot < 2 ? q : 4 + q;
      if (blk >= have) {
        d[16 * g + lane] = 0.0f;
        corr[16 * g + lane] = 0;
        continue;
      }
      d[16 * g + lane] = fp16_to_fp32(b[blk].d);
      int sum = 0;
      for (int j = 0; j < blocks::QK; ++j) sum += b[blk].qs[j];
      corr[16 * g + lane] = slot % 2 == 0 ? 8 * sum : 0;
    }
  }
}

void prepare_gemm_act(DType act_type, const void* rows, size_t stride, int64_t n, int64_t T, int64_t g0, int64_t g1,
                      uint8_t* q, float* d, int32_t* sums) {
  if (act_type != DType::Q8_0 && act_type != DType::Q8_K)
    throw Error(std::string("gemm: activations of type ") + dtype_name(act_type) + " are not supported");
  const bool k = act_type == DType::Q8_K;
  const int64_t nb = n / blocks::QK;                // 32-element blocks
  const int64_t ns = k ? n / blocks::QK_K : nb;     // scales per row
  const uint8_t* base = static_cast<const uint8_t*>(rows);
  for (int64_t g = g0; g < g1; ++g) {
    for (int t = 0; t < kGemmTokens; ++t) {
      const int64_t tok = g * kGemmTokens + t;
      const uint8_t* row = tok < T ? base + tok * stride : nullptr;
      for (int64_t b = 0; b < nb; ++b) {
        uint32_t* dst = reinterpret_cast<uint32_t*>(q + (g * nb + b) * 512) + t;
        const int8_t* qs = nullptr;
        if (row) {
          qs = k ? reinterpret_cast<const blocks::BlockQ8_K*>(row)[b / 8].qs + 32 * (b % 8)
                 : reinterpret_cast<const blocks::BlockQ8_0*>(row)[b].qs;
        }
        for (int j = 0; j < 8; ++j) {
          uint32_t v = 0;
          if (qs) std::memcpy(&v, qs + 4 * j, 4);
          dst[16 * j] = v ^ 0x80808080u;  // +128 per byte
        }
      }
      for (int64_t s = 0; s < ns; ++s) {
        float& dd = d[(g * ns + s) * kGemmTokens + t];
        if (!row) {
          dd = 0.0f;
        } else if (k) {
          dd = reinterpret_cast<const blocks::BlockQ8_K*>(row)[s].d;
        } else {
          dd = fp16_to_fp32(reinterpret_cast<const blocks::BlockQ8_0*>(row)[s].d);
        }
        if (!k) continue;
        int32_t* sm = sums + (g * ns + s) * 64 + t;
        for (int p = 0; p < 4; ++p) {
          uint32_t v = 0;
          if (row) {
            const int16_t* bs = reinterpret_cast<const blocks::BlockQ8_K*>(row)[s].bsums + 4 * p;
            const uint16_t lo = static_cast<uint16_t>(bs[0] + bs[1]), hi = static_cast<uint16_t>(bs[2] + bs[3]);
            v = lo | (static_cast<uint32_t>(hi) << 16);
          }
          sm[16 * p] = static_cast<int32_t>(v);
        }
      }
    }
  }
}

DType vec_dot_type(DType w) {
  switch (w) {
    case DType::F32: case DType::F16: case DType::BF16: return DType::F32;
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::Q4_0_X16: case DType::Q8_0_X16:
    case DType::Q5_0_X16:
      return DType::Q8_0;
    case DType::Q4_1: case DType::Q5_1: return DType::Q8_1;
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::Q6_K_X16: case DType::Q4_K_X16: case DType::Q5_K_X16:
      return DType::Q8_K;
    default:
      throw Error(std::string("tensor type ") + dtype_name(w) + " cannot be used in a matrix product");
  }
}

namespace {
uint32_t checked_id(DType t, int64_t n, const char* what) {
  const uint32_t id = static_cast<uint32_t>(t);
  const DTypeInfo& info = dtype_info(t);
  if (info.block_size == 0) throw Error("unknown tensor type id " + std::to_string(id));
  if (n < 0 || n % info.block_size != 0)
    throw Error(std::string(what) + ": row of " + std::to_string(n) + " elements is not a multiple of the " +
                info.name + " block size " + std::to_string(info.block_size));
  return id;
}
}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const uint32_t id = checked_id(t, n, "dequantize");
  DequantizeFn f = kernels().dequantize[id];
  if (!f) throw Error(std::string("tensor type ") + dtype_name(t) + " is not supported (cannot dequantize it)");
  f(src, dst, n);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const uint32_t id = checked_id(t, n, "quantize");
  QuantizeFn f = kernels().quantize[id];
  if (!f) throw Error(std::string("quantizing to ") + dtype_name(t) + " is not supported");
  f(src, dst, n);
}

float vec_dot(DType w, int64_t n, const void* w_row, const void* act_row) {
  const uint32_t id = checked_id(w, n, "vec_dot");
  VecDotFn f = kernels().vec_dot[id];
  if (!f) throw Error(std::string("tensor type ") + dtype_name(w) + " is not supported in matrix products");
  return f(n, w_row, act_row);
}

void vec_dot_tile(DType w, int64_t n, const void* w_rows, size_t w_stride, const void* act_rows, size_t act_stride,
                  int nw, int na, float* out, size_t out_stride) {
  const uint32_t id = checked_id(w, n, "vec_dot_tile");
  if (nw < 1 || nw > kTileMax || na < 1 || na > kTileMax)
    throw Error("vec_dot_tile: tile of " + std::to_string(nw) + "x" + std::to_string(na) + " rows is out of range 1.." +
                std::to_string(kTileMax));
  VecDotTileFn f = kernels().vec_dot_tile[id];
  if (!f) throw Error(std::string("tensor type ") + dtype_name(w) + " is not supported in matrix products");
  f(n, w_rows, w_stride, act_rows, act_stride, nw, na, out, out_stride);
}

}  // namespace lmhost
