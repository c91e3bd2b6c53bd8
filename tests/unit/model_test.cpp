// Model/Context behaviour on tiny random models built in memory.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"
#include "tensor/kernels.h"
#include "tensor/packed.h"
#include "util/error.h"

using namespace lmhost;

namespace {

struct TinySpec {
  std::string arch = "llama";
  int n_embd = 64, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 96, n_vocab = 300;
  DType wtype = DType::F32;
  float wscale = 0.3f;  // sd of the matrices' weights (smaller for wider models, or logits get chaotic)
  bool tied = false;
  std::string skip_tensor;  // leave this tensor out
  std::string bad_shape;    // give this tensor a wrong shape
  std::string skip_key;     // leave this metadata key out
};

std::vector<uint8_t> tensor_bytes(DType t, int64_t K, int64_t N, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> f(K * N);
  for (auto& x : f) x = d(rng);
  if (t == DType::F32) {
    std::vector<uint8_t> b(f.size() * 4);
    std::memcpy(b.data(), f.data(), b.size());
    return b;
  }
  const size_t rb = row_bytes(t, K);
  std::vector<uint8_t> b(rb * N);
  for (int64_t r = 0; r < N; ++r) quantize_row(t, f.data() + r * K, b.data() + r * rb, K);
  return b;
}

std::shared_ptr<gguf::File> make_model(const TinySpec& s, uint32_t seed = 42) {
  gguf::Writer w;
  const std::string a = s.arch;
  auto key = [&](const std::string& k) { return s.skip_key != k; };
  w.set_string("general.architecture", a);
  if (key("context_length")) w.set_u32(a + ".context_length", 2048);
  if (key("embedding_length")) w.set_u32(a + ".embedding_length", s.n_embd);
  if (key("block_count")) w.set_u32(a + ".block_count", s.n_layer);
  if (key("feed_forward_length")) w.set_u32(a + ".feed_forward_length", s.n_ff);
  if (key("attention.head_count")) w.set_u32(a + ".attention.head_count", s.n_head);
  w.set_u32(a + ".attention.head_count_kv", s.n_head_kv);
  if (key("attention.layer_norm_rms_epsilon")) w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_f32(a + ".rope.freq_base", a == "qwen2" ? 1000000.0f : 10000.0f);
  std::mt19937 rng(seed);
  const int hd = s.n_embd / s.n_head;
  auto add = [&](const std::string& name, DType t, int64_t K, int64_t N, float scale, bool vec = false) {
    if (name == s.skip_tensor) return;
    if (name == s.bad_shape) N += 1;
    auto bytes = tensor_bytes(t, K, N, rng, scale);
    std::vector<int64_t> dims = vec ? std::vector<int64_t>{K} : std::vector<int64_t>{K, N};
    w.add_tensor(name, t, dims, std::move(bytes));
  };
  auto add_norm = [&](const std::string& name, int64_t n) {
    if (name == s.skip_tensor) return;
    std::normal_distribution<float> d(1.0f, 0.1f);
    std::vector<float> f(n + (name == s.bad_shape ? 1 : 0));
    for (auto& x : f) x = d(rng);
    std::vector<uint8_t> b(f.size() * 4);
    std::memcpy(b.data(), f.data(), b.size());
    w.add_tensor(name, DType::F32, {static_cast<int64_t>(f.size())}, std::move(b));
  };
  add("token_embd.weight", s.wtype, s.n_embd, s.n_vocab, 1.0f);
  add_norm("output_norm.weight", s.n_embd);
  if (!s.tied) add("output.weight", s.wtype, s.n_embd, s.n_vocab, s.wscale);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add_norm(p + "attn_norm.weight", s.n_embd);
    add(p + "attn_q.weight", s.wtype, s.n_embd, s.n_head * hd, s.wscale);
    add(p + "attn_k.weight", s.wtype, s.n_embd, s.n_head_kv * hd, s.wscale);
    add(p + "attn_v.weight", s.wtype, s.n_embd, s.n_head_kv * hd, s.wscale);
    if (s.arch == "qwen2") {
      add(p + "attn_q.bias", DType::F32, s.n_head * hd, 1, 0.5f, true);
      add(p + "attn_k.bias", DType::F32, s.n_head_kv * hd, 1, 0.5f, true);
      add(p + "attn_v.bias", DType::F32, s.n_head_kv * hd, 1, 0.5f, true);
    }
    add(p + "attn_output.weight", s.wtype, s.n_head * hd, s.n_embd, s.wscale);
    add_norm(p + "ffn_norm.weight", s.n_embd);
    add(p + "ffn_gate.weight", s.wtype, s.n_embd, s.n_ff, s.wscale);
    add(p + "ffn_up.weight", s.wtype, s.n_embd, s.n_ff, s.wscale);
    add(p + "ffn_down.weight", s.wtype, s.n_ff, s.n_embd, s.wscale);
  }
  const auto bytes = w.to_bytes();
  return gguf::File::from_bytes(bytes.data(), bytes.size(), "tiny-" + a + ".gguf");
}

std::vector<Token> tokens(int n, uint32_t seed, int n_vocab = 300) {
  std::mt19937 rng(seed);
  std::vector<Token> t(n);
  for (auto& x : t) x = static_cast<Token>(rng() % n_vocab);
  return t;
}

// Logits of every position: one batch.
std::vector<float> eval_batch(Context& ctx, const std::vector<Token>& toks, int seq = 0) {
  std::vector<BatchEntry> b;
  const int start = ctx.seq_len(seq);
  for (size_t i = 0; i < toks.size(); ++i) b.push_back({toks[i], static_cast<int32_t>(start + i), seq, true});
  auto out = ctx.forward(b);
  return {out.begin(), out.end()};
}

// Logits of every position: one token at a time.
std::vector<float> eval_one_by_one(Context& ctx, const std::vector<Token>& toks, int seq = 0) {
  std::vector<float> all;
  for (size_t i = 0; i < toks.size(); ++i) {
    BatchEntry e{toks[i], ctx.seq_len(seq), seq, true};
    auto out = ctx.forward(std::span<const BatchEntry>(&e, 1));
    all.insert(all.end(), out.begin(), out.end());
  }
  return all;
}

// Batched matmuls use tile kernels that may sum in another order than the
// decode path's row kernel; with an F16 cache such a last-bit difference can
// flip one K/V rounding, hence a looser (but still tight) bound there.
float path_tol(DType kv) { return kv == DType::F16 ? 1e-3f : 1e-5f; }

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  float scale = 1.0f;  // bound relative to the logits' magnitude
  for (float v : b) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol * scale) << what << " at " << i;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

class ModelArch : public ::testing::TestWithParam<std::tuple<std::string, DType, DType>> {};

TEST_P(ModelArch, PromptBatchEqualsTokenByTokenDecode) {
  TinySpec s;
  s.arch = std::get<0>(GetParam());
  s.wtype = std::get<1>(GetParam());
  s.tied = s.arch == "qwen2";
  auto model = Model::load(make_model(s));
  EXPECT_EQ(model->tied_output(), s.tied);
  Context a(model, 64, 1, 2, std::get<2>(GetParam())), b(model, 64, 1, 1, std::get<2>(GetParam()));
  const auto toks = tokens(23, 1);
  const auto batch = eval_batch(a, toks);
  const auto single = eval_one_by_one(b, toks);
  ASSERT_EQ(batch.size(), toks.size() * 300);
  expect_close(batch, single, path_tol(std::get<2>(GetParam())), "batch vs decode");
  EXPECT_EQ(a.seq_len(0), 23);
  // Logits are finite and not all equal.
  float mn = batch[0], mx = batch[0];
  for (float v : batch) {
    ASSERT_TRUE(std::isfinite(v));
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  EXPECT_GT(mx - mn, 0.1f);
}

TEST_P(ModelArch, MultiSequenceBatchEqualsSeparateSequences) {
  TinySpec s;
  s.arch = std::get<0>(GetParam());
  s.wtype = std::get<1>(GetParam());
  auto model = Model::load(make_model(s));
  const DType kvt = std::get<2>(GetParam());
  const auto p0 = tokens(9, 2), p1 = tokens(5, 3), p2 = tokens(12, 4);
  // Reference: each sequence alone.
  std::vector<std::vector<float>> ref;
  for (const auto& p : {p0, p1, p2}) {
    Context c(model, 32, 1, 1, kvt);
    ref.push_back(eval_batch(c, p));
  }
  // Together: prompts of three sequences in one batch, then decode steps of all three together.
  Context ctx(model, 32, 3, 2, kvt);
  std::vector<BatchEntry> b;
  const std::vector<Token>* ps[3] = {&p0, &p1, &p2};
  const size_t pre[3] = {4, 2, 7};
  for (int sq = 0; sq < 3; ++sq)
    for (size_t i = 0; i < pre[sq]; ++i) b.push_back({(*ps[sq])[i], static_cast<int32_t>(i), sq, true});
  auto out = ctx.forward(b);
  size_t o = 0;
  for (int sq = 0; sq < 3; ++sq)
    for (size_t i = 0; i < pre[sq]; ++i, ++o)
      for (int v = 0; v < 300; ++v)
        ASSERT_NEAR(out[o * 300 + v], ref[sq][i * 300 + v], path_tol(kvt) * 20)
            << sq << " " << i;
  // Interleaved decode: one token of each unfinished sequence per step.
  for (size_t step = 0; step < 12; ++step) {
    std::vector<BatchEntry> d;
    std::vector<std::pair<int, size_t>> who;
    for (int sq = 2; sq >= 0; --sq) {  // order in the batch does not matter
      const size_t i = pre[sq] + step;
      if (i >= ps[sq]->size()) continue;
      d.push_back({(*ps[sq])[i], static_cast<int32_t>(i), sq, true});
      who.push_back({sq, i});
    }
    if (d.empty()) break;
    auto lo = ctx.forward(d);
    for (size_t k = 0; k < who.size(); ++k)
      for (int v = 0; v < 300; ++v)
        ASSERT_NEAR(lo[k * 300 + v], ref[who[k].first][who[k].second * 300 + v],
                    path_tol(kvt) * 20)
            << "seq " << who[k].first << " pos " << who[k].second;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Archs, ModelArch,
    ::testing::Values(std::make_tuple("llama", DType::F32, DType::F32), std::make_tuple("llama", DType::Q8_0, DType::F16),
                      std::make_tuple("qwen2", DType::F32, DType::F16), std::make_tuple("qwen2", DType::Q4_0, DType::F32)),
    [](const auto& info) {
      return std::get<0>(info.param) + "_" + dtype_name(std::get<1>(info.param)) + "_kv" +
             dtype_name(std::get<2>(info.param));
    });

// Q4_0, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K matrices repacked at load (tensor/packed.h) give the logits
// of the file's layout on every path: prompt batches, small batches and
// decode (one packed kernel for all of them, against the file layout's gemm,
// tiles and row kernels). An output matrix whose
// rows are not whole 16-row groups stays as it is; a tied one is packed and
// the embedding lookups read their rows from it.
TEST(Model, PackedWeightsGiveTheSameLogits) {
  for (const DType wt : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(wt));
    TinySpec s;
    s.wtype = wt;
    s.tied = wt == DType::Q8_0;
    s.n_vocab = wt == DType::Q4_0 ? 300 : 320;
    // whole super-blocks; Q5_K at 0.12: at 0.15 this random model's plain batch and plain decode
    // already differ by 0.03 (an activation quant that rounds the other way, amplified)
    if (dtype_info(wt).block_size == 256) s.n_embd = 256, s.n_ff = 512, s.wscale = wt == DType::Q5_K ? 0.12f : 0.15f;
    const auto file = make_model(s);
    auto plain = Model::load(file, false);
    auto packed = Model::load(file, true);
    EXPECT_EQ(plain->packed_bytes(), 0u);
    EXPECT_EQ(plain->layers()[0].wq.type, wt);
    if (packed_type(wt, kernels()) == wt) GTEST_SKIP() << "no packed kernels on this CPU";
    const DType pt = packed_type(wt, kernels());
    EXPECT_GT(packed->packed_bytes(), 0u);
    for (const LayerWeights& L : packed->layers())
      for (const TensorView* W : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
        EXPECT_EQ(W->type, pt) << W->name;
    EXPECT_EQ(packed->output().type, s.n_vocab % kPackRows == 0 ? pt : wt);
    // a tied embedding is the packed output matrix, looked up row by row
    EXPECT_EQ(packed->token_embd().type, s.tied ? pt : wt);
    // K-quants: an F32 cache (this random model amplifies last-bit differences
    // between the file layout's batch tiles and its row kernel when K/V are
    // rounded to F16: plain batch vs plain decode differ as much).
    const DType kv = dtype_info(wt).block_size == 256 ? DType::F32 : DType::F16;
    for (int T : {1, 3, 20, 70}) {  // 70: two token blocks of the matmul
      Context a(plain, 80, 1, 2, kv), b(packed, 80, 1, 2, kv);
      const auto toks = tokens(T, 7, s.n_vocab);
      expect_close(eval_batch(b, toks), eval_batch(a, toks), path_tol(DType::F16), "batch of " + std::to_string(T));
      const auto more = tokens(4, 8, s.n_vocab);
      expect_close(eval_one_by_one(b, more), eval_one_by_one(a, more), path_tol(DType::F16),
                   "decode after " + std::to_string(T));
    }
  }
}

TEST(Model, DeterministicAcrossRunsAndThreadCounts) {
  auto model = Model::load(make_model(TinySpec{}));
  const auto toks = tokens(30, 7);
  Context c1(model, 64, 1, 1), c3(model, 64, 1, 3);
  const auto a = eval_batch(c1, toks);
  const auto b = eval_batch(c3, toks);
  EXPECT_EQ(a, b);
  c1.clear_seq(0);
  EXPECT_EQ(eval_batch(c1, toks), a);
}

TEST(Model, TruncateAndReevaluate) {
  auto model = Model::load(make_model(TinySpec{}));
  const auto toks = tokens(20, 8);
  Context ctx(model, 64, 2, 2);
  const auto full = eval_batch(ctx, toks);
  ctx.truncate_seq(0, 12);
  EXPECT_EQ(ctx.seq_len(0), 12);
  const std::vector<Token> tail(toks.begin() + 12, toks.end());
  const auto again = eval_batch(ctx, tail);
  expect_close(again, std::vector<float>(full.begin() + 12 * 300, full.end()), 1e-4f, "after truncate");
  // Different continuation after truncation replaces the old tail.
  ctx.truncate_seq(0, 5);
  const auto other = tokens(3, 99);
  eval_batch(ctx, other);
  EXPECT_EQ(ctx.seq_len(0), 8);
  EXPECT_EQ(ctx.seq_len(1), 0);
}

TEST(Model, LongBatchIsSplitTransparently) {
  TinySpec s;
  s.n_embd = 32;
  s.n_head = 2;
  s.n_head_kv = 1;
  s.n_ff = 32;
  s.n_layer = 1;
  auto model = Model::load(make_model(s));
  const auto toks = tokens(Context::kMaxMicroBatch + 40, 9);
  Context a(model, 1024, 1, 2, DType::F32), b(model, 1024, 1, 2, DType::F32);
  const auto whole = eval_batch(a, toks);
  std::vector<float> parts = eval_batch(b, std::vector<Token>(toks.begin(), toks.begin() + 300));
  const auto rest = eval_batch(b, std::vector<Token>(toks.begin() + 300, toks.end()));
  parts.insert(parts.end(), rest.begin(), rest.end());
  expect_close(whole, parts, 1e-4f, "split");
}

TEST(Model, OnlyRequestedLogitsAreReturned) {
  auto model = Model::load(make_model(TinySpec{}));
  const auto toks = tokens(6, 10);
  Context a(model, 16), b(model, 16);
  const auto all = eval_batch(a, toks);
  std::vector<BatchEntry> batch;
  for (int i = 0; i < 6; ++i) batch.push_back({toks[i], i, 0, i == 2 || i == 5});
  const auto out = b.forward(batch);
  ASSERT_EQ(out.size(), 2u * 300);
  for (int v = 0; v < 300; ++v) {
    EXPECT_NEAR(out[v], all[2 * 300 + v], 1e-5f);
    EXPECT_NEAR(out[300 + v], all[5 * 300 + v], 1e-5f);
  }
}

TEST(Model, InvalidBatchesAreRejectedWithoutSideEffects) {
  auto model = Model::load(make_model(TinySpec{}));
  Context ctx(model, 8, 2);
  std::vector<BatchEntry> ok = {{1, 0, 0, true}, {2, 1, 0, true}};
  ctx.forward(ok);
  std::vector<BatchEntry> gap = {{3, 3, 0, true}};
  EXPECT_NE(error_of([&] { ctx.forward(gap); }).find("position 2"), std::string::npos);
  std::vector<BatchEntry> bad_tok = {{300, 2, 0, true}};
  EXPECT_NE(error_of([&] { ctx.forward(bad_tok); }).find("token id 300"), std::string::npos);
  std::vector<BatchEntry> bad_seq = {{1, 0, 2, true}};
  EXPECT_NE(error_of([&] { ctx.forward(bad_seq); }).find("sequence 2"), std::string::npos);
  std::vector<BatchEntry> neg = {{-1, 2, 0, true}};
  EXPECT_THROW(ctx.forward(neg), Error);
  EXPECT_EQ(ctx.seq_len(0), 2);
  std::vector<BatchEntry> full;
  for (int i = 2; i < 9; ++i) full.push_back({1, i, 0, false});
  EXPECT_NE(error_of([&] { ctx.forward(full); }).find("full"), std::string::npos);
  EXPECT_EQ(ctx.seq_len(0), 2);
  EXPECT_TRUE(ctx.forward({}).empty());
  EXPECT_THROW(ctx.truncate_seq(0, -1), Error);
  EXPECT_THROW(ctx.clear_seq(5), Error);
  EXPECT_THROW(Context(model, 0), Error);
  EXPECT_THROW(Context(model, 8, 1, 1, DType::Q8_0), Error);
}

TEST(Model, MissingOrWrongTensorsAreNamed) {
  {
    TinySpec s;
    s.skip_tensor = "blk.1.ffn_up.weight";
    const auto msg = error_of([&] { Model::load(make_model(s)); });
    EXPECT_NE(msg.find("blk.1.ffn_up.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  }
  {
    TinySpec s;
    s.bad_shape = "blk.0.attn_k.weight";
    const auto msg = error_of([&] { Model::load(make_model(s)); });
    EXPECT_NE(msg.find("blk.0.attn_k.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[64, 33]"), std::string::npos) << msg;
  }
  {
    TinySpec s;
    s.bad_shape = "output_norm.weight";
    const auto msg = error_of([&] { Model::load(make_model(s)); });
    EXPECT_NE(msg.find("output_norm.weight"), std::string::npos) << msg;
  }
  {
    TinySpec s;
    s.arch = "qwen2";
    s.skip_tensor = "blk.0.attn_v.bias";
    const auto msg = error_of([&] { Model::load(make_model(s)); });
    EXPECT_NE(msg.find("blk.0.attn_v.bias"), std::string::npos) << msg;
  }
  {
    TinySpec s;
    s.skip_key = "attention.head_count";
    const auto msg = error_of([&] { Model::load(make_model(s)); });
    EXPECT_NE(msg.find("llama.attention.head_count"), std::string::npos) << msg;
  }
  {
    TinySpec s;
    s.skip_key = "attention.layer_norm_rms_epsilon";
    const auto msg = error_of([&] { Model::load(make_model(s)); });
    EXPECT_NE(msg.find("layer_norm_rms_epsilon"), std::string::npos) << msg;
  }
  {
    TinySpec s;
    s.arch = "gpt2";
    const auto msg = error_of([&] { Model::load(make_model(s)); });
    EXPECT_NE(msg.find("gpt2"), std::string::npos) << msg;
  }
}

TEST(Model, HParamsFromMetadata) {
  TinySpec s;
  s.arch = "qwen2";
  auto model = Model::load(make_model(s));
  const HParams& hp = model->hparams();
  EXPECT_EQ(hp.arch, Arch::Qwen2);
  EXPECT_EQ(hp.n_embd, 64);
  EXPECT_EQ(hp.n_layer, 2);
  EXPECT_EQ(hp.n_head, 4);
  EXPECT_EQ(hp.n_head_kv, 2);
  EXPECT_EQ(hp.head_dim_k, 16);
  EXPECT_EQ(hp.n_rot, 16);
  EXPECT_EQ(hp.n_vocab, 300);
  EXPECT_EQ(hp.n_ctx_train, 2048);
  EXPECT_FLOAT_EQ(hp.rope_freq_base, 1000000.0f);
  EXPECT_FLOAT_EQ(hp.rms_eps, 1e-6f);
  EXPECT_EQ(hp.rope_style, ops::RopeStyle::NeoX);
  EXPECT_TRUE(model->tied_output() == false);
}
