// Golden checks of our block layouts against files written by llama.cpp:
// llama-spm-tiny-{f32,q8_0,q4_0}.gguf hold the same weights, so our
// dequantization of every Q8_0/Q4_0 tensor must sit within that format's
// per-block quantization error of the F32 twin, and vec_dot on real rows
// must match the F32 dot. The Q4_K_M model has no twin: its Q4_K/Q6_K
// tensors must dequantize to sane, per-sub-block-consistent values.
//
// test_tensor links only lmhost_tensor, so this file carries a minimal
// GGUF reader of its own (header, metadata skipping, tensor table).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/types.h"
#include "util/fp16.h"

using namespace lmhost;

namespace {

struct MiniTensor {
  DType type;
  std::vector<int64_t> ne;
  const uint8_t* data;
  int64_t n_elements() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
  }
};

class MiniGguf {
 public:
  explicit MiniGguf(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    bytes_.assign(std::istreambuf_iterator<char>(f), {});
    if (u32() != 0x46554747u) throw std::runtime_error(path + ": not GGUF");
    const uint32_t version = u32();
    if (version < 2) throw std::runtime_error(path + ": old GGUF");
    const uint64_t n_tensors = u64(), n_kv = u64();
    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; ++i) {
      const std::string key = str();
      const uint32_t type = u32();
      if (key == "general.alignment" && type == 4) alignment = u32();
      else skip_value(type);
    }
    struct Info { std::string name; DType type; std::vector<int64_t> ne; uint64_t off; };
    std::vector<Info> infos;
    for (uint64_t i = 0; i < n_tensors; ++i) {
      Info t;
      t.name = str();
      const uint32_t nd = u32();
      for (uint32_t d = 0; d < nd; ++d) t.ne.push_back(static_cast<int64_t>(u64()));
      t.type = static_cast<DType>(u32());
      t.off = u64();
      infos.push_back(t);
    }
    const uint64_t data = (pos_ + alignment - 1) / alignment * alignment;
    for (const Info& t : infos) {
      MiniTensor mt{t.type, t.ne, bytes_.data() + data + t.off};
      const uint64_t end = data + t.off + row_bytes(t.type, mt.ne[0]) * (mt.n_elements() / mt.ne[0]);
      if (end > bytes_.size()) throw std::runtime_error(path + ": tensor " + t.name + " out of bounds");
      tensors[t.name] = mt;
    }
  }
  std::map<std::string, MiniTensor> tensors;

 private:
  template <class T> T get() {
    if (pos_ + sizeof(T) > bytes_.size()) throw std::runtime_error("truncated GGUF");
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  uint32_t u32() { return get<uint32_t>(); }
  uint64_t u64() { return get<uint64_t>(); }
  std::string str() {
    const uint64_t n = u64();
    if (pos_ + n > bytes_.size()) throw std::runtime_error("truncated GGUF string");
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  void skip_value(uint32_t type) {
    static const int kSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) { str(); return; }
    if (type == 9) {
      const uint32_t et = u32();
      const uint64_t n = u64();
      for (uint64_t i = 0; i < n; ++i) skip_value(et);
      return;
    }
    if (type > 12) throw std::runtime_error("bad GGUF value type");
    pos_ += kSize[type];
  }
  std::vector<uint8_t> bytes_;
  size_t pos_ = 0;
};

std::string models_dir() { return std::string(LMHOST_SHARED_DIR) + "/golden/models"; }

#define REQUIRE_FILE(path)                                                                  \
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "golden data not found: " << (path)

std::vector<Isa> all_isas() {
  std::vector<Isa> v{Isa::Scalar};
  if (detect_isa() >= Isa::AVX2) v.push_back(Isa::AVX2);
  if (detect_isa() >= Isa::AVX512) v.push_back(Isa::AVX512);
  return v;
}

std::vector<float> dequant(const Kernels& k, const MiniTensor& t) {
  std::vector<float> out(t.n_elements());
  const int64_t rows = t.n_elements() / t.ne[0];
  const size_t rb = row_bytes(t.type, t.ne[0]);
  for (int64_t r = 0; r < rows; ++r)
    k.dequantize[static_cast<uint32_t>(t.type)](t.data + r * rb, out.data() + r * t.ne[0], t.ne[0]);
  return out;
}

// Compares every quantized tensor of `qfile` with its F32 twin, block by
// block, against the error bound of the quantizer that wrote the file.
void check_against_f32_twin(const std::string& qfile, int* n_checked) {
  const MiniGguf f32(models_dir() + "/llama-spm-tiny-f32.gguf");
  const MiniGguf q(models_dir() + "/" + qfile);
  ASSERT_EQ(f32.tensors.size(), q.tensors.size());
  for (const auto& [name, qt] : q.tensors) {
    const auto it = f32.tensors.find(name);
    ASSERT_NE(it, f32.tensors.end()) << name;
    const MiniTensor& ft = it->second;
    ASSERT_EQ(ft.type, DType::F32) << name;
    ASSERT_EQ(ft.ne, qt.ne) << name;
    if (qt.type != DType::Q8_0 && qt.type != DType::Q4_0) continue;
    ++*n_checked;
    const float* ref = reinterpret_cast<const float*>(ft.data);
    const int64_t n = qt.n_elements();
    for (Isa isa : all_isas()) {
      const std::vector<float> got = dequant(kernels_for(isa), qt);
      const uint8_t* blocks = qt.data;
      const size_t bsz = dtype_info(qt.type).type_size;
      double err2 = 0, ref2 = 0;
      for (int64_t b = 0; b < n / 32; ++b) {
        uint16_t dh;
        std::memcpy(&dh, blocks + b * bsz, 2);
        const double d = std::fabs(fp16_to_fp32(dh));
        for (int j = 0; j < 32; ++j) {
          const int64_t e = b * 32 + j;
          const double err = std::fabs(static_cast<double>(got[e]) - ref[e]);
          err2 += err * err;
          ref2 += static_cast<double>(ref[e]) * ref[e];
          double bound;
          if (qt.type == DType::Q8_0) {
            bound = d * (0.5 + 127.0 / 2048) + 1e-7;  // rounding + fp16 rounding of d
          } else {
            // Q4_0: round to nearest (the top code 16 is clamped to 15: one step) + fp16 of d
            const uint8_t byte = blocks[b * bsz + 2 + (j % 16)];
            const int qv = j < 16 ? (byte & 0xF) : (byte >> 4);
            bound = d * ((qv == 15 ? 1.0 : 0.5) + 8.0 / 2048) + 1e-7;
          }
          ASSERT_LE(err, bound) << qfile << " " << name << " element " << e << " (" << isa_name(isa)
                                << "): got " << got[e] << " want " << ref[e];
        }
      }
      const double rel = std::sqrt(err2 / ref2);
      EXPECT_LT(rel, qt.type == DType::Q8_0 ? 0.01 : 0.15) << name;
    }
  }
}

}  // namespace

TEST(TensorGolden, Q8_0DequantizeMatchesF32Twin) {
  REQUIRE_FILE(models_dir() + "/llama-spm-tiny-q8_0.gguf");
  int n = 0;
  check_against_f32_twin("llama-spm-tiny-q8_0.gguf", &n);
  EXPECT_GT(n, 5);
}

TEST(TensorGolden, Q4_0DequantizeMatchesF32Twin) {
  REQUIRE_FILE(models_dir() + "/llama-spm-tiny-q4_0.gguf");
  int n = 0;
  check_against_f32_twin("llama-spm-tiny-q4_0.gguf", &n);
  EXPECT_GT(n, 5);
}

// vec_dot of real quantized rows with a quantized activation equals the F32
// twin's dot within the weight quantization error (every ISA).
TEST(TensorGolden, VecDotOnRealRowsMatchesF32Twin) {
  REQUIRE_FILE(models_dir() + "/llama-spm-tiny-q4_0.gguf");
  const MiniGguf f32(models_dir() + "/llama-spm-tiny-f32.gguf");
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const char* file : {"llama-spm-tiny-q8_0.gguf", "llama-spm-tiny-q4_0.gguf"}) {
    const MiniGguf q(models_dir() + "/" + file);
    int checked = 0;
    for (const auto& [name, qt] : q.tensors) {
      if (qt.type != DType::Q8_0 && qt.type != DType::Q4_0) continue;
      const MiniTensor& ft = f32.tensors.at(name);
      const int64_t k = qt.ne[0], rows = std::min<int64_t>(qt.n_elements() / k, 64);
      std::vector<float> act(k);
      for (auto& v : act) v = nd(rng);
      const DType vt = vec_dot_type(qt.type);
      std::vector<uint8_t> aq(row_bytes(vt, k));
      quantize_row(vt, act.data(), aq.data(), k);
      std::vector<float> adq(k);
      dequantize_row(vt, aq.data(), adq.data(), k);  // isolate the weight error
      const size_t rb = row_bytes(qt.type, k);
      for (int64_t r = 0; r < rows; ++r) {
        const float* wf = reinterpret_cast<const float*>(ft.data) + r * k;
        double want = 0, bound = 0;
        for (int64_t i = 0; i < k; ++i) {
          want += static_cast<double>(wf[i]) * adq[i];
          bound += std::fabs(adq[i]) * std::fabs(wf[i]);
        }
        // per-element weight error <= one quantization step (~amax/7 for Q4_0)
        bound = bound * (qt.type == DType::Q8_0 ? 0.02 : 0.3) + 1e-5;
        for (Isa isa : all_isas()) {
          const float got = kernels_for(isa).vec_dot[static_cast<uint32_t>(qt.type)](k, qt.data + r * rb, aq.data());
          ASSERT_NEAR(got, want, bound) << file << " " << name << " row " << r << " " << isa_name(isa);
        }
      }
      ++checked;
    }
    EXPECT_GT(checked, 5) << file;
  }
}

// Q4_K / Q6_K (and any other K-quant in the Q4_K_M mix): dequantized values
// are finite, spread like the seeded weights, and consistent across
// sub-blocks (a wrong scale/min unpacking would give sub-blocks wildly
// different ranges). Re-quantizing our dequantization with our quantizer
// must reproduce the values to within that format's error.
TEST(TensorGolden, KQuantsDequantizeSanely) {
  const std::string path = models_dir() + "/llama-spm-small-q4_k_m.gguf";
  REQUIRE_FILE(path);
  const MiniGguf q(path);
  std::map<DType, int> seen;
  for (const auto& [name, qt] : q.tensors) {
    const DType t = qt.type;
    if (dtype_info(t).block_size != 256) continue;
    ++seen[t];
    const std::vector<float> ref = dequant(kernels_for(Isa::Scalar), qt);
    for (Isa isa : all_isas()) {
      if (isa == Isa::Scalar) continue;
      const std::vector<float> got = dequant(kernels_for(isa), qt);
      ASSERT_EQ(got, ref) << name;
    }
    double s = 0, s2 = 0;
    for (float v : ref) {
      ASSERT_TRUE(std::isfinite(v)) << name;
      s += v;
      s2 += static_cast<double>(v) * v;
    }
    const double n = static_cast<double>(ref.size());
    const double mean = s / n, sd = std::sqrt(std::max(0.0, s2 / n - mean * mean));
    ASSERT_GT(sd, 0.0) << name;
    EXPECT_LT(std::fabs(mean), 0.2 * sd + 1e-6) << name;
    // sub-blocks of 32: their spread stays within a factor of the tensor's
    int64_t outliers = 0;
    for (size_t b = 0; b + 32 <= ref.size(); b += 32) {
      double bs = 0, bs2 = 0;
      for (int j = 0; j < 32; ++j) { bs += ref[b + j]; bs2 += static_cast<double>(ref[b + j]) * ref[b + j]; }
      const double bsd = std::sqrt(std::max(0.0, bs2 / 32 - (bs / 32) * (bs / 32)));
      // a scale paired with the wrong min would shift the sub-block's mean
      if (bsd < 0.3 * sd || bsd > 3.0 * sd || std::fabs(bs / 32) > 0.75 * sd) ++outliers;
    }
    EXPECT_LT(outliers, static_cast<int64_t>(ref.size() / 32 / 100 + 1)) << name << " " << dtype_name(t);
    // requantize (one row at a time) and compare
    const int64_t k = qt.ne[0];
    std::vector<uint8_t> rq(row_bytes(t, k));
    std::vector<float> back(k);
    double e2 = 0, r2 = 0;
    const int64_t rows = std::min<int64_t>(static_cast<int64_t>(ref.size()) / k, 32);
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(t, ref.data() + r * k, rq.data(), k);
      dequantize_row(t, rq.data(), back.data(), k);
      for (int64_t i = 0; i < k; ++i) {
        const double e = back[i] - ref[r * k + i];
        e2 += e * e;
        r2 += static_cast<double>(ref[r * k + i]) * ref[r * k + i];
      }
    }
    const double rel = std::sqrt(e2 / r2);
    const double limit = t == DType::Q6_K ? 0.02 : t == DType::Q5_K ? 0.04 : t == DType::Q4_K ? 0.08 : 0.3;
    EXPECT_LT(rel, limit) << name << " " << dtype_name(t);
  }
  for (const auto& [t, c] : seen) std::printf("  %d %s tensors checked\n", c, dtype_name(t));
  EXPECT_GT(seen[DType::Q4_K], 0);
  EXPECT_GT(seen[DType::Q6_K], 0);
}
