// Synthetic encoder (embedding) models: bert and nomic-bert GGUF files with
// seeded random weights and a WordPiece vocab of our own making (real BERT
// id layout: [PAD] 0, [unused*], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103,
// characters, common English words, "##" continuation pieces, letter n-grams),
// stored the way llama.cpp's converter stores WordPiece vocabs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gguf/gguf.h"
#include "model/synth.h"
#include "model/synth_util.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

namespace lmhost::model {

namespace {

constexpr const char* kWords =
    "the of and to in is was he for it with as his on be at by i this had not are but from or have an they which one "
    "you were her all she there would their we him been has when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over man "
    "me even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year off come since "
    "against go came right used take three house world cat sat mat dog hello sentence different completely about "
    "database databases index indexes search query vector embedding model text word language learn book school "
    "water city music food play game open close read write small large fast slow happy light dark green blue red "
    "computer data server memory network code test fish bird tree river mountain sun moon star night morning";


struct WpVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
};

WpVocab build_wordpiece(int64_t n) {
  if (n < 400) throw Error("synth: a WordPiece vocab needs at least 400 tokens");
  WpVocab v;
  std::set<std::string> seen;
  // As llama.cpp's converter stores WordPiece vocabs: a word-initial piece
  // gets the "\u2581" prefix, a "##" continuation piece loses its "##";
  // bracketed special tokens stay as they are.
  auto add = [&](const std::string& raw, int type) {
    if (static_cast<int64_t>(v.tokens.size()) >= n) return;
    std::string t = raw;
    if (raw.rfind("##", 0) == 0) t = raw.substr(2);
    else if (!(raw.size() > 2 && raw.front() == '[' && raw.back() == ']')) t = "\xe2\x96\x81" + raw;
    if (!seen.insert(t).second) return;
    v.tokens.push_back(t);
    v.types.push_back(type);
  };
  add("[PAD]", 3);
  for (int i = 0; static_cast<int>(v.tokens.size()) < 100; ++i) add("[unused" + std::to_string(i) + "]", 1);
  add("[UNK]", 3);
  add("[CLS]", 3);
  add("[SEP]", 3);
  add("[MASK]", 3);
  for (int c = 33; c < 127; ++c) {
    if (c >= 'A' && c <= 'Z') continue;  // uncased
    add(std::string(1, static_cast<char>(c)), 1);
  }
  for (int c = 33; c < 127; ++c) {
    if (c >= 'A' && c <= 'Z') continue;
    add("##" + std::string(1, static_cast<char>(c)), 1);
  }
  {
    std::string w;
    for (const char* p = kWords;; ++p) {
      if (*p == ' ' || *p == 0) {
        if (!w.empty()) add(w, 1);
        w.clear();
        if (!*p) break;
      } else {
        w += *p;
      }
    }
  }
  for (const char* suf : {"s", "ed", "ing", "ly", "er", "est", "es", "tion", "ment", "ness"}) add(std::string("##") + suf, 1);
  // Letter n-grams, words and continuations alternating, until full.
  for (int len = 2; static_cast<int64_t>(v.tokens.size()) < n && len <= 4; ++len) {
    int64_t total = 1;
    for (int i = 0; i < len; ++i) total *= 26;
    for (int64_t k = 0; k < total && static_cast<int64_t>(v.tokens.size()) < n; ++k) {
      std::string s(len, 'a');
      int64_t x = k;
      for (int i = len - 1; i >= 0; --i, x /= 26) s[i] = static_cast<char>('a' + x % 26);
      add(s, 1);
      add("##" + s, 1);
    }
  }
  if (static_cast<int64_t>(v.tokens.size()) != n) throw Error("synth: internal error: WordPiece vocab size");
  return v;
}

struct Plan {
  std::string name;
  std::vector<int64_t> dims;
  DType type;
  enum Kind { Matrix, Norm, Bias } kind;
};

}  // namespace

SynthResult synth_encoder_model(const SynthSpec& spec, const std::string& path, int threads) {
  const auto t0 = std::chrono::steady_clock::now();
  spec.validate();
  const bool nomic = spec.arch == "nomic-bert";
  const WpVocab vocab = build_wordpiece(spec.vocab);

  gguf::Writer w;
  const std::string& a = spec.arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", spec.name);
  w.set_string("general.description", "synthetic embedding model written by lmhost synth: random weights, seed " +
                                          std::to_string(spec.seed));
  w.set_u32("general.file_type", static_cast<uint32_t>(*synth_file_type_id(spec.type)));
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(spec.ctx));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(spec.dim));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(spec.layers));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(spec.ff));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(spec.heads));
  w.set_f32(a + ".attention.layer_norm_epsilon", spec.norm_eps);
  w.set_bool(a + ".attention.causal", false);
  w.set_u32(a + ".pooling_type", static_cast<uint32_t>(spec.pooling));
  if (nomic) w.set_f32(a + ".rope.freq_base", spec.rope_base);

  w.set_u32("tokenizer.ggml.token_type_count", 2);
  w.set_string("tokenizer.ggml.model", "bert");
  w.set_string("tokenizer.ggml.pre", nomic ? "jina-v2-en" : "bert-bge");
  w.set_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.set_i32_array("tokenizer.ggml.token_type", vocab.types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 100);
  w.set_u32("tokenizer.ggml.seperator_token_id", 102);
  w.set_u32("tokenizer.ggml.padding_token_id", 0);
  w.set_u32("tokenizer.ggml.cls_token_id", 101);
  w.set_u32("tokenizer.ggml.mask_token_id", 103);

  std::vector<Plan> plan;
  auto add = [&](const std::string& name, std::vector<int64_t> dims, Plan::Kind kind, bool keep_f32 = false) {
    plan.push_back({name, dims, keep_f32 ? DType::F32 : synth_tensor_type(spec, name, dims), kind});
  };
  const int64_t E = spec.dim, F = spec.ff;
  add("token_embd.weight", {E, spec.vocab}, Plan::Matrix);
  if (!nomic) add("position_embd.weight", {E, spec.ctx}, Plan::Matrix, true);
  add("token_types.weight", {E, 2}, Plan::Matrix, true);
  add("token_embd_norm.weight", {E}, Plan::Norm);
  add("token_embd_norm.bias", {E}, Plan::Bias);
  for (int64_t l = 0; l < spec.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    if (nomic) {
      add(p + "attn_qkv.weight", {E, 3 * E}, Plan::Matrix);
    } else {
      add(p + "attn_q.weight", {E, E}, Plan::Matrix);
      add(p + "attn_q.bias", {E}, Plan::Bias);
      add(p + "attn_k.weight", {E, E}, Plan::Matrix);
      add(p + "attn_k.bias", {E}, Plan::Bias);
      add(p + "attn_v.weight", {E, E}, Plan::Matrix);
      add(p + "attn_v.bias", {E}, Plan::Bias);
    }
    add(p + "attn_output.weight", {E, E}, Plan::Matrix);
    if (!nomic) add(p + "attn_output.bias", {E}, Plan::Bias);
    add(p + "attn_output_norm.weight", {E}, Plan::Norm);
    add(p + "attn_output_norm.bias", {E}, Plan::Bias);
    add(p + "ffn_up.weight", {E, F}, Plan::Matrix);
    if (nomic) {
      add(p + "ffn_gate.weight", {E, F}, Plan::Matrix);
    } else {
      add(p + "ffn_up.bias", {F}, Plan::Bias);
    }
    add(p + "ffn_down.weight", {F, E}, Plan::Matrix);
    if (!nomic) add(p + "ffn_down.bias", {E}, Plan::Bias);
    add(p + "layer_output_norm.weight", {E}, Plan::Norm);
    add(p + "layer_output_norm.bias", {E}, Plan::Bias);
  }

  unsigned n_threads = threads > 0 ? static_cast<unsigned>(threads) : std::max(1u, std::thread::hardware_concurrency());
  n_threads = std::min(n_threads, 16u);
  SynthResult res;
  for (const auto& t : plan) {
    int64_t n = 1;
    for (auto d : t.dims) n *= d;
    res.parameters += static_cast<uint64_t>(n);
    const uint64_t tseed = synth_util::hash_name(t.name, spec.seed);
    w.add_tensor(t.name, t.type, t.dims, [t, tseed, n_threads](uint8_t* dst, size_t nbytes) {
      synth_util::fill_rows(t.type, t.dims[0], dst, nbytes, n_threads, [&](int64_t r, float* buf) {
        uint64_t s = synth_util::row_seed(tseed, r);
        for (int64_t i = 0; i < t.dims[0]; ++i) {
          const float z = synth_util::approx_normal(synth_util::splitmix64(s));
          buf[i] = t.kind == Plan::Norm ? 1.0f + 0.05f * z : (t.kind == Plan::Bias ? 0.02f * z : 0.05f * z);
        }
      });
    });
  }
  res.tensors = plan.size();
  w.write(path);
  res.file_bytes = std::filesystem::file_size(path);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace lmhost::model
