#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <numeric>
#include <string>

#include "model/model.h"
#include "tensor/kernels.h"
#include "tensor/packed.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost {

namespace {

void embed_row(const TensorView& emb, Token tok, float* dst) {
  const int64_t n = emb.ne[0];
  const uint8_t* src = emb.row(tok);
  switch (emb.type) {
    case DType::F32: std::memcpy(dst, src, n * sizeof(float)); break;
    case DType::F16: ops::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), dst, n); break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_fp32(h);
      }
      break;
    default:
      if (dtype_info(emb.type).internal) {  // a tied output matrix packed at load
        thread_local std::vector<uint8_t> row;
        const DType pt = plain_type(emb.type);
        row.resize(row_bytes(pt, n));
        packed_row(emb.type, emb.data, n, tok, row.data());
        dequantize_row(pt, row.data(), dst, n);
      } else {
        dequantize_row(emb.type, src, dst, n);
      }
      break;
  }
}

template <class T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

Context::Context(std::shared_ptr<const Model> model, int n_ctx, int n_seq, int n_threads, DType kv_type)
    : model_(std::move(model)), n_ctx_(n_ctx), n_seq_(n_seq), kv_type_(kv_type), pool_(n_threads) {
  if (!model_) throw Error("Context: no model");
  if (n_ctx < 1) throw Error("Context: n_ctx must be at least 1, got " + std::to_string(n_ctx));
  if (n_seq < 1) throw Error("Context: n_seq must be at least 1, got " + std::to_string(n_seq));
  if (kv_type != DType::F16 && kv_type != DType::F32)
    throw Error(std::string("Context: KV cache type must be F16 or F32, got ") + dtype_name(kv_type));
  kv_elem_ = kv_type == DType::F16 ? 2 : 4;
  const HParams& hp = model_->hparams();
  rope_ = ops::Rope(model_->rope_config());
  const size_t per_seq_k = static_cast<size_t>(n_ctx) * hp.n_embd_k_gqa() * kv_elem_;
  const size_t per_seq_v = static_cast<size_t>(n_ctx) * hp.n_embd_v_gqa() * kv_elem_;
  const size_t total_k = per_seq_k * n_seq * hp.n_layer, total_v = per_seq_v * n_seq * hp.n_layer;
  try {
    kv_k_.resize(total_k);
    kv_v_.resize(total_v);
  } catch (const std::bad_alloc&) {
    throw Error("Context: cannot allocate a KV cache of " + std::to_string((total_k + total_v) >> 20) +
                " MiB (n_ctx=" + std::to_string(n_ctx) + ", n_seq=" + std::to_string(n_seq) + ")", 503);
  }
  seq_len_.assign(n_seq, 0);
}

Context::~Context() = default;

void Context::check_seq(int seq, const char* what) const {
  if (seq < 0 || seq >= n_seq_)
    throw Error(std::string(what) + ": sequence " + std::to_string(seq) + " out of range [0, " +
                std::to_string(n_seq_) + ")");
}

void Context::clear_seq(int seq) {
  check_seq(seq, "clear_seq");
  seq_len_[seq] = 0;
}

void Context::truncate_seq(int seq, int n_keep) {
  check_seq(seq, "truncate_seq");
  if (n_keep < 0) throw Error("truncate_seq: n_keep must not be negative");
  seq_len_[seq] = std::min(seq_len_[seq], n_keep);
}

int Context::seq_len(int seq) const {
  check_seq(seq, "seq_len");
  return seq_len_[seq];
}

void Context::clear() { std::fill(seq_len_.begin(), seq_len_.end(), 0); }

uint8_t* Context::k_at(int layer, int seq, int pos) {
  const size_t row = static_cast<size_t>(model_->hparams().n_embd_k_gqa()) * kv_elem_;
  return kv_k_.data() + ((static_cast<size_t>(layer) * n_seq_ + seq) * n_ctx_ + pos) * row;
}

uint8_t* Context::v_at(int layer, int seq, int pos) {
  const size_t row = static_cast<size_t>(model_->hparams().n_embd_v_gqa()) * kv_elem_;
  return kv_v_.data() + ((static_cast<size_t>(layer) * n_seq_ + seq) * n_ctx_ + pos) * row;
}

ops::KVView Context::kv_view(int layer, int seq) {
  ops::KVView kv;
  kv.k = k_at(layer, seq, 0);
  kv.v = v_at(layer, seq, 0);
  kv.type = kv_type_;
  kv.k_row_stride = model_->hparams().n_embd_k_gqa();
  kv.v_row_stride = model_->hparams().n_embd_v_gqa();
  return kv;
}

std::span<const float> Context::forward(std::span<const BatchEntry> batch) {
  const HParams& hp = model_->hparams();
  // Validate everything before touching the cache.
  std::vector<int32_t> next(seq_len_);
  size_t n_out = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchEntry& e = batch[i];
    if (e.seq < 0 || e.seq >= n_seq_)
      throw Error("batch entry " + std::to_string(i) + ": sequence " + std::to_string(e.seq) + " out of range [0, " +
                  std::to_string(n_seq_) + ")");
    if (e.token < 0 || e.token >= hp.n_vocab)
      throw Error("batch entry " + std::to_string(i) + ": token id " + std::to_string(e.token) +
                  " out of range [0, " + std::to_string(hp.n_vocab) + ")");
    if (e.pos != next[e.seq])
      throw Error("batch entry " + std::to_string(i) + ": sequence " + std::to_string(e.seq) + " continues at position " +
                  std::to_string(next[e.seq]) + " but the entry has position " + std::to_string(e.pos));
    if (e.pos >= n_ctx_)
      throw Error("batch entry " + std::to_string(i) + ": sequence " + std::to_string(e.seq) +
                  " is full (context size " + std::to_string(n_ctx_) + " tokens)", 400);
    ++next[e.seq];
    if (e.logits) ++n_out;
  }
  logits_.resize(n_out * static_cast<size_t>(hp.n_vocab));
  const ops::ThreadPool::Busy hot(pool_);  // workers spin through the whole pass
  size_t out_i = 0;
  for (size_t b = 0; b < batch.size(); b += kMaxMicroBatch) {
    const auto part = batch.subspan(b, std::min<size_t>(kMaxMicroBatch, batch.size() - b));
    forward_micro(part, logits_.data() + out_i * hp.n_vocab);
    for (const auto& e : part) {
      seq_len_[e.seq] = e.pos + 1;
      if (e.logits) ++out_i;
    }
  }
  return {logits_.data(), logits_.size()};
}

void Context::forward_one(const BatchEntry& e, float* logits_out) {
  const Model& m = *model_;
  const HParams& hp = m.hparams();
  const int E = hp.n_embd, nh = hp.n_head, nkv = hp.n_head_kv, hdk = hp.head_dim_k, hdv = hp.head_dim_v;
  const int Q = nh * hdk, KK = hp.n_embd_k_gqa(), KV = hp.n_embd_v_gqa(), O = nh * hdv, F = hp.n_ff;
  grow(x_, E);
  grow(h_, std::max(E, O));
  grow(q_, Q);
  grow(k_, KK);
  grow(v_, KV);
  grow(att_, O);
  grow(o_, E);
  grow(g_, F);
  grow(u_, F);
  float *x = x_.data(), *h = h_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data();
  float *att = att_.data(), *o = o_.data(), *g = g_.data(), *u = u_.data();
  embed_row(m.token_embd(), e.token, x);
  const int64_t sc_stride = static_cast<int64_t>(e.pos) + 1;
  grow(scores_, static_cast<size_t>(sc_stride * pool_.n_threads()));
  float* scores = scores_.data();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hdk));
  const int group = nh / nkv;
  const int64_t A = ops::DecodeAct::kAlign;
  // Row chunks of about 256 KiB of weights: long runs for the hardware
  // prefetcher (each chunk start costs a ramp-up), still a few chunks per
  // thread on the 0.5B shape's smallest matrices. Measured tg128, 2 threads,
  // interleaved: 256 KiB beat 64 KiB by 5-18 % on qwen2.5-0.5b Q4_0/Q8_0/Q4_K_M
  // and llama-3.2-1b Q4_0; 32 KiB was slower still, 1 MiB no better.
  // Packed weights (tensor/packed.h) split only between their 16-row groups.
  auto chunks = [](const TensorView& W, int64_t align, int64_t bytes) {
    if (dtype_info(W.type).internal) align = std::lcm(align, int64_t{kPackRows});
    return ops::split_rows(W.n_rows(), align, bytes / static_cast<int64_t>(std::max<size_t>(W.row_stride(), 1)));
  };
  constexpr int64_t kChunk = 256 << 10;
  // Attention head groups whose outputs are whole kAlign ranges of att.
  const int hpg = A % hdv == 0 ? static_cast<int>(A / hdv) : (hdv % A == 0 ? 1 : nh);
  const int n_hg = (nh + hpg - 1) / hpg;

  for (int l = 0; l < hp.n_layer; ++l) {
    const LayerWeights& L = m.layers()[l];
    ops::rmsnorm(x, L.attn_norm.data(), h, E, hp.rms_eps);
    act_in_.setup(E, {&L.wq, &L.wk, &L.wv});
    act_in_.quantize(h);
    // Q, K, V rows in head-aligned chunks; each chunk adds its bias, rotates
    // its heads and writes its part of the cache row.
    const std::vector<int64_t> cq = chunks(L.wq, hdk, kChunk), ck = chunks(L.wk, hdk, kChunk),
                               cv = chunks(L.wv, hdv, kChunk);
    const int64_t nq = static_cast<int64_t>(cq.size()) - 1, nk = static_cast<int64_t>(ck.size()) - 1;
    const int64_t nv = static_cast<int64_t>(cv.size()) - 1;
    uint8_t* kd = k_at(l, e.seq, e.pos);
    uint8_t* vd = v_at(l, e.seq, e.pos);
    pool_.parallel_for(nq + nk + nv, [&](int64_t t, int) {
      if (t < nq) {
        const int64_t r0 = cq[t], r1 = cq[t + 1];
        act_in_.gemv(L.wq, r0, r1, q + r0);
        if (!L.bq.empty()) ops::add(q + r0, L.bq.data() + r0, r1 - r0);
        rope_.apply(q + r0, static_cast<int>((r1 - r0) / hdk), hdk, e.pos);
        return;
      }
      const bool is_k = t < nq + nk;
      const std::vector<int64_t>& c = is_k ? ck : cv;
      const int64_t i = is_k ? t - nq : t - nq - nk;
      const int64_t r0 = c[i], r1 = c[i + 1];
      float* y = is_k ? k : v;
      uint8_t* dst = is_k ? kd : vd;
      act_in_.gemv(is_k ? L.wk : L.wv, r0, r1, y + r0);
      const std::vector<float>& bias = is_k ? L.bk : L.bv;
      if (!bias.empty()) ops::add(y + r0, bias.data() + r0, r1 - r0);
      if (is_k) rope_.apply(y + r0, static_cast<int>((r1 - r0) / hdk), hdk, e.pos);
      if (kv_type_ == DType::F16) ops::fp32_to_fp16_row(y + r0, reinterpret_cast<uint16_t*>(dst) + r0, r1 - r0);
      else std::memcpy(dst + r0 * sizeof(float), y + r0, (r1 - r0) * sizeof(float));
    });
    // Attention by head groups; each group quantizes its part of wo's input.
    act_att_.setup(O, {&L.wo});
    act_att_.bind(att);
    const ops::KVView kv = kv_view(l, e.seq);
    pool_.parallel_for(n_hg, [&](int64_t gi, int thread) {
      const int h0 = static_cast<int>(gi) * hpg, h1 = std::min(nh, h0 + hpg);
      for (int hh = h0; hh < h1; ++hh)
        ops::attend_head(q + static_cast<int64_t>(hh) * hdk, att + static_cast<int64_t>(hh) * hdv, kv, hh / group, hdk,
                         hdv, e.pos + 1, scale, scores + thread * sc_stride);
      act_att_.quantize_range(att, static_cast<int64_t>(h0) * hdv, static_cast<int64_t>(h1) * hdv);
    });
    const std::vector<int64_t> co = chunks(L.wo, 8, kChunk);
    pool_.parallel_for(static_cast<int64_t>(co.size()) - 1,
                       [&](int64_t t, int) { act_att_.gemv(L.wo, co[t], co[t + 1], o + co[t]); });
    ops::add(x, o, E);
    ops::rmsnorm(x, L.ffn_norm.data(), h, E, hp.rms_eps);
    act_ffn_.setup(E, {&L.ffn_gate, &L.ffn_up});
    act_ffn_.quantize(h);
    // Gate and up rows together; each chunk applies swiglu and quantizes its
    // part of ffn_down's input.
    act_down_.setup(F, {&L.ffn_down});
    act_down_.bind(g);
    const std::vector<int64_t> cg = chunks(L.ffn_gate, A, kChunk / 2);
    pool_.parallel_for(static_cast<int64_t>(cg.size()) - 1, [&](int64_t t, int) {
      const int64_t r0 = cg[t], r1 = cg[t + 1];
      act_ffn_.gemv(L.ffn_gate, r0, r1, g + r0);
      act_ffn_.gemv(L.ffn_up, r0, r1, u + r0);
      ops::swiglu(g + r0, u + r0, g + r0, r1 - r0);
      act_down_.quantize_range(g, r0, r1);
    });
    const std::vector<int64_t> cd = chunks(L.ffn_down, 8, kChunk);
    pool_.parallel_for(static_cast<int64_t>(cd.size()) - 1,
                       [&](int64_t t, int) { act_down_.gemv(L.ffn_down, cd[t], cd[t + 1], o + cd[t]); });
    ops::add(x, o, E);
  }
  if (!e.logits) return;
  ops::rmsnorm(x, m.output_norm().data(), h, E, hp.rms_eps);
  act_in_.setup(E, {&m.output()});
  act_in_.quantize(h);
  const std::vector<int64_t> cl = chunks(m.output(), 16, 256 << 10);
  pool_.parallel_for(static_cast<int64_t>(cl.size()) - 1,
                     [&](int64_t t, int) { act_in_.gemv(m.output(), cl[t], cl[t + 1], logits_out + cl[t]); });
}

void Context::forward_micro(std::span<const BatchEntry> batch, float* logits_out) {
  // LMHOST_DECODE_PATH=batch: decode through the batch path (for A/B benchmarks).
  static const bool batch_path = [] {
    const char* v = std::getenv("LMHOST_DECODE_PATH");
    return v && std::string(v) == "batch";
  }();
  if (batch.size() == 1 && !batch_path) {
    forward_one(batch[0], logits_out);
    return;
  }
  const Model& m = *model_;
  const HParams& hp = m.hparams();
  const int64_t T = static_cast<int64_t>(batch.size());
  const int E = hp.n_embd, nh = hp.n_head, nkv = hp.n_head_kv, hdk = hp.head_dim_k, hdv = hp.head_dim_v;
  const int Q = nh * hdk, KK = hp.n_embd_k_gqa(), KV = hp.n_embd_v_gqa(), O = nh * hdv, F = hp.n_ff;
  grow(x_, T * E);
  grow(h_, T * std::max(E, O));
  grow(q_, T * Q);
  grow(k_, T * KK);
  grow(v_, T * KV);
  grow(att_, T * O);
  grow(o_, T * E);
  grow(g_, T * F);
  grow(u_, T * F);
  float *x = x_.data(), *h = h_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data();
  float *att = att_.data(), *o = o_.data(), *g = g_.data(), *u = u_.data();
  auto rows = [&](auto&& fn) {  // per-token work, threaded for big batches
    if (T >= 4) pool_.parallel_for(T, [&](int64_t t, int) { fn(t); });
    else for (int64_t t = 0; t < T; ++t) fn(t);
  };

  for (int64_t t = 0; t < T; ++t) embed_row(m.token_embd(), batch[t].token, x + t * E);

  int32_t max_pos = 0;
  for (const auto& e : batch) max_pos = std::max(max_pos, e.pos);
  const int64_t sc_stride = static_cast<int64_t>(max_pos) + 1;
  grow(scores_, static_cast<size_t>(sc_stride * pool_.n_threads()));
  float* scores = scores_.data();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hdk));
  const int group = nh / nkv;

  for (int l = 0; l < hp.n_layer; ++l) {
    const LayerWeights& L = m.layers()[l];
    rows([&](int64_t t) { ops::rmsnorm(x + t * E, L.attn_norm.data(), h + t * E, E, hp.rms_eps); });
    const ops::MatmulJob qkv[3] = {{&L.wq, q}, {&L.wk, k}, {&L.wv, v}};
    ops::matmul_multi(qkv, h, T, pool_);
    rows([&](int64_t t) {
      if (!L.bq.empty()) ops::add(q + t * Q, L.bq.data(), Q);
      if (!L.bk.empty()) ops::add(k + t * KK, L.bk.data(), KK);
      if (!L.bv.empty()) ops::add(v + t * KV, L.bv.data(), KV);
      rope_.apply(q + t * Q, nh, hdk, batch[t].pos);
      rope_.apply(k + t * KK, nkv, hdk, batch[t].pos);
      uint8_t* kd = k_at(l, batch[t].seq, batch[t].pos);
      uint8_t* vd = v_at(l, batch[t].seq, batch[t].pos);
      if (kv_type_ == DType::F16) {
        ops::fp32_to_fp16_row(k + t * KK, reinterpret_cast<uint16_t*>(kd), KK);
        ops::fp32_to_fp16_row(v + t * KV, reinterpret_cast<uint16_t*>(vd), KV);
      } else {
        std::memcpy(kd, k + t * KK, KK * sizeof(float));
        std::memcpy(vd, v + t * KV, KV * sizeof(float));
      }
    });
    // Attention for every (entry, head), each over its own sequence's cache.
    pool_.parallel_for(T * nh, [&](int64_t task, int thread) {
      const int64_t t = task / nh;
      const int hh = static_cast<int>(task % nh);
      const ops::KVView kv = kv_view(l, batch[t].seq);
      ops::attend_head(q + t * Q + static_cast<int64_t>(hh) * hdk, att + t * O + static_cast<int64_t>(hh) * hdv, kv,
                       hh / group, hdk, hdv, batch[t].pos + 1, scale, scores + thread * sc_stride);
    });
    ops::matmul(L.wo, att, o, T, pool_);
    rows([&](int64_t t) {
      ops::add(x + t * E, o + t * E, E);
      ops::rmsnorm(x + t * E, L.ffn_norm.data(), h + t * E, E, hp.rms_eps);
    });
    const ops::MatmulJob gate_up[2] = {{&L.ffn_gate, g}, {&L.ffn_up, u}};
    ops::matmul_multi(gate_up, h, T, pool_);
    rows([&](int64_t t) { ops::swiglu(g + t * F, u + t * F, g + t * F, F); });
    ops::matmul(L.ffn_down, g, o, T, pool_);
    rows([&](int64_t t) { ops::add(x + t * E, o + t * E, E); });
  }

  // Final norm and output projection for the entries that want logits.
  int64_t n_out = 0;
  for (const auto& e : batch) n_out += e.logits ? 1 : 0;
  if (n_out == 0) return;
  grow(outrows_, n_out * E);
  int64_t j = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (!batch[t].logits) continue;
    ops::rmsnorm(x + t * E, m.output_norm().data(), outrows_.data() + j * E, E, hp.rms_eps);
    ++j;
  }
  ops::matmul(m.output(), outrows_.data(), logits_out, n_out, pool_);
}

}  // namespace lmhost
