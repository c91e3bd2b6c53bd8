#include "model/bert.h"
#include "model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "tensor/encoder_kernels.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost {

namespace {

// A table whose rows are read one at a time (embeddings).
TensorView table(const gguf::File& f, const std::string& name, int64_t K, int64_t min_rows, bool required) {
  const gguf::TensorInfo* t = f.tensor(name);
  if (!t) {
    if (required) throw Error(f.path() + ": tensor '" + name + "' is missing");
    return {};
  }
  if (t->dims.size() < 2 || t->dims[0] != K || t->dims[1] < min_rows)
    throw Error(f.path() + ": tensor '" + name + "' has shape " + weights::shape_str(t->dims) + ", expected [" +
                std::to_string(K) + ", >= " + std::to_string(min_rows) + "]");
  const DType et = t->type;
  const uint32_t ti = static_cast<uint32_t>(et);
  if (!(et == DType::F32 || et == DType::F16 || et == DType::BF16) &&
      (ti >= kDTypeCount || !kernels().dequantize[ti] || K % dtype_info(et).block_size != 0))
    throw Error(f.path() + ": tensor '" + name + "' has type " + dtype_name(et) + ", which lmhost cannot read yet");
  return t->view();
}

void read_row(const TensorView& emb, int64_t r, float* dst) {
  const int64_t n = emb.ne[0];
  const uint8_t* src = emb.row(r);
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
    default: dequantize_row(emb.type, src, dst, n); break;
  }
}

// 64-bit streaming hash (multiply-xorshift over 8-byte words).
struct Hasher {
  uint64_t h = 0x243f6a8885a308d3ull;
  static uint64_t mix(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
  }
  void word(uint64_t w) { h = mix(h ^ (w * 0x9e3779b97f4a7c15ull)) + 0x632be59bd9b4e019ull; }
  void bytes(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    word(n);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {  // four lanes for speed
      uint64_t w[4];
      std::memcpy(w, b + i, 32);
      h = mix(h ^ (w[0] * 0x9e3779b97f4a7c15ull)) ^ mix(w[1] + 0x94d049bb133111ebull) ^
          mix(w[2] * 0xbf58476d1ce4e5b9ull) ^ mix(w[3] ^ 0x2545f4914f6cdd1dull) ^ (i * 0x100000001b3ull);
    }
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, b + i, 8);
      word(w);
    }
    uint64_t last = 0;
    std::memcpy(&last, b + i, n - i);
    word(last ^ (n - i));
  }
  void str(std::string_view s) { bytes(s.data(), s.size()); }
};

// Packs the row-major stack of `parts` (same K and type) into one PackedLinear,
// with the parts' biases (zeros for a part without one; no bias at all when
// none has one). False when the encoder GEMM cannot run this type here.
bool pack_linear(std::initializer_list<std::pair<const TensorView*, const std::vector<float>*>> parts,
                 PackedLinear& out) {
  const EncoderKernels& ek = encoder_kernels();
  const DType t = parts.begin()->first->type;
  if (!((t == DType::F16 && ek.gemm_f16) || (t == DType::F32 && ek.gemm_f32))) return false;
  const int64_t K = parts.begin()->first->ne[0];
  int64_t N = 0;
  bool any_bias = false;
  for (const auto& [w, b] : parts) {
    if (w->type != t || w->ne[0] != K) return false;
    N += w->n_rows();
    any_bias = any_bias || (b && !b->empty());
  }
  const size_t es = t == DType::F16 ? 2 : 4;
  std::vector<uint8_t> rows;
  const void* src = parts.begin()->first->data;
  if (parts.size() > 1) {  // stack the parts row-major first
    rows.resize(static_cast<size_t>(N) * K * es);
    size_t off = 0;
    for (const auto& [w, b] : parts) {
      std::memcpy(rows.data() + off, w->data, static_cast<size_t>(w->n_rows()) * K * es);
      off += static_cast<size_t>(w->n_rows()) * K * es;
    }
    src = rows.data();
  }
  out.type = t;
  out.K = K;
  out.N = N;
  out.panels.resize(packed_bytes(t, N, K));
  pack_panels(t, src, K * es, N, K, out.panels.data());
  out.bias.clear();
  if (any_bias) {
    out.bias.assign(N, 0.0f);
    int64_t r = 0;
    for (const auto& [w, b] : parts) {
      if (b && !b->empty()) std::copy(b->begin(), b->end(), out.bias.begin() + r);
      r += w->n_rows();
    }
  }
  return true;
}

// y (T x P.N, row stride ldy) = x (T x P.K) W^T + bias, over the pool: tasks
// of up to 64 tokens x a group of panels.
void run_packed(const PackedLinear& P, const float* x, int64_t T, float* y, int64_t ldy, ops::ThreadPool& pool) {
  const EncoderKernels& ek = encoder_kernels();
  const GemmPackedFn fn = P.type == DType::F16 ? ek.gemm_f16 : ek.gemm_f32;
  const int64_t np = panel_count(P.N);
  constexpr int64_t kTok = 64;
  const int64_t ntb = (T + kTok - 1) / kTok;
  int64_t g = 6;  // panels per task
  while (g > 1 && ntb * ((np + g - 1) / g) < 4 * pool.n_threads()) g /= 2;
  const int64_t ng = (np + g - 1) / g;
  const size_t pb = static_cast<size_t>(P.K) * kPanelRows * (P.type == DType::F16 ? 2 : 4);
  auto task = [&](int64_t i, int) {
    const int64_t tb = i / ng, p0 = (i % ng) * g;
    const int64_t t0 = tb * kTok, nt = std::min(kTok, T - t0);
    const int64_t cols = std::min<int64_t>(g * kPanelRows, P.N - p0 * kPanelRows);
    fn(P.panels.data() + p0 * pb, P.K, cols, x + t0 * P.K, P.K, nt, y + t0 * ldy + p0 * kPanelRows, ldy,
       P.bias.empty() ? nullptr : P.bias.data() + p0 * kPanelRows);
  };
  if (ntb * ng == 1) task(0, 0);
  else pool.parallel_for(ntb * ng, task);
}

}  // namespace

const char* pooling_name(Pooling p) {
  switch (p) {
    case Pooling::None: return "none";
    case Pooling::Mean: return "mean";
    case Pooling::Cls: return "cls";
    case Pooling::Last: return "last";
  }
  return "?";
}

bool is_embedding_model(const gguf::File& file) {
  const auto a = file.get_string("general.architecture");
  return a && (*a == "bert" || *a == "nomic-bert");
}

std::string gguf_digest(const gguf::File& f) {
  Hasher h;
  h.word(f.version());
  for (const auto& v : f.metadata()) {
    h.str(v.key);
    h.word(static_cast<uint64_t>(v.type_) | (static_cast<uint64_t>(v.elem_type_) << 8));
    h.word(v.count_);
    if (v.data_ && v.size_) h.bytes(v.data_, v.size_);
  }
  const bool whole = f.file_size() <= (size_t{256} << 20);
  for (const auto& t : f.tensors()) {
    h.str(t.name);
    h.word(static_cast<uint64_t>(t.type));
    for (auto d : t.dims) h.word(static_cast<uint64_t>(d));
    h.word(t.offset);
    if (!t.data) continue;
    const size_t kPart = 64 << 10;
    if (whole || t.nbytes <= 2 * kPart) {
      h.bytes(t.data, t.nbytes);
    } else {
      h.bytes(t.data, kPart);
      h.bytes(t.data + t.nbytes - kPart, kPart);
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(Hasher::mix(h.h)));
  return buf;
}

std::shared_ptr<EmbeddingModel> EmbeddingModel::load(std::shared_ptr<gguf::File> file) {
  if (!file) throw Error("EmbeddingModel::load: no file");
  std::shared_ptr<EmbeddingModel> m(new EmbeddingModel());
  m->file_ = file;
  const gguf::File& f = *file;
  EmbedHParams& hp = m->hp_;
  const auto arch = f.get_string("general.architecture");
  if (!arch) throw Error(f.path() + ": missing metadata key 'general.architecture'");
  hp.arch_name = std::string(*arch);
  if (hp.arch_name == "nomic-bert") {
    hp.nomic = true;
  } else if (hp.arch_name != "bert") {
    throw Error(f.path() + ": architecture '" + hp.arch_name +
                "' is not an embedding model lmhost supports (supported: bert, nomic-bert)");
  }
  const std::string& a = hp.arch_name;
  hp.n_ctx_train = weights::required_int(f, a, "context_length");
  hp.n_embd = weights::required_int(f, a, "embedding_length");
  hp.n_layer = weights::required_int(f, a, "block_count");
  hp.n_ff = weights::required_int(f, a, "feed_forward_length");
  hp.n_head = weights::required_int(f, a, "attention.head_count");
  if (auto kv = f.get_arch_int("attention.head_count_kv"); kv && *kv != hp.n_head)
    throw Error(f.path() + ": " + a + ".attention.head_count_kv must equal head_count for " + a);
  if (hp.n_embd % hp.n_head != 0)
    throw Error(f.path() + ": embedding_length " + std::to_string(hp.n_embd) + " is not a multiple of head_count " +
                std::to_string(hp.n_head));
  hp.head_dim = hp.n_embd / hp.n_head;
  const auto eps = f.get_arch_float("attention.layer_norm_epsilon");
  if (!eps) throw Error(f.path() + ": missing metadata key '" + a + ".attention.layer_norm_epsilon'");
  if (!(*eps > 0.0 && *eps < 1.0))
    throw Error(f.path() + ": " + a + ".attention.layer_norm_epsilon has invalid value " + std::to_string(*eps));
  hp.norm_eps = static_cast<float>(*eps);
  if (auto c = f.get_bool(a + ".attention.causal"); c && *c)
    throw Error(f.path() + ": " + a + ".attention.causal is true; lmhost supports only bidirectional encoders");
  const int64_t pt = f.get_arch_int("pooling_type").value_or(1);
  switch (pt) {
    case 0:
    case 1: hp.pooling = Pooling::Mean; break;
    case 2: hp.pooling = Pooling::Cls; break;
    case 3: hp.pooling = Pooling::Last; break;
    default:
      throw Error(f.path() + ": " + a + ".pooling_type " + std::to_string(pt) +
                  " is not supported (0 none, 1 mean, 2 cls, 3 last)");
  }
  if (hp.nomic) {
    hp.rope_freq_base = static_cast<float>(f.get_arch_float("rope.freq_base").value_or(10000.0));
    if (!(hp.rope_freq_base > 0.0f)) throw Error(f.path() + ": " + a + ".rope.freq_base must be positive");
    hp.n_rot = static_cast<int>(f.get_arch_int("rope.dimension_count").value_or(hp.head_dim));
    if (hp.n_rot <= 0 || hp.n_rot % 2 != 0 || hp.n_rot > hp.head_dim)
      throw Error(f.path() + ": " + a + ".rope.dimension_count must be even and at most the head size");
    ops::RopeConfig rc;
    rc.style = ops::RopeStyle::NeoX;
    rc.n_rot = hp.n_rot;
    rc.freq_base = hp.rope_freq_base;
    m->rope_ = ops::Rope(rc);
  }

  const int E = hp.n_embd, F = hp.n_ff;
  const gguf::TensorInfo* emb = f.tensor("token_embd.weight");
  if (!emb) throw Error(f.path() + ": tensor 'token_embd.weight' is missing");
  m->token_embd_ = table(f, "token_embd.weight", E, 1, true);
  hp.n_vocab = static_cast<int>(emb->dims[1]);
  if (!hp.nomic) m->pos_embd_ = table(f, "position_embd.weight", E, hp.n_ctx_train, true);
  if (f.tensor("token_types.weight")) {
    TensorView tt = table(f, "token_types.weight", E, 1, true);
    m->type_row0_.resize(E);
    read_row(tt, 0, m->type_row0_.data());
  }
  m->embd_norm_w_ = weights::load_vector(f, "token_embd_norm.weight", E, true);
  m->embd_norm_b_ = weights::load_vector(f, "token_embd_norm.bias", E, false);

  m->layers_.resize(hp.n_layer);
  for (int l = 0; l < hp.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    EncoderLayer& L = m->layers_[l];
    if (hp.nomic || f.tensor(p + "attn_qkv.weight")) {
      L.wqkv = weights::load_matrix(f, p + "attn_qkv.weight", E, 3 * E);
      L.bqkv = weights::load_vector(f, p + "attn_qkv.bias", 3 * E, false);
    } else {
      L.wq = weights::load_matrix(f, p + "attn_q.weight", E, E);
      L.wk = weights::load_matrix(f, p + "attn_k.weight", E, E);
      L.wv = weights::load_matrix(f, p + "attn_v.weight", E, E);
      L.bq = weights::load_vector(f, p + "attn_q.bias", E, false);
      L.bk = weights::load_vector(f, p + "attn_k.bias", E, false);
      L.bv = weights::load_vector(f, p + "attn_v.bias", E, false);
    }
    L.wo = weights::load_matrix(f, p + "attn_output.weight", E, E);
    L.bo = weights::load_vector(f, p + "attn_output.bias", E, false);
    L.attn_norm_w = weights::load_vector(f, p + "attn_output_norm.weight", E, true);
    L.attn_norm_b = weights::load_vector(f, p + "attn_output_norm.bias", E, false);
    L.ffn_up = weights::load_matrix(f, p + "ffn_up.weight", E, F);
    L.ffn_down = weights::load_matrix(f, p + "ffn_down.weight", F, E);
    if (hp.nomic) {
      L.ffn_gate = weights::load_matrix(f, p + "ffn_gate.weight", E, F);
    } else {
      L.ffn_up_b = weights::load_vector(f, p + "ffn_up.bias", F, false);
      L.ffn_down_b = weights::load_vector(f, p + "ffn_down.bias", E, false);
    }
    L.out_norm_w = weights::load_vector(f, p + "layer_output_norm.weight", E, true);
    L.out_norm_b = weights::load_vector(f, p + "layer_output_norm.bias", E, false);
    // Repack for the encoder GEMM where it runs (all of a layer or none of it).
    PackedLinear qkv, o, up, gate, down;
    const bool packed =
        (L.wqkv.data ? pack_linear({{&L.wqkv, &L.bqkv}}, qkv)
                     : pack_linear({{&L.wq, &L.bq}, {&L.wk, &L.bk}, {&L.wv, &L.bv}}, qkv)) &&
        pack_linear({{&L.wo, &L.bo}}, o) && pack_linear({{&L.ffn_up, &L.ffn_up_b}}, up) &&
        (!hp.nomic || pack_linear({{&L.ffn_gate, nullptr}}, gate)) &&
        pack_linear({{&L.ffn_down, &L.ffn_down_b}}, down);
    if (packed) {
      L.p_qkv = std::move(qkv);
      L.p_o = std::move(o);
      L.p_up = std::move(up);
      L.p_gate = std::move(gate);
      L.p_down = std::move(down);
    }
  }
  return m;
}

const std::string& EmbeddingModel::digest() const {
  std::call_once(digest_once_, [this] { digest_ = gguf_digest(*file_); });
  return digest_;
}

std::vector<std::vector<float>> EmbeddingModel::embed(const std::vector<std::vector<Token>>& batch,
                                                      ops::ThreadPool& pool) const {
  return embed(batch, pool, hp_.pooling, true);
}

std::vector<std::vector<float>> EmbeddingModel::embed(const std::vector<std::vector<Token>>& batch,
                                                      int n_threads) const {
  ops::ThreadPool pool(n_threads);
  return embed(batch, pool);
}

std::vector<std::vector<float>> EmbeddingModel::embed(const std::vector<std::vector<Token>>& batch,
                                                      ops::ThreadPool& pool, Pooling pooling,
                                                      bool normalize) const {
  for (size_t i = 0; i < batch.size(); ++i) {
    const auto& s = batch[i];
    if (s.empty()) throw Error("input " + std::to_string(i) + " has no tokens", 400);
    if (static_cast<int64_t>(s.size()) > hp_.n_ctx_train)
      throw Error("input " + std::to_string(i) + " has " + std::to_string(s.size()) +
                      " tokens, more than the model's context length of " + std::to_string(hp_.n_ctx_train),
                  400);
    for (Token t : s)
      if (t < 0 || t >= hp_.n_vocab)
        throw Error("input " + std::to_string(i) + ": token id " + std::to_string(t) + " out of range [0, " +
                        std::to_string(hp_.n_vocab) + ")",
                    400);
  }
  if (pooling == Pooling::None) pooling = Pooling::Mean;
  std::vector<std::vector<float>> out(batch.size());
  // Passes of at most kMaxPassTokens tokens, split at sequence boundaries.
  std::vector<const std::vector<Token>*> seqs;
  std::vector<std::vector<float>*> dst;
  int64_t tokens = 0;
  auto flush = [&] {
    if (seqs.empty()) return;
    forward(seqs, pool, pooling, normalize, dst);
    seqs.clear();
    dst.clear();
    tokens = 0;
  };
  for (size_t i = 0; i < batch.size(); ++i) {
    const int64_t n = static_cast<int64_t>(batch[i].size());
    if (!seqs.empty() && tokens + n > kMaxPassTokens) flush();
    seqs.push_back(&batch[i]);
    dst.push_back(&out[i]);
    tokens += n;
  }
  flush();
  return out;
}

void EmbeddingModel::forward(const std::vector<const std::vector<Token>*>& seqs, ops::ThreadPool& pool,
                             Pooling pooling, bool normalize, std::vector<std::vector<float>*>& out) const {
  const EmbedHParams& hp = hp_;
  const int E = hp.n_embd, F = hp.n_ff, nh = hp.n_head, hd = hp.head_dim;
  // Pack sequences back to back: token t is at position pos_of[t] of its sequence.
  int64_t T = 0;
  int max_len = 0;
  for (auto* s : seqs) {
    T += static_cast<int64_t>(s->size());
    max_len = std::max(max_len, static_cast<int>(s->size()));
  }
  std::vector<int32_t> pos_of(T);
  std::vector<Token> toks(T);
  {
    int64_t t = 0;
    for (auto* s : seqs) {
      const int32_t n = static_cast<int32_t>(s->size());
      for (int32_t j = 0; j < n; ++j, ++t) {
        pos_of[t] = j;
        toks[t] = (*s)[j];
      }
    }
  }
  const EncoderKernels& ek = encoder_kernels();
  const bool packed = !layers_.empty() && !layers_[0].p_qkv.empty();
  // qkv: T rows of [q | k | v] (3E) on the packed path and for fused QKV
  // weights; else q, k, v in separate T x E buffers.
  const bool fused = packed || hp.nomic;
  std::vector<float> x(T * E), h(T * E), att(T * E), o(T * E);
  std::vector<float> qkv(fused ? T * 3 * E : 0), q(fused ? 0 : T * E), k(fused ? 0 : T * E), v(fused ? 0 : T * E);
  std::vector<float> u(T * F), g(hp.nomic ? T * F : 0);
  float* qp = fused ? qkv.data() : q.data();
  float* kp = fused ? qkv.data() + E : k.data();
  float* vp = fused ? qkv.data() + 2 * E : v.data();
  const int64_t ld = fused ? 3 * E : E;
  const int64_t scratch_n = attn_scratch_floats(max_len, hd);
  std::vector<float> scratch(static_cast<size_t>(scratch_n) * pool.n_threads());
  ops::ThreadPool::Busy busy(pool);
  auto rows = [&](auto&& fn) {
    if (T >= 4) pool.parallel_for(T, [&](int64_t t, int) { fn(t); });
    else for (int64_t t = 0; t < T; ++t) fn(t);
  };
  const float* nb = embd_norm_b_.empty() ? nullptr : embd_norm_b_.data();
  rows([&](int64_t t) {
    float* xr = x.data() + t * E;
    read_row(token_embd_, toks[t], xr);
    if (!type_row0_.empty()) ops::add(xr, type_row0_.data(), E);
    if (!hp.nomic) {
      float* tmp = h.data() + t * E;
      read_row(pos_embd_, pos_of[t], tmp);
      ops::add(xr, tmp, E);
    }
    ops::layernorm(xr, embd_norm_w_.data(), nb, xr, E, hp.norm_eps);
  });
  // Sequence starts (attention runs per sequence and head).
  std::vector<int64_t> seq_start;
  seq_start.reserve(seqs.size());
  {
    int64_t t = 0;
    for (auto* sq : seqs) {
      seq_start.push_back(t);
      t += static_cast<int64_t>(sq->size());
    }
  }

  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  auto opt = [](const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); };
  for (int l = 0; l < hp.n_layer; ++l) {
    const EncoderLayer& L = layers_[l];
    if (packed) {
      run_packed(L.p_qkv, x.data(), T, qkv.data(), 3 * E, pool);
    } else if (L.wqkv.data) {
      ops::matmul(L.wqkv, x.data(), qkv.data(), T, pool);
      if (!L.bqkv.empty()) rows([&](int64_t t) { ops::add(qkv.data() + t * 3 * E, L.bqkv.data(), 3 * E); });
    } else {
      ops::matmul(L.wq, x.data(), q.data(), T, pool);
      ops::matmul(L.wk, x.data(), k.data(), T, pool);
      ops::matmul(L.wv, x.data(), v.data(), T, pool);
      rows([&](int64_t t) {
        if (!L.bq.empty()) ops::add(q.data() + t * E, L.bq.data(), E);
        if (!L.bk.empty()) ops::add(k.data() + t * E, L.bk.data(), E);
        if (!L.bv.empty()) ops::add(v.data() + t * E, L.bv.data(), E);
      });
    }
    if (hp.nomic) {
      rows([&](int64_t t) {
        rope_.apply(qp + t * ld, nh, hd, pos_of[t]);
        rope_.apply(kp + t * ld, nh, hd, pos_of[t]);
      });
    }
    pool.parallel_for(static_cast<int64_t>(seqs.size()) * nh, [&](int64_t task, int thread) {
      const int64_t si = task / nh;
      const int hh = static_cast<int>(task % nh);
      const int64_t t0 = seq_start[si];
      const int64_t off = t0 * ld + static_cast<int64_t>(hh) * hd;
      ek.attn(qp + off, kp + off, vp + off, ld, att.data() + t0 * E + static_cast<int64_t>(hh) * hd, E,
              static_cast<int>(seqs[si]->size()), hd, scale, scratch.data() + static_cast<size_t>(thread) * scratch_n);
    });
    if (packed) run_packed(L.p_o, att.data(), T, o.data(), E, pool);
    else ops::matmul(L.wo, att.data(), o.data(), T, pool);
    const float* bo = packed ? nullptr : opt(L.bo);  // packed: the bias is in the GEMM
    rows([&](int64_t t) {
      ek.add_norm(x.data() + t * E, o.data() + t * E, bo, L.attn_norm_w.data(), opt(L.attn_norm_b), E, hp.norm_eps);
    });
    if (packed) run_packed(L.p_up, x.data(), T, u.data(), F, pool);
    else ops::matmul(L.ffn_up, x.data(), u.data(), T, pool);
    if (hp.nomic) {
      if (packed) run_packed(L.p_gate, x.data(), T, g.data(), F, pool);
      else ops::matmul(L.ffn_gate, x.data(), g.data(), T, pool);
      rows([&](int64_t t) { ops::swiglu(g.data() + t * F, u.data() + t * F, u.data() + t * F, F); });
    } else {
      rows([&](int64_t t) {
        float* ur = u.data() + t * F;
        if (!packed && !L.ffn_up_b.empty()) ops::add(ur, L.ffn_up_b.data(), F);
        ek.gelu(ur, F);
      });
    }
    if (packed) run_packed(L.p_down, u.data(), T, o.data(), E, pool);
    else ops::matmul(L.ffn_down, u.data(), o.data(), T, pool);
    const float* bd = packed ? nullptr : opt(L.ffn_down_b);
    rows([&](int64_t t) {
      ek.add_norm(x.data() + t * E, o.data() + t * E, bd, L.out_norm_w.data(), opt(L.out_norm_b), E, hp.norm_eps);
    });
  }

  // Pool and normalise each sequence.
  int64_t t0 = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t n = static_cast<int64_t>(seqs[s]->size());
    std::vector<double> acc(E, 0.0);
    if (pooling == Pooling::Cls) {
      for (int i = 0; i < E; ++i) acc[i] = x[t0 * E + i];
    } else if (pooling == Pooling::Last) {
      for (int i = 0; i < E; ++i) acc[i] = x[(t0 + n - 1) * E + i];
    } else {
      for (int64_t t = t0; t < t0 + n; ++t)
        for (int i = 0; i < E; ++i) acc[i] += x[t * E + i];
      for (int i = 0; i < E; ++i) acc[i] /= static_cast<double>(n);
    }
    double ss = 0.0;
    for (int i = 0; i < E; ++i) ss += acc[i] * acc[i];
    const double inv = normalize && ss > 0.0 ? 1.0 / std::sqrt(ss) : 1.0;
    std::vector<float>& r = *out[s];
    r.resize(E);
    for (int i = 0; i < E; ++i) r[i] = static_cast<float>(acc[i] * inv);
    t0 += n;
  }
}

}  // namespace lmhost
