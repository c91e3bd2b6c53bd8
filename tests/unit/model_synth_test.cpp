// lmhost synth: every tensor's shape and type, the metadata, the llama.cpp
// quantization mix, and that the synthetic tokenizers round-trip text and
// the model runs to finite, varied logits. Tiny shapes only (fast).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "gguf/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace lmhost;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) { return (fs::temp_directory_path() / ("lmhost_synth_" + name)).string(); }

model::SynthSpec tiny(const std::string& shape_like, const std::string& type) {
  auto s = *model::synth_shape(shape_like);
  s.dim = 256, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.ff = 512, s.ctx = 256;
  s.vocab = s.tokenizer == model::SynthTokenizer::Llama3 ? 1100 : 640;
  s.type = type;
  return s;
}

void check_structure(const model::SynthSpec& s, const gguf::File& f) {
  EXPECT_EQ(f.architecture(), s.arch);
  EXPECT_EQ(*f.get_arch_int("embedding_length"), s.dim);
  EXPECT_EQ(*f.get_arch_int("block_count"), s.layers);
  EXPECT_EQ(*f.get_arch_int("attention.head_count"), s.heads);
  EXPECT_EQ(*f.get_arch_int("attention.head_count_kv"), s.kv_heads);
  EXPECT_EQ(*f.get_arch_int("feed_forward_length"), s.ff);
  EXPECT_EQ(*f.get_arch_int("context_length"), s.ctx);
  EXPECT_EQ(*f.get_int("general.file_type"), *model::synth_file_type_id(s.type));
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->array_size(), static_cast<uint64_t>(s.vocab));
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->array_size(), static_cast<uint64_t>(s.vocab));
  EXPECT_TRUE(f.get_string("tokenizer.chat_template").has_value());
  const int64_t hd = s.dim / s.heads;
  size_t expected = 2 + (s.tied ? 0 : 1) + (s.llama3_rope ? 1 : 0) + s.layers * (9 + (s.qkv_bias ? 3 : 0));
  EXPECT_EQ(f.tensors().size(), expected);
  auto dims_of = [&](const std::string& n) {
    const auto* t = f.tensor(n);
    EXPECT_NE(t, nullptr) << n;
    return t ? t->dims : std::vector<int64_t>{};
  };
  EXPECT_EQ(dims_of("token_embd.weight"), (std::vector<int64_t>{s.dim, s.vocab}));
  EXPECT_EQ(dims_of("output_norm.weight"), (std::vector<int64_t>{s.dim}));
  EXPECT_EQ(f.tensor("output.weight") != nullptr, !s.tied);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(dims_of(p + "attn_q.weight"), (std::vector<int64_t>{s.dim, s.heads * hd}));
    EXPECT_EQ(dims_of(p + "attn_k.weight"), (std::vector<int64_t>{s.dim, s.kv_heads * hd}));
    EXPECT_EQ(dims_of(p + "attn_v.weight"), (std::vector<int64_t>{s.dim, s.kv_heads * hd}));
    EXPECT_EQ(dims_of(p + "attn_output.weight"), (std::vector<int64_t>{s.heads * hd, s.dim}));
    EXPECT_EQ(dims_of(p + "ffn_gate.weight"), (std::vector<int64_t>{s.dim, s.ff}));
    EXPECT_EQ(dims_of(p + "ffn_up.weight"), (std::vector<int64_t>{s.dim, s.ff}));
    EXPECT_EQ(dims_of(p + "ffn_down.weight"), (std::vector<int64_t>{s.ff, s.dim}));
    EXPECT_EQ(dims_of(p + "attn_norm.weight"), (std::vector<int64_t>{s.dim}));
    if (s.qkv_bias) {
      EXPECT_EQ(dims_of(p + "attn_k.bias"), (std::vector<int64_t>{s.kv_heads * hd}));
    }
  }
  for (auto& t : f.tensors()) {
    EXPECT_EQ(t.type, model::synth_tensor_type(s, t.name, t.dims)) << t.name;
    if (t.dims.size() == 1) {
      EXPECT_EQ(t.type, DType::F32) << t.name;
    }
  }
}

}  // namespace

TEST(Synth, ShapesMatchTheRealModels) {
  auto q = *model::synth_shape("qwen2.5-0.5b");
  EXPECT_EQ(q.arch, "qwen2");
  EXPECT_EQ(q.dim, 896);
  EXPECT_EQ(q.layers, 24);
  EXPECT_EQ(q.heads, 14);
  EXPECT_EQ(q.kv_heads, 2);
  EXPECT_EQ(q.ff, 4864);
  EXPECT_EQ(q.vocab, 151936);
  EXPECT_TRUE(q.tied && q.qkv_bias);
  auto l = *model::synth_shape("llama-3.2-1b");
  EXPECT_EQ(l.dim, 2048);
  EXPECT_EQ(l.kv_heads, 8);
  EXPECT_EQ(l.vocab, 128256);
  EXPECT_TRUE(l.llama3_rope && l.tied);
  auto t = *model::synth_shape("tinyllama-1.1b");
  EXPECT_EQ(t.layers, 22);
  EXPECT_EQ(t.ff, 5632);
  EXPECT_FALSE(t.tied);
  EXPECT_FALSE(model::synth_shape("gpt-5").has_value());
}

TEST(Synth, QuantMixFollowsLlamaCpp) {
  auto s = *model::synth_shape("tinyllama-1.1b");  // 22 layers, rows 2048 / 5632
  s.type = "Q4_K_M";
  EXPECT_EQ(model::synth_tensor_type(s, "output.weight", {2048, 32000}), DType::Q6_K);
  EXPECT_EQ(model::synth_tensor_type(s, "token_embd.weight", {2048, 32000}), DType::Q4_K);
  EXPECT_EQ(model::synth_tensor_type(s, "blk.0.attn_v.weight", {2048, 256}), DType::Q6_K);   // first 1/8
  EXPECT_EQ(model::synth_tensor_type(s, "blk.3.attn_v.weight", {2048, 256}), DType::Q4_K);
  EXPECT_EQ(model::synth_tensor_type(s, "blk.4.ffn_down.weight", {5632, 2048}), DType::Q6_K);  // (4-2)%3==2
  EXPECT_EQ(model::synth_tensor_type(s, "blk.21.ffn_down.weight", {5632, 2048}), DType::Q6_K);  // last 1/8
  EXPECT_EQ(model::synth_tensor_type(s, "blk.5.attn_q.weight", {2048, 2048}), DType::Q4_K);
  EXPECT_EQ(model::synth_tensor_type(s, "blk.5.attn_norm.weight", {2048}), DType::F32);
  s.type = "Q4_0";
  EXPECT_EQ(model::synth_tensor_type(s, "output.weight", {2048, 32000}), DType::Q6_K);
  EXPECT_EQ(model::synth_tensor_type(s, "blk.0.ffn_down.weight", {5632, 2048}), DType::Q4_0);
  s.type = "Q8_0";
  EXPECT_EQ(model::synth_tensor_type(s, "output.weight", {2048, 32000}), DType::Q8_0);
  // Rows not a multiple of 256 (qwen2.5-0.5b's 896) fall back.
  auto q = *model::synth_shape("qwen2.5-0.5b");
  q.type = "Q4_K_M";
  EXPECT_EQ(model::synth_tensor_type(q, "token_embd.weight", {896, 151936}), DType::Q8_0);  // tied output
  EXPECT_EQ(model::synth_tensor_type(q, "blk.5.attn_q.weight", {896, 896}), DType::Q5_0);
  EXPECT_EQ(model::synth_tensor_type(q, "blk.0.attn_v.weight", {896, 128}), DType::Q8_0);
  EXPECT_EQ(model::synth_tensor_type(q, "blk.0.ffn_down.weight", {4864, 896}), DType::Q6_K);  // 4864 = 19*256
  q.type = "Q5_K_M";
  EXPECT_EQ(model::synth_tensor_type(q, "blk.5.attn_q.weight", {896, 896}), DType::Q5_1);
}

TEST(Synth, EveryTypeAndTokenizerWritesAValidFile) {
  for (const std::string shape : {"qwen2.5-0.5b", "llama-3.2-1b", "tinyllama-1.1b"}) {
    for (const auto& type : model::synth_file_types()) {
      SCOPED_TRACE(shape + " " + type);
      auto s = tiny(shape, type);
      const std::string path = tmp_path("t.gguf");
      auto r = model::synth_model(s, path, 2);
      auto f = gguf::File::open(path);
      check_structure(s, *f);
      EXPECT_EQ(r.file_bytes, f->file_size());
      fs::remove(path);
    }
  }
}

TEST(Synth, DeterministicPerSeed) {
  auto s = tiny("tinyllama-1.1b", "Q4_0");
  s.layers = 1;
  model::synth_model(s, tmp_path("a.gguf"), 1);
  model::synth_model(s, tmp_path("b.gguf"), 2);
  s.seed = 7;
  model::synth_model(s, tmp_path("c.gguf"), 2);
  auto a = gguf::File::open(tmp_path("a.gguf")), b = gguf::File::open(tmp_path("b.gguf")),
       c = gguf::File::open(tmp_path("c.gguf"));
  const auto* ta = a->tensor("blk.0.ffn_up.weight");
  const auto* tb = b->tensor("blk.0.ffn_up.weight");
  const auto* tc = c->tensor("blk.0.ffn_up.weight");
  EXPECT_EQ(0, std::memcmp(ta->data, tb->data, ta->nbytes));  // thread count does not matter
  EXPECT_NE(0, std::memcmp(ta->data, tc->data, ta->nbytes));
  for (auto n : {"a.gguf", "b.gguf", "c.gguf"}) fs::remove(tmp_path(n));
}

TEST(Synth, Llama3RopeFactors) {
  auto s = tiny("llama-3.2-1b", "F32");
  s.layers = 1;
  model::synth_model(s, tmp_path("r.gguf"), 1);
  auto f = gguf::File::open(tmp_path("r.gguf"));
  const auto* t = f->tensor("rope_freqs.weight");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->dims, (std::vector<int64_t>{s.dim / s.heads / 2}));
  const float* v = reinterpret_cast<const float*>(t->data);
  const int64_t n = t->dims[0];
  EXPECT_FLOAT_EQ(v[0], 1.0f);       // highest frequency: unscaled
  EXPECT_FLOAT_EQ(v[n - 1], 32.0f);  // lowest frequency: divided by the factor
  for (int64_t i = 1; i < n; ++i) EXPECT_GE(v[i], v[i - 1]);
  fs::remove(tmp_path("r.gguf"));
}

TEST(Synth, RejectsBadSpecs) {
  auto s = tiny("tinyllama-1.1b", "F16");
  s.heads = 3;
  EXPECT_THROW(model::synth_model(s, tmp_path("x.gguf"), 1), Error);
  s = tiny("tinyllama-1.1b", "Q3_K_Z");
  EXPECT_THROW(model::synth_model(s, tmp_path("x.gguf"), 1), Error);
  s = tiny("tinyllama-1.1b", "F16");
  s.vocab = 100;
  EXPECT_THROW(model::synth_model(s, tmp_path("x.gguf"), 1), Error);
  EXPECT_FALSE(fs::exists(tmp_path("x.gguf")));
}

// The tokenizer built into each file round-trips text, knows its special
// tokens, and the model runs to finite, varied logits.
TEST(Synth, TokenizerRoundTripAndForward) {
  for (const std::string shape : {"demo", "qwen2.5-0.5b", "llama-3.2-1b", "tinyllama-1.1b"}) {
    SCOPED_TRACE(shape);
    auto s = shape == "demo" ? *model::synth_shape("demo") : tiny(shape, "Q8_0");
    if (shape == "demo") s.type = "Q8_0";
    const std::string path = tmp_path("tok.gguf");
    model::synth_model(s, path, 2);
    auto f = gguf::File::open(path);
    auto tok = Tokenizer::from_gguf(*f);
    EXPECT_EQ(tok->n_vocab(), s.vocab);
    const std::string text = "Hello world! The teacher said: learning takes time. 42 \xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82";
    auto ids = tok->encode(text, false, false);
    EXPECT_LT(ids.size(), text.size());  // merges do compress
    EXPECT_EQ(tok->decode(ids), text);
    for (Token id : ids) EXPECT_TRUE(id >= 0 && id < s.vocab);
    if (s.tokenizer == model::SynthTokenizer::Qwen) {
      auto sp = tok->encode("<|im_start|>user\nhi<|im_end|>", false, true);
      EXPECT_EQ(tok->token_text(sp.front()), "<|im_start|>");
      EXPECT_TRUE(tok->is_eog(sp.back()));
    } else if (s.tokenizer == model::SynthTokenizer::Llama3) {
      auto sp = tok->encode("hi<|eot_id|>", true, true);
      EXPECT_EQ(tok->token_text(sp.front()), "<|begin_of_text|>");
      EXPECT_TRUE(tok->is_eog(sp.back()));
    } else {
      EXPECT_EQ(tok->token_text(tok->bos()), "<s>");
      EXPECT_EQ(tok->encode("hi", true, false).front(), tok->bos());
    }

    auto m = Model::load(f);
    Context ctx(m, 64, 1, 2);
    std::vector<BatchEntry> batch;
    for (size_t i = 0; i < ids.size(); ++i) batch.push_back({ids[i], static_cast<int32_t>(i), 0, i + 1 == ids.size()});
    auto logits = ctx.forward(batch);
    ASSERT_EQ(logits.size(), static_cast<size_t>(s.vocab));
    double sum = 0, sq = 0;
    for (float x : logits) {
      ASSERT_TRUE(std::isfinite(x));
      sum += x;
      sq += x * x;
    }
    const double mean = sum / logits.size();
    EXPECT_GT(std::sqrt(sq / logits.size() - mean * mean), 1e-3);
    fs::remove(path);
  }
}
