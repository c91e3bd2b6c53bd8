#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "tensor/encoder_kernels.h"
#include "tensor/kernels.h"
#include "tensor/packed.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost::ops {

namespace {

const float* fp16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = fp16_to_fp32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

inline float round_f16(float x) { return fp16_table()[fp32_to_fp16(x)]; }

}  // namespace

void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n) {
  const float* t = fp16_table();
  for (int64_t i = 0; i < n; ++i) dst[i] = t[src[i]];
}

void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

// ---------------------------------------------------------------- matmul

namespace {

struct PreparedJob {
  const TensorView* W;
  float* Y;
  VecDotFn dot;
  VecDotTileFn tile_fn;  // null: row kernel only
  GemvFn gemv;           // decode (T == 1) fast path, or null
  GemmFn gemm;           // prompt (T >= 2) fast path for Q8_0 activations, or null
  GemvPackedFn packed;   // packed weights (tensor/packed.h), any T: tokens x 16-row groups
  int64_t g_chunk = 0;    // gemm: token groups per task
  const uint8_t* act;
  size_t qrow, wrow;
  int64_t K, N, rows, n_chunks, n_tasks;
};

}  // namespace

void matmul_multi(std::span<const MatmulJob> jobs, const float* X, int64_t T, ThreadPool& pool) {
  if (T <= 0 || jobs.empty()) return;
  const Kernels& kr = kernels();
  const int64_t K = jobs[0].W->ne[0];
  // Activations converted once per distinct vec_dot type.
  thread_local std::vector<uint8_t> qbufs[4];
  DType qtypes[4];
  int n_q = 0;
  std::vector<PreparedJob> prep;
  prep.reserve(jobs.size());
  for (const MatmulJob& job : jobs) {
    const TensorView& W = *job.W;
    const uint32_t wt = static_cast<uint32_t>(W.type);
    const DTypeInfo& wi = dtype_info(W.type);
    if (wt >= kDTypeCount || wi.block_size == 0)
      throw Error("matmul: tensor '" + W.name + "' has an unknown type id " + std::to_string(wt));
    if (W.ne[0] != K) throw Error("matmul: tensor '" + W.name + "' does not match the input width");
    const VecDotFn dot = kr.vec_dot[wt];
    if (!dot && !kr.gemv_packed[wt])
      throw Error("matmul: tensor '" + W.name + "' has type " + dtype_name(W.type) +
                  ", which lmhost cannot compute with yet");
    const DType qt = vec_dot_type(W.type);
    const DTypeInfo& qi = dtype_info(qt);
    if (K % wi.block_size != 0 || qi.block_size == 0 || K % qi.block_size != 0)
      throw Error("matmul: tensor '" + W.name + "' has rows of " + std::to_string(K) +
                  " elements, not a multiple of the " + dtype_name(W.type) + " block size");
    PreparedJob pj{};
    pj.W = &W;
    pj.Y = job.Y;
    pj.dot = dot;
    pj.tile_fn = T >= 2 ? kr.vec_dot_tile[wt] : nullptr;  // decode: the row kernel is faster
    pj.gemv = T == 1 && qt == DType::Q8_0 ? kr.gemv[wt] : nullptr;
    // Below ~8 tokens a 16-token group is mostly padding: the 4x4 tiles win.
    pj.gemm = T >= 8 && (qt == DType::Q8_0 || qt == DType::Q8_K) ? kr.gemm[wt] : nullptr;
    pj.packed = kr.gemv_packed[wt];
    if (!dot && !pj.gemm && !pj.packed)
      throw Error("matmul: tensor '" + W.name + "' has type " + dtype_name(W.type) + " and no kernel for " +
                  std::to_string(T) + " tokens");
    if (pj.packed && W.n_rows() % kPackRows != 0)
      throw Error("matmul: packed tensor '" + W.name + "' has rows that are not whole groups");
    pj.K = K;
    pj.N = W.n_rows();
    pj.qrow = row_bytes(qt, K);
    pj.wrow = W.row_stride();
    if (qt == DType::F32) {
      pj.act = reinterpret_cast<const uint8_t*>(X);
    } else {
      int qi_ = 0;
      while (qi_ < n_q && qtypes[qi_] != qt) ++qi_;
      if (qi_ == n_q) {
        if (n_q == 4) throw Error("matmul: too many activation types in one call");
        const QuantizeFn quant = kr.quantize[static_cast<uint32_t>(qt)];
        if (!quant) throw Error(std::string("matmul: no quantizer for activation type ") + dtype_name(qt));
        std::vector<uint8_t>& buf = qbufs[n_q];
        if (buf.size() < pj.qrow * T) buf.resize(pj.qrow * T);
        uint8_t* q = buf.data();
        const size_t qrow = pj.qrow;
        if (T >= 8) {
          pool.parallel_for(T, [&](int64_t t, int) { quant(X + t * K, q + t * qrow, K); });
        } else {
          for (int64_t t = 0; t < T; ++t) quant(X + t * K, q + t * qrow, K);
        }
        qtypes[n_q++] = qt;
      }
      pj.act = qbufs[qi_].data();
    }
    prep.push_back(pj);
  }
  // Decode: the Q8_0 activation's block scales prepared once for the gemv kernels.
  thread_local std::vector<int8_t> gemv_qs;
  thread_local std::vector<float> gemv_d;
  thread_local std::vector<int32_t> gemv_corr;
  GemvAct gact{};
  for (const PreparedJob& pj : prep) {
    if (!pj.gemv) continue;
    const size_t lanes = static_cast<size_t>(gemv_act_lanes(K));
    if (gemv_qs.size() < static_cast<size_t>(K + 256)) gemv_qs.resize(K + 256);
    if (gemv_d.size() < lanes) {
      gemv_d.resize(lanes);
      gemv_corr.resize(lanes);
    }
    prepare_gemv_act(pj.act, K, gemv_qs.data(), gemv_d.data(), gemv_corr.data());
    gact = {pj.act, gemv_qs.data(), gemv_d.data(), gemv_corr.data()};
    break;
  }

  // Packed weights: every token's block scales and quant sums, once.
  thread_local std::vector<float> packed_d;
  thread_local std::vector<int32_t> packed_sum;
  PackedAct pact{};  // Q8_0 activations (Q8_K ones need no preparation)
  for (const PreparedJob& pj : prep) {
    if (!pj.packed || vec_dot_type(pj.W->type) != DType::Q8_0) continue;
    const int64_t nb = K / 32;
    if (packed_d.size() < static_cast<size_t>(nb * T)) {
      packed_d.resize(nb * T);
      packed_sum.resize(nb * T);
    }
    for (int64_t t = 0; t < T; ++t)
      prepare_packed_act(pj.act + t * pj.qrow, K, packed_d.data() + t * nb, packed_sum.data() + t * nb);
    pact = {pj.act, pj.qrow, packed_d.data(), packed_sum.data(), T};
    break;
  }

  // Prompt: the activations transposed once into token groups for the gemm
  // kernels (one layout per activation type: Q8_0 and Q8_K).
  thread_local std::vector<uint8_t> gemm_q[2];
  thread_local std::vector<float> gemm_d[2];
  thread_local std::vector<int32_t> gemm_s[2];
  GemmAct gemm_act[2] = {};
  const int64_t n_groups = gemm_groups(T);
  for (const PreparedJob& pj : prep) {
    if (!pj.gemm) continue;
    const DType at = vec_dot_type(pj.W->type);
    const int ai = at == DType::Q8_K ? 1 : 0;
    if (gemm_act[ai].q) continue;
    if (gemm_q[ai].size() < static_cast<size_t>(n_groups * K * 16)) gemm_q[ai].resize(n_groups * K * 16);
    if (gemm_d[ai].size() < static_cast<size_t>(n_groups * K / 2)) gemm_d[ai].resize(n_groups * K / 2);
    if (ai == 1 && gemm_s[ai].size() < static_cast<size_t>(n_groups * K / 4)) gemm_s[ai].resize(n_groups * K / 4);
    const uint8_t* rows = pj.act;
    const size_t qrow = pj.qrow;
    uint8_t* gq = gemm_q[ai].data();
    float* gd = gemm_d[ai].data();
    int32_t* gs = ai == 1 ? gemm_s[ai].data() : nullptr;
    pool.parallel_for(n_groups, [&](int64_t g, int) { prepare_gemm_act(at, rows, qrow, K, T, g, g + 1, gq, gd, gs); });
    gemm_act[ai] = {gq, gd, gs, K, T};
  }

  // Token blocks split long prompts across tasks as well as rows; within a
  // task, a tile of activation rows stays in L1 while each weight row is used.
  constexpr int64_t kTokBlock = 64;
  const int64_t n_tb = (T + kTokBlock - 1) / kTokBlock;
  const int nt = pool.n_threads();
  // Gemm jobs: panels of 16 rows; each task runs a few panels over a range of
  // token groups (all of them when there are enough panels to keep the
  // threads busy: a panel is decoded once per task).
  int64_t gemm_panels = 0;
  for (const PreparedJob& pj : prep)
    if (pj.gemm) gemm_panels += (pj.N + 15) / 16;
  int64_t g_split = 1;
  while (gemm_panels > 0 && gemm_panels * g_split < 8 * nt && g_split < n_groups) g_split *= 2;
  int64_t total = 0;
  for (PreparedJob& pj : prep) {
    if (pj.gemm) {
      pj.g_chunk = (n_groups + g_split - 1) / g_split;
      const int64_t n_gc = (n_groups + pj.g_chunk - 1) / pj.g_chunk;
      pj.rows = 16;
      pj.n_chunks = (pj.N + pj.rows - 1) / pj.rows;
      pj.n_tasks = pj.n_chunks * n_gc;
      total += pj.n_tasks;
      continue;
    }
    int64_t rows = std::clamp<int64_t>(static_cast<int64_t>(65536 / std::max<size_t>(pj.wrow, 1)), 8, 256);
    const int64_t want_chunks = std::max<int64_t>(1, (4 * nt + n_tb - 1) / n_tb);
    rows = std::min(rows, std::max<int64_t>(1, (pj.N + want_chunks - 1) / want_chunks));
    if (pj.packed) rows = (rows + kPackRows - 1) / kPackRows * kPackRows;  // whole groups
    pj.rows = rows;
    pj.n_chunks = (pj.N + rows - 1) / rows;
    pj.n_tasks = pj.n_chunks * n_tb;
    total += pj.n_tasks;
  }
  pool.parallel_for(total, [&](int64_t task, int) {
    size_t j = 0;
    while (task >= prep[j].n_tasks) task -= prep[j++].n_tasks;
    const PreparedJob& pj = prep[j];
    const int64_t tile = std::clamp<int64_t>(static_cast<int64_t>(16384 / std::max<size_t>(pj.qrow, 1)), 1, 16);
    const int64_t tb = task / pj.n_chunks;
    const int64_t c = task % pj.n_chunks;
    const int64_t r0 = c * pj.rows, r1 = std::min(pj.N, r0 + pj.rows);
    const int64_t t_begin = tb * kTokBlock, t_end = std::min(T, t_begin + kTokBlock);
    const uint8_t* wdata = static_cast<const uint8_t*>(pj.W->data);
    if (pj.gemm) {
      const int64_t gc = task / pj.n_chunks;
      const int64_t g0 = gc * pj.g_chunk, g1 = std::min(n_groups, g0 + pj.g_chunk);
      const GemmAct& ga = gemm_act[vec_dot_type(pj.W->type) == DType::Q8_K ? 1 : 0];
      pj.gemm(wdata + r0 * pj.wrow, pj.wrow, r1 - r0, ga, g0, g1, pj.Y + r0, static_cast<size_t>(pj.N));
      return;
    }
    if (pj.gemv) {
      pj.gemv(pj.K, wdata + r0 * pj.wrow, pj.wrow, r1 - r0, gact, pj.Y + r0);
      return;
    }
    if (pj.packed) {
      const int64_t nb = pj.K / 32;
      const PackedAct a = vec_dot_type(pj.W->type) == DType::Q8_0
                              ? PackedAct{static_cast<const uint8_t*>(pact.q8) + t_begin * pact.q8_stride,
                                          pact.q8_stride, pact.d + t_begin * nb, pact.sum + t_begin * nb,
                                          t_end - t_begin}
                              : PackedAct{pj.act + t_begin * pj.qrow, pj.qrow, nullptr, nullptr, t_end - t_begin};
      pj.packed(pj.K, wdata + r0 * pj.wrow, r1 - r0, a, pj.Y + t_begin * pj.N + r0, static_cast<size_t>(pj.N));
      return;
    }
    if (!pj.tile_fn) {
      for (int64_t t0 = t_begin; t0 < t_end; t0 += tile) {
        const int64_t t1 = std::min(t_end, t0 + tile);
        for (int64_t r = r0; r < r1; ++r) {
          const uint8_t* w = wdata + r * pj.wrow;
          for (int64_t t = t0; t < t1; ++t) pj.Y[t * pj.N + r] = pj.dot(pj.K, w, pj.act + t * pj.qrow);
        }
      }
      return;
    }
    // Up to 4 weight rows x 4 activation rows per kernel call.
    float out[kTileMax * kTileMax];
    for (int64_t t0 = t_begin; t0 < t_end; t0 += tile) {
      const int64_t t1 = std::min(t_end, t0 + tile);
      for (int64_t r = r0; r < r1; r += kTileMax) {
        const int nw = static_cast<int>(std::min<int64_t>(kTileMax, r1 - r));
        for (int64_t ta = t0; ta < t1; ta += kTileMax) {
          const int na = static_cast<int>(std::min<int64_t>(kTileMax, t1 - ta));
          pj.tile_fn(pj.K, wdata + r * pj.wrow, pj.wrow, pj.act + ta * pj.qrow, pj.qrow, nw, na, out, kTileMax);
          for (int i = 0; i < nw; ++i)
            for (int j = 0; j < na; ++j) pj.Y[(ta + j) * pj.N + r + i] = out[i * kTileMax + j];
        }
      }
    }
  });
}

void matmul(const TensorView& W, const float* X, float* Y, int64_t T, ThreadPool& pool) {
  const MatmulJob job{&W, Y};
  matmul_multi(std::span<const MatmulJob>(&job, 1), X, T, pool);
}

// ---------------------------------------------------------------- norms

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n + eps));
  if (w) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale;
  }
}

void layernorm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  layernorm_scalar(x, w, b, y, n, eps);
}

// ---------------------------------------------------------------- activations

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = silu(x[i]);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) { kernels().swiglu(gate, up, out, n); }

void gelu(float* x, int64_t n) {
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * v * (1.0f + 0.044715f * v * v)));
  }
}

void add(float* x, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += b[i];
}

// ---------------------------------------------------------------- rope

std::vector<float> llama3_freq_factors(int n_rot, float freq_base, float factor, float low_freq_factor,
                                       float high_freq_factor, float orig_ctx) {
  std::vector<float> out(n_rot / 2, 1.0f);
  const double low_wavelen = orig_ctx / low_freq_factor;
  const double high_wavelen = orig_ctx / high_freq_factor;
  for (int i = 0; i < n_rot / 2; ++i) {
    const double freq = std::pow(static_cast<double>(freq_base), -2.0 * i / n_rot);
    const double wavelen = 2.0 * M_PI / freq;
    if (wavelen < high_wavelen) {
      out[i] = 1.0f;
    } else if (wavelen > low_wavelen) {
      out[i] = factor;
    } else {
      const double smooth = (orig_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      out[i] = static_cast<float>(1.0 / ((1.0 - smooth) / factor + smooth));
    }
  }
  return out;
}

Rope::Rope(const RopeConfig& cfg) : cfg_(cfg) {
  if (cfg_.n_rot <= 0 || cfg_.n_rot % 2 != 0)
    throw Error("rope: rotated dimension count must be positive and even, got " + std::to_string(cfg_.n_rot));
  const int half = cfg_.n_rot / 2;
  if (!cfg_.freq_factors.empty() && static_cast<int>(cfg_.freq_factors.size()) != half)
    throw Error("rope: " + std::to_string(cfg_.freq_factors.size()) + " frequency factors given, expected " +
                std::to_string(half));
  theta_scale_ = std::pow(cfg_.freq_base, -2.0f / static_cast<float>(cfg_.n_rot));
}

void Rope::apply(float* x, int n_heads, int head_dim, int32_t pos) const {
  const int half = cfg_.n_rot / 2;
  float cs[512], sn[512];
  float* c = cs;
  float* s = sn;
  std::vector<float> big;
  if (half > 512) {
    big.resize(2 * half);
    c = big.data();
    s = big.data() + half;
  }
  // Angles in float, the base angle advancing by repeated multiplication, as
  // the reference implementation computes them (keeps logits bit-close).
  float theta = static_cast<float>(pos);
  const bool ff = !cfg_.freq_factors.empty();
  for (int i = 0; i < half; ++i) {
    const float th = cfg_.freq_scale * (ff ? theta / cfg_.freq_factors[i] : theta);
    c[i] = std::cos(th);
    s[i] = std::sin(th);
    theta *= theta_scale_;
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    if (cfg_.style == RopeStyle::Normal) {
      for (int i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c[i] - b * s[i];
        v[2 * i + 1] = a * s[i] + b * c[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = a * s[i] + b * c[i];
      }
    }
  }
}

// ---------------------------------------------------------------- attention

void attend_head(const float* q, float* out, const KVView& kv, int kv_head, int head_dim_k, int head_dim_v,
                 int n_pos, float scale, float* scores) {
  if (kv.type == DType::F32) {
    const float* K = static_cast<const float*>(kv.k) + static_cast<int64_t>(kv_head) * head_dim_k;
    const float* V = static_cast<const float*>(kv.v) + static_cast<int64_t>(kv_head) * head_dim_v;
    for (int j = 0; j < n_pos; ++j) {
      const float* k = K + j * kv.k_row_stride;
      float s = 0.0f;
      for (int d = 0; d < head_dim_k; ++d) s += q[d] * k[d];
      scores[j] = s * scale;
    }
    softmax(scores, n_pos);
    for (int d = 0; d < head_dim_v; ++d) out[d] = 0.0f;
    for (int j = 0; j < n_pos; ++j) {
      const float* v = V + j * kv.v_row_stride;
      const float p = scores[j];
      for (int d = 0; d < head_dim_v; ++d) out[d] += p * v[d];
    }
  } else if (kv.type == DType::F16) {
    const float* tab = fp16_table();
    const uint16_t* K = static_cast<const uint16_t*>(kv.k) + static_cast<int64_t>(kv_head) * head_dim_k;
    const uint16_t* V = static_cast<const uint16_t*>(kv.v) + static_cast<int64_t>(kv_head) * head_dim_v;
    const AttnF16Fn fast = kernels().attn_f16;
    if (fast && head_dim_k % 16 == 0 && head_dim_v % 16 == 0 && head_dim_k <= 256 && head_dim_v <= 256) {
      fast(q, K, V, kv.k_row_stride, kv.v_row_stride, n_pos, head_dim_k, head_dim_v, scale, scores, out);
      return;
    }
    float qh[1024];
    std::vector<float> qbig;
    float* qr = qh;
    if (head_dim_k > 1024) {
      qbig.resize(head_dim_k);
      qr = qbig.data();
    }
    for (int d = 0; d < head_dim_k; ++d) qr[d] = round_f16(q[d]);
    // The F16 row kernels (F16C/AVX-512 when available) do the conversions.
    const Kernels& kr = kernels();
    const VecDotFn dot16 = kr.vec_dot[static_cast<uint32_t>(DType::F16)];
    const DequantizeFn deq16 = kr.dequantize[static_cast<uint32_t>(DType::F16)];
    for (int j = 0; j < n_pos; ++j) {
      const uint16_t* k = K + j * kv.k_row_stride;
      float s = 0.0f;
      if (dot16) {
        s = dot16(head_dim_k, k, qr);
      } else {
        for (int d = 0; d < head_dim_k; ++d) s += qr[d] * tab[k[d]];
      }
      scores[j] = s * scale;
    }
    softmax(scores, n_pos);
    for (int d = 0; d < head_dim_v; ++d) out[d] = 0.0f;
    float vrow[1024];
    for (int j = 0; j < n_pos; ++j) {
      const uint16_t* v = V + j * kv.v_row_stride;
      const float p = round_f16(scores[j]);
      if (deq16 && head_dim_v <= 1024) {
        deq16(v, vrow, head_dim_v);
        for (int d = 0; d < head_dim_v; ++d) out[d] += p * vrow[d];
      } else {
        for (int d = 0; d < head_dim_v; ++d) out[d] += p * tab[v[d]];
      }
    }
  } else {
    throw Error(std::string("attention: unsupported KV cache type ") + dtype_name(kv.type));
  }
}

void attention(const float* Q, float* O, int64_t T, const int32_t* pos, int n_head, int n_head_kv,
               int head_dim_k, int head_dim_v, const KVView& kv, float scale, ThreadPool& pool) {
  if (T <= 0) return;
  if (n_head_kv <= 0 || n_head % n_head_kv != 0)
    throw Error("attention: head count " + std::to_string(n_head) + " is not a multiple of the kv head count " +
                std::to_string(n_head_kv));
  const int group = n_head / n_head_kv;
  int32_t max_pos = 0;
  for (int64_t t = 0; t < T; ++t) max_pos = std::max(max_pos, pos[t]);
  const int64_t stride = static_cast<int64_t>(max_pos) + 1;
  thread_local std::vector<float> scratch;
  if (scratch.size() < static_cast<size_t>(stride * pool.n_threads())) scratch.resize(stride * pool.n_threads());
  float* sc = scratch.data();
  const int64_t qrow = static_cast<int64_t>(n_head) * head_dim_k;
  const int64_t orow = static_cast<int64_t>(n_head) * head_dim_v;
  pool.parallel_for(T * n_head, [&](int64_t task, int thread) {
    const int64_t t = task / n_head;
    const int h = static_cast<int>(task % n_head);
    attend_head(Q + t * qrow + static_cast<int64_t>(h) * head_dim_k, O + t * orow + static_cast<int64_t>(h) * head_dim_v,
                kv, h / group, head_dim_k, head_dim_v, pos[t] + 1, scale, sc + thread * stride);
  });
}

}  // namespace lmhost::ops
