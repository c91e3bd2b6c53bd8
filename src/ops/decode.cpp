#include "ops/decode.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "tensor/packed.h"
#include "tensor/types.h"
#include "util/error.h"

namespace lmhost::ops {

namespace {
// Decode gemv for Q8_0 weights: off by default (measured: the row kernel
// streams from DRAM at least as fast); LMHOST_GEMV_Q8=1 turns it on.
bool use_q8_gemv() {
  static const bool on = [] {
    const char* e = std::getenv("LMHOST_GEMV_Q8");
    return e && *e == '1';
  }();
  return on;
}
}  // namespace

void DecodeAct::setup(int64_t K, std::initializer_list<const TensorView*> weights) {
  K_ = K;
  need_q8_0_ = need_gemv_ = need_q8n_ = need_packed_ = need_q8_k_ = need_q8_1_ = false;
  const Kernels& kr = kernels();
  for (const TensorView* W : weights) {
    const uint32_t wt = static_cast<uint32_t>(W->type);
    const DTypeInfo& wi = dtype_info(W->type);
    if (wt >= kDTypeCount || wi.block_size == 0)
      throw Error("matmul: tensor '" + W->name + "' has an unknown type id " + std::to_string(wt));
    if (W->ne[0] != K) throw Error("matmul: tensor '" + W->name + "' does not match the input width");
    if (!kr.vec_dot[wt] && !kr.gemv_packed[wt])
      throw Error("matmul: tensor '" + W->name + "' has type " + dtype_name(W->type) +
                  ", which lmhost cannot compute with yet");
    const DType qt = vec_dot_type(W->type);
    const DTypeInfo& qi = dtype_info(qt);
    if (K % wi.block_size != 0 || K % qi.block_size != 0)
      throw Error("matmul: tensor '" + W->name + "' has rows of " + std::to_string(K) +
                  " elements, not a multiple of the " + dtype_name(W->type) + " block size");
    if (qt == DType::Q8_0) {
      need_q8_0_ = true;
      if (kr.gemv[wt]) need_gemv_ = true;
      if (kr.gemv_packed[wt]) need_packed_ = true;
      if (W->type == DType::Q8_0 && use_q8_gemv() && gemv_q8_0_kernel()) need_q8n_ = true;
    } else if (qt == DType::Q8_K) {
      need_q8_k_ = true;
    } else if (qt == DType::Q8_1) {
      need_q8_1_ = true;
    }
  }
  auto grow = [](auto& v, size_t n) {
    if (v.size() < n) v.resize(n);
  };
  if (need_q8_0_) grow(q8_0_, row_bytes(DType::Q8_0, K));
  if (need_q8_k_) grow(q8_k_, row_bytes(DType::Q8_K, K));
  if (need_q8_1_) grow(q8_1_, row_bytes(DType::Q8_1, K));
  if (need_gemv_) {
    grow(gqs_, static_cast<size_t>(K + 256));
    grow(gd_, static_cast<size_t>(gemv_act_lanes(K)));
    grow(gcorr_, static_cast<size_t>(gemv_act_lanes(K)));
  }
  if (need_packed_) {
    grow(pd_, static_cast<size_t>(K / 32));
    grow(psum_, static_cast<size_t>(K / 32));
  }
  if (need_q8n_) {
    grow(nqs_, static_cast<size_t>(K));
    grow(nd_, static_cast<size_t>(gemv_q8_lanes(K)));
    grow(ncorr_, static_cast<size_t>(gemv_q8_lanes(K)));
  }
}

void DecodeAct::quantize_range(const float* x, int64_t e0, int64_t e1) {
  if (e1 <= e0) return;
  const Kernels& kr = kernels();
  const int64_t n = e1 - e0;
  if (need_q8_0_) {
    uint8_t* q = q8_0_.data() + row_bytes(DType::Q8_0, e0);
    kr.quantize[static_cast<uint32_t>(DType::Q8_0)](x + e0, q, n);
    // e0 is a multiple of 256: whole groups of 8 blocks (a half group only at the end of the row)
    if (need_gemv_)
      prepare_gemv_act(q, n, gqs_.data() + e0, gd_.data() + gemv_act_lanes(e0), gcorr_.data() + gemv_act_lanes(e0));
    if (need_packed_) prepare_packed_act(q, n, pd_.data() + e0 / 32, psum_.data() + e0 / 32);
    if (need_q8n_)
      prepare_gemv_act_q8(q, n, nqs_.data() + e0, nd_.data() + gemv_q8_lanes(e0), ncorr_.data() + gemv_q8_lanes(e0));
  }
  if (need_q8_k_)
    kr.quantize[static_cast<uint32_t>(DType::Q8_K)](x + e0, q8_k_.data() + row_bytes(DType::Q8_K, e0), n);
  if (need_q8_1_)
    kr.quantize[static_cast<uint32_t>(DType::Q8_1)](x + e0, q8_1_.data() + row_bytes(DType::Q8_1, e0), n);
}

void DecodeAct::gemv(const TensorView& W, int64_t r0, int64_t r1, float* y) const {
  if (r1 <= r0) return;
  const Kernels& kr = kernels();
  const uint32_t wt = static_cast<uint32_t>(W.type);
  const size_t ws = W.row_stride();
  const uint8_t* w = static_cast<const uint8_t*>(W.data) + r0 * ws;
  const DType qt = vec_dot_type(W.type);
  if (kr.gemv_packed[wt]) {
    if (r0 % kPackRows != 0 || ((r1 - r0) % kPackRows != 0))
      throw Error("matmul: rows " + std::to_string(r0) + ".." + std::to_string(r1) + " of '" + W.name +
                  "' split a packed group of " + std::to_string(kPackRows));
    const PackedAct act = qt == DType::Q8_0 ? PackedAct{q8_0_.data(), 0, pd_.data(), psum_.data(), 1}
                                            : PackedAct{q8_k_.data(), 0, nullptr, nullptr, 1};
    kr.gemv_packed[wt](K_, w, r1 - r0, act, y, 0);
    return;
  }
  if (qt == DType::Q8_0) {
    if (need_gemv_ && kr.gemv[wt]) {
      const GemvAct act{q8_0_.data(), gqs_.data(), gd_.data(), gcorr_.data()};
      kr.gemv[wt](K_, w, ws, r1 - r0, act, y);
      return;
    }
    if (need_q8n_ && W.type == DType::Q8_0) {
      const GemvActQ8 act{q8_0_.data(), nqs_.data(), nd_.data(), ncorr_.data()};
      gemv_q8_0_kernel()(K_, w, ws, r1 - r0, act, y);
      return;
    }
  }
  const void* a = qt == DType::Q8_0   ? static_cast<const void*>(q8_0_.data())
                  : qt == DType::Q8_K ? static_cast<const void*>(q8_k_.data())
                  : qt == DType::Q8_1 ? static_cast<const void*>(q8_1_.data())
                                      : static_cast<const void*>(x_);
  const VecDotFn dot = kr.vec_dot[wt];
  for (int64_t r = 0; r < r1 - r0; ++r) y[r] = dot(K_, w + r * ws, a);
}

std::vector<int64_t> split_rows(int64_t n, int64_t align, int64_t want) {
  std::vector<int64_t> b{0};
  if (n <= 0) {
    b.push_back(0);
    return b;
  }
  align = std::max<int64_t>(1, align);
  const int64_t step = std::max<int64_t>(align, (want + align / 2) / align * align);
  for (int64_t r = step; r < n; r += step) b.push_back(r);
  b.push_back(n);
  return b;
}

}  // namespace lmhost::ops
