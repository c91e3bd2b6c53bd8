// Embedding models without ../shared: synthesized bert / nomic-bert files.
// A batch of sequences of several lengths gives what each gives alone;
// pooling variants; L2 norm; errors for bad input and bad files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/bert.h"
#include "model/synth.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace lmhost;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<gguf::File> synth(const std::string& tag, model::SynthSpec s) {
  const fs::path p = fs::temp_directory_path() / ("lmhost_embed_" + tag + "_" + std::to_string(::getpid()) + ".gguf");
  model::synth_model(s, p.string(), 2);
  auto f = gguf::File::open(p.string());
  fs::remove(p);  // the mapping stays valid
  return f;
}

model::SynthSpec small(const std::string& arch, int pooling = 1, const std::string& type = "F32") {
  model::SynthSpec s;
  s.arch = arch;
  s.dim = 64, s.layers = 2, s.heads = 4, s.kv_heads = 4, s.ff = 128, s.vocab = 1000, s.ctx = 64;
  s.pooling = pooling;
  s.rope_base = 1000.0f;
  s.type = type;
  return s;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}

std::vector<std::vector<Token>> seqs() {
  std::vector<std::vector<Token>> b;
  for (int len : {1, 2, 7, 33, 64, 5}) {
    std::vector<Token> s{101};
    for (int i = 1; i < len - 1; ++i) s.push_back(200 + (i * 37 + len) % 700);
    if (len > 1) s.push_back(102);
    b.push_back(s);
  }
  return b;
}

class EmbedArch : public ::testing::TestWithParam<std::string> {};

TEST_P(EmbedArch, BatchEqualsAlone) {
  auto f = synth(GetParam(), small(GetParam()));
  ASSERT_TRUE(is_embedding_model(*f));
  auto m = EmbeddingModel::load(f);
  EXPECT_EQ(m->n_embd(), 64);
  EXPECT_EQ(m->n_ctx(), 64);
  ops::ThreadPool pool(2);
  const auto b = seqs();
  const auto together = m->embed(b, pool);
  ASSERT_EQ(together.size(), b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    const auto alone = m->embed({b[i]}, pool);
    ASSERT_EQ(alone[0].size(), 64u);
    double norm = 0;
    for (size_t j = 0; j < 64; ++j) {
      EXPECT_NEAR(alone[0][j], together[i][j], 1e-5) << "seq " << i << " dim " << j;
      norm += double(alone[0][j]) * alone[0][j];
      ASSERT_TRUE(std::isfinite(alone[0][j]));
    }
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
  // Different inputs give different vectors; identical inputs identical ones.
  EXPECT_LT(cosine(together[2], together[3]), 0.9999);
  const auto again = m->embed({b[3], b[3]}, pool);
  EXPECT_EQ(again[0], again[1]);
}

TEST_P(EmbedArch, OrderMatters) {
  // Positions (table or rotary) make token order visible.
  auto m = EmbeddingModel::load(synth(GetParam() + "o", small(GetParam())));
  ops::ThreadPool pool(1);
  const auto r = m->embed({{101, 300, 400, 500, 102}, {101, 500, 400, 300, 102}}, pool, Pooling::Cls);
  float diff = 0;
  for (size_t i = 0; i < r[0].size(); ++i) diff = std::max(diff, std::abs(r[0][i] - r[1][i]));
  EXPECT_GT(diff, 1e-4f);
}

TEST_P(EmbedArch, QuantizedCloseToF32) {
  auto m32 = EmbeddingModel::load(synth(GetParam() + "32", small(GetParam(), 1, "F32")));
  auto mq = EmbeddingModel::load(synth(GetParam() + "q8", small(GetParam(), 1, "Q8_0")));
  ops::ThreadPool pool(2);
  const auto b = seqs();
  const auto a = m32->embed(b, pool), q = mq->embed(b, pool);
  for (size_t i = 0; i < b.size(); ++i) EXPECT_GT(cosine(a[i], q[i]), 0.99) << i;
}

INSTANTIATE_TEST_SUITE_P(Archs, EmbedArch, ::testing::Values("bert", "nomic-bert"),
                         [](const auto& info) { return info.param == "bert" ? std::string("bert") : std::string("nomic"); });

TEST(Embed, PoolingVariants) {
  auto mean = EmbeddingModel::load(synth("pm", small("bert", 1)));
  auto cls = EmbeddingModel::load(synth("pc", small("bert", 2)));
  auto last = EmbeddingModel::load(synth("pl", small("bert", 3)));
  EXPECT_EQ(mean->pooling(), Pooling::Mean);
  EXPECT_EQ(cls->pooling(), Pooling::Cls);
  EXPECT_EQ(last->pooling(), Pooling::Last);
  ops::ThreadPool pool(2);
  const std::vector<Token> s{101, 300, 301, 302, 102};
  // Same weights (same seed): pooling is the only difference.
  const auto vm = mean->embed({s}, pool)[0], vc = cls->embed({s}, pool)[0], vl = last->embed({s}, pool)[0];
  // Explicit pooling override on one model gives the same as each file's own.
  EXPECT_EQ(mean->embed({s}, pool, Pooling::Cls)[0], vc);
  EXPECT_EQ(mean->embed({s}, pool, Pooling::Last)[0], vl);
  EXPECT_LT(cosine(vm, vc), 0.9999);
  EXPECT_LT(cosine(vc, vl), 0.9999);
  // Mean without normalisation is the average of the per-token CLS/.../last? Check a single token: all agree.
  const std::vector<Token> one{101};
  EXPECT_EQ(mean->embed({one}, pool)[0], mean->embed({one}, pool, Pooling::Cls)[0]);
  // Unnormalised mean has a norm != 1 in general, normalised == 1.
  const auto raw = mean->embed({s}, pool, Pooling::Mean, false)[0];
  double n = 0;
  for (float x : raw) n += double(x) * x;
  EXPECT_GT(std::abs(n - 1.0), 1e-3);
  EXPECT_GT(cosine(raw, vm), 0.999999);
}

TEST(Embed, Errors) {
  auto m = EmbeddingModel::load(synth("err", small("bert")));
  ops::ThreadPool pool(1);
  auto status = [&](const std::vector<std::vector<Token>>& b) {
    try {
      m->embed(b, pool);
    } catch (const Error& e) {
      return e.status();
    }
    return 0;
  };
  EXPECT_EQ(status({{}}), 400);                    // empty sequence
  EXPECT_EQ(status({{101, 1000}}), 400);           // id out of range
  EXPECT_EQ(status({{101, -1}}), 400);
  EXPECT_EQ(status({std::vector<Token>(65, 5)}), 400);  // longer than the context
  EXPECT_EQ(status({std::vector<Token>(64, 5)}), 0);
  EXPECT_TRUE(m->embed({}, pool).empty());

  // Not an embedding model / missing tensors.
  model::SynthSpec llama;
  llama.dim = 64, llama.layers = 1, llama.heads = 4, llama.kv_heads = 4, llama.ff = 128, llama.vocab = 600;
  auto lf = synth("llama", llama);
  EXPECT_FALSE(is_embedding_model(*lf));
  EXPECT_THROW(EmbeddingModel::load(lf), Error);
  EXPECT_THROW(EmbeddingModel::load(nullptr), Error);
}

TEST(Embed, DigestIdentifiesContent) {
  auto a = EmbeddingModel::load(synth("da", small("bert")));
  auto b = EmbeddingModel::load(synth("db", small("bert")));
  auto s = small("bert");
  s.seed = 7;
  auto c = EmbeddingModel::load(synth("dc", s));
  EXPECT_EQ(a->digest().size(), 16u);
  EXPECT_EQ(a->digest(), b->digest());
  EXPECT_NE(a->digest(), c->digest());
}

TEST(Embed, SynthShapesTokenize) {
  for (const char* shape : {"minilm-l6", "bge-small", "nomic-embed-text", "demo-embed"}) {
    auto s = model::synth_shape(shape);
    ASSERT_TRUE(s) << shape;
    EXPECT_TRUE(s->arch == "bert" || s->arch == "nomic-bert");
  }
  auto s = *model::synth_shape("demo-embed");
  auto f = synth("demo", s);
  auto tok = Tokenizer::from_gguf(*f);
  const auto ids = tok->encode("Hello world, the cat sat on the mat.", true, true);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 101);
  EXPECT_EQ(ids.back(), 102);
  for (Token t : ids) EXPECT_NE(t, 100) << "unknown token in " << tok->decode(ids);
  auto m = EmbeddingModel::load(f);
  EXPECT_EQ(m->embed({ids}, 1)[0].size(), 128u);
}

}  // namespace
