// Golden proof of the embedding path: our pooled, L2-normalised sentence
// embeddings of the reference inputs must match llama.cpp's (see
// ../shared/golden/README.md, embeddings/). Fixed bounds: cosine similarity
// >= 0.9999 for the F32 model, >= 0.999 for the F16 one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/bert.h"
#include "tokenizer/tokenizer.h"

using namespace lmhost;
namespace fs = std::filesystem;

namespace {

const fs::path kGolden = fs::path(LMHOST_SHARED_DIR) / "golden";

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

struct Input {
  std::string text;
  std::vector<float> ref;
  std::string name;
};

std::vector<Input> inputs(const std::string& model) {
  std::vector<Input> out;
  const fs::path dir = kGolden / "embeddings";
  for (int i = 0;; ++i) {
    const fs::path txt = dir / (model + ".e" + std::to_string(i) + ".txt");
    const fs::path js = dir / (model + ".e" + std::to_string(i) + ".json");
    if (!fs::exists(txt) || !fs::exists(js)) break;
    std::ifstream in(js);
    const auto j = nlohmann::json::parse(in);
    out.push_back({read_bytes(txt), j.at("data").at(0).at("embedding").get<std::vector<float>>(), txt.filename().string()});
  }
  return out;
}

void check_model(const std::string& model, double bound) {
  const fs::path path = kGolden / "models" / (model + ".gguf");
  if (!fs::exists(path)) GTEST_SKIP() << "golden data not found at " << path << " (needs ../shared)";
  auto file = gguf::File::open(path.string());
  ASSERT_TRUE(is_embedding_model(*file));
  auto em = EmbeddingModel::load(file);
  auto tok = Tokenizer::from_gguf(*file);
  const auto cases = inputs(model);
  ASSERT_GE(cases.size(), 4u) << "expected e0..e3 for " << model;
  ops::ThreadPool pool(2);
  std::vector<std::vector<Token>> batch;
  for (const auto& c : cases) batch.push_back(tok->encode(c.text, true, true));
  // One sequence at a time, and all together in one batch: both must match.
  const auto together = em->embed(batch, pool);
  double min_cos = 1.0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto alone = em->embed({batch[i]}, pool);
    ASSERT_EQ(alone[0].size(), cases[i].ref.size()) << cases[i].name;
    const double c1 = cosine(alone[0], cases[i].ref), c2 = cosine(together[i], cases[i].ref);
    EXPECT_GE(c1, bound) << cases[i].name << " (alone)";
    EXPECT_GE(c2, bound) << cases[i].name << " (in a batch)";
    min_cos = std::min({min_cos, c1, c2});
    double norm = 0;
    for (float x : alone[0]) norm += double(x) * x;
    EXPECT_NEAR(norm, 1.0, 1e-5) << cases[i].name;
  }
  std::printf("[ golden   ] %s: min cosine %.9f (1 - cos = %.2e) over %zu inputs (bound %.4f)\n", model.c_str(), min_cos, 1.0 - min_cos, cases.size(),
              bound);
}

}  // namespace

TEST(EmbedGolden, BertTinyF32) { check_model("bert-tiny-f32", 0.9999); }
TEST(EmbedGolden, BertTinyF16) { check_model("bert-tiny-f16", 0.999); }
