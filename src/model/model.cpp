#include "model/model.h"
#include "model/weights.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "tensor/kernels.h"
#include "tensor/packed.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost {

using weights::load_matrix;
using weights::load_vector;
using weights::optional_int;
using weights::required_int;
using weights::shape_str;

HParams HParams::from_gguf(const gguf::File& f) {
  HParams hp;
  const auto arch = f.get_string("general.architecture");
  if (!arch) throw Error(f.path() + ": missing metadata key 'general.architecture'");
  hp.arch_name = std::string(*arch);
  if (hp.arch_name == "llama") {
    hp.arch = Arch::Llama;
    hp.rope_style = ops::RopeStyle::Normal;  // convert permutes Q/K for adjacent pairs
  } else if (hp.arch_name == "qwen2") {
    hp.arch = Arch::Qwen2;
    hp.rope_style = ops::RopeStyle::NeoX;
  } else {
    throw Error(f.path() + ": architecture '" + hp.arch_name + "' is not supported (supported: llama, qwen2)");
  }
  const std::string& a = hp.arch_name;
  hp.n_ctx_train = required_int(f, a, "context_length");
  hp.n_embd = required_int(f, a, "embedding_length");
  hp.n_layer = required_int(f, a, "block_count");
  hp.n_ff = required_int(f, a, "feed_forward_length");
  hp.n_head = required_int(f, a, "attention.head_count");
  hp.n_head_kv = optional_int(f, a, "attention.head_count_kv", hp.n_head);
  if (hp.n_head % hp.n_head_kv != 0)
    throw Error(f.path() + ": attention.head_count " + std::to_string(hp.n_head) +
                " is not a multiple of attention.head_count_kv " + std::to_string(hp.n_head_kv));
  const int def_hd = hp.n_embd % hp.n_head == 0 ? hp.n_embd / hp.n_head : 0;
  hp.head_dim_k = optional_int(f, a, "attention.key_length", def_hd);
  hp.head_dim_v = optional_int(f, a, "attention.value_length", def_hd);
  if (hp.head_dim_k <= 0 || hp.head_dim_v <= 0)
    throw Error(f.path() + ": embedding_length " + std::to_string(hp.n_embd) + " is not a multiple of head_count " +
                std::to_string(hp.n_head) + " and attention.key_length is not given");
  const auto eps = f.get_arch_float("attention.layer_norm_rms_epsilon");
  if (!eps) throw Error(f.path() + ": missing metadata key '" + a + ".attention.layer_norm_rms_epsilon'");
  if (!(*eps > 0.0 && *eps < 1.0))
    throw Error(f.path() + ": " + a + ".attention.layer_norm_rms_epsilon has invalid value " + std::to_string(*eps));
  hp.rms_eps = static_cast<float>(*eps);

  hp.n_rot = optional_int(f, a, "rope.dimension_count", hp.head_dim_k);
  if (hp.n_rot % 2 != 0 || hp.n_rot > hp.head_dim_k)
    throw Error(f.path() + ": " + a + ".rope.dimension_count " + std::to_string(hp.n_rot) +
                " must be even and at most the head size " + std::to_string(hp.head_dim_k));
  hp.rope_freq_base = static_cast<float>(f.get_arch_float("rope.freq_base").value_or(10000.0));
  if (!(hp.rope_freq_base > 0.0f))
    throw Error(f.path() + ": " + a + ".rope.freq_base must be positive");
  if (auto st = f.get_string(a + ".rope.scaling.type")) hp.rope_scaling_type = std::string(*st);
  auto factor = f.get_arch_float("rope.scaling.factor");
  if (!factor) factor = f.get_arch_float("rope.scale_linear");  // older files
  if (factor && *factor > 0.0) hp.rope_scaling_factor = static_cast<float>(*factor);
  hp.rope_low_freq_factor = static_cast<float>(f.get_arch_float("rope.scaling.low_freq_factor").value_or(1.0));
  hp.rope_high_freq_factor = static_cast<float>(f.get_arch_float("rope.scaling.high_freq_factor").value_or(4.0));
  hp.rope_orig_ctx = static_cast<int>(f.get_arch_int("rope.scaling.original_context_length").value_or(0));
  const std::string& st = hp.rope_scaling_type;
  if (st.empty() || st == "none") {
    if (st.empty() && f.find(a + ".rope.scale_linear") && hp.rope_scaling_factor != 1.0f)
      hp.rope_freq_scale = 1.0f / hp.rope_scaling_factor;
  } else if (st == "linear") {
    hp.rope_freq_scale = 1.0f / hp.rope_scaling_factor;
  } else if (st == "llama3") {
    // frequency factors computed in Model::load unless rope_freqs.weight exists
  } else {
    throw Error(f.path() + ": rope scaling type '" + st + "' is not supported yet (supported: none, linear, llama3)");
  }
  return hp;
}

bool Model::pack_by_default() {
  static const bool on = [] {
    const char* v = std::getenv("LMHOST_PACK");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

std::shared_ptr<Model> Model::load(std::shared_ptr<gguf::File> file, bool pack) {
  if (!file) throw Error("Model::load: no file");
  std::shared_ptr<Model> m(new Model());
  m->file_ = file;
  const gguf::File& f = *file;
  HParams& hp = m->hp_;
  hp = HParams::from_gguf(f);

  const gguf::TensorInfo* emb = f.tensor("token_embd.weight");
  if (!emb) throw Error(f.path() + ": tensor 'token_embd.weight' is missing");
  if (emb->dims.size() < 2 || emb->dims[0] != hp.n_embd || emb->dims[1] <= 0)
    throw Error(f.path() + ": tensor 'token_embd.weight' has shape " +
                shape_str(emb->dims) + ", expected [" + std::to_string(hp.n_embd) +
                ", n_vocab]");
  hp.n_vocab = static_cast<int>(emb->dims[1]);
  {
    const DType et = emb->type;
    const uint32_t ti = static_cast<uint32_t>(et);
    if (!(et == DType::F32 || et == DType::F16 || et == DType::BF16) &&
        (ti >= kDTypeCount || !kernels().dequantize[ti]))
      throw Error(f.path() + ": tensor 'token_embd.weight' has type " + dtype_name(et) +
                  ", which lmhost cannot read yet");
    if (hp.n_embd % dtype_info(et).block_size != 0)
      throw Error(f.path() + ": tensor 'token_embd.weight' rows do not fit the block size of its type");
  }
  m->token_embd_ = emb->view();
  m->output_norm_ = load_vector(f, "output_norm.weight", hp.n_embd, true);
  if (f.tensor("output.weight")) {
    m->output_ = load_matrix(f, "output.weight", hp.n_embd, hp.n_vocab);
  } else {
    m->output_ = load_matrix(f, "token_embd.weight", hp.n_embd, hp.n_vocab);
    m->tied_output_ = true;
  }

  const int E = hp.n_embd, Q = hp.n_head * hp.head_dim_k, KV_K = hp.n_embd_k_gqa(), KV_V = hp.n_embd_v_gqa();
  const int O = hp.n_head * hp.head_dim_v;
  m->layers_.resize(hp.n_layer);
  for (int l = 0; l < hp.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& L = m->layers_[l];
    L.attn_norm = load_vector(f, p + "attn_norm.weight", E, true);
    L.wq = load_matrix(f, p + "attn_q.weight", E, Q);
    L.wk = load_matrix(f, p + "attn_k.weight", E, KV_K);
    L.wv = load_matrix(f, p + "attn_v.weight", E, KV_V);
    L.wo = load_matrix(f, p + "attn_output.weight", O, E);
    const bool need_bias = hp.arch == Arch::Qwen2;
    L.bq = load_vector(f, p + "attn_q.bias", Q, need_bias);
    L.bk = load_vector(f, p + "attn_k.bias", KV_K, need_bias);
    L.bv = load_vector(f, p + "attn_v.bias", KV_V, need_bias);
    L.ffn_norm = load_vector(f, p + "ffn_norm.weight", E, true);
    L.ffn_gate = load_matrix(f, p + "ffn_gate.weight", E, hp.n_ff);
    L.ffn_up = load_matrix(f, p + "ffn_up.weight", E, hp.n_ff);
    L.ffn_down = load_matrix(f, p + "ffn_down.weight", hp.n_ff, E);
  }

  ops::RopeConfig& rc = m->rope_;
  rc.style = hp.rope_style;
  rc.n_rot = hp.n_rot;
  rc.freq_base = hp.rope_freq_base;
  rc.freq_scale = hp.rope_freq_scale;
  if (f.tensor("rope_freqs.weight")) {
    rc.freq_factors = load_vector(f, "rope_freqs.weight", hp.n_rot / 2, true);
  } else if (hp.rope_scaling_type == "llama3") {
    const float orig = hp.rope_orig_ctx > 0 ? static_cast<float>(hp.rope_orig_ctx) : 8192.0f;
    rc.freq_factors = ops::llama3_freq_factors(hp.n_rot, hp.rope_freq_base, hp.rope_scaling_factor,
                                               hp.rope_low_freq_factor, hp.rope_high_freq_factor, orig);
  }
  for (float ff : rc.freq_factors)
    if (!(ff > 0.0f)) throw Error(f.path() + ": rope frequency factors must be positive");
  if (pack) m->pack_weights();
  return m;
}

// The layer matrices and the output matrix that have a packed layout on this
// CPU are copied into it, two threads at a time; their file pages are
// released, so resident memory stays about the file's size. An untied token
// embedding table stays in the file (rows are looked up one by one).
void Model::pack_weights() {
  const Kernels& k = kernels();
  std::vector<TensorView*> todo;
  auto consider = [&](TensorView& W) {
    if (packable(W.type, W.ne[0], W.n_rows(), k)) todo.push_back(&W);
  };
  for (LayerWeights& L : layers_)
    for (TensorView* W : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) consider(*W);
  consider(output_);  // when tied, token_embd_ becomes the same packed matrix (below)
  if (todo.empty()) return;
  std::vector<size_t> at(todo.size());
  size_t total = 0;
  for (size_t i = 0; i < todo.size(); ++i) {
    at[i] = total;
    total += (todo[i]->nbytes + 63) / 64 * 64;
  }
  packed_ = AnonMemory(total);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
      TensorView& W = *todo[i];
      uint8_t* dst = packed_.data() + at[i];
      pack_x16(W.type, W.data, W.row_stride(), W.ne[0], W.n_rows(), dst);
      file_->release(W.data, W.nbytes);
      W.data = dst;
      W.type = packed_type(W.type, k);
    }
  };
  std::thread helper(work);
  work();
  helper.join();
  packed_bytes_ = total;
  // The embedding lookups of a tied model read the packed output matrix
  // (one 16-row group unpacked per token): otherwise every looked-up row
  // maps file pages again (in 2 MiB steps where the page cache holds large
  // folios: ~45 MiB after one short chat on qwen2.5-0.5b).
  if (tied_output_ && output_.type != token_embd_.type) {
    token_embd_.data = output_.data;
    token_embd_.type = output_.type;
  }
}

size_t Model::weight_bytes() const {
  size_t n = token_embd_.nbytes + (tied_output_ ? 0 : output_.nbytes);
  for (const auto& L : layers_)
    n += L.wq.nbytes + L.wk.nbytes + L.wv.nbytes + L.wo.nbytes + L.ffn_gate.nbytes + L.ffn_up.nbytes +
         L.ffn_down.nbytes;
  return n;
}

}  // namespace lmhost
