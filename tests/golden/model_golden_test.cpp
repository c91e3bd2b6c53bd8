// Golden proof of the forward pass: our logits on the reference prompts must
// match llama.cpp's (see ../shared/golden/README.md). The bounds are fixed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

using namespace lmhost;
namespace fs = std::filesystem;

namespace {

const fs::path kGolden = fs::path(LMHOST_SHARED_DIR) / "golden";

struct Case {
  std::string model;  // file stem
  fs::path json;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  const fs::path dir = kGolden / "logits";
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    const auto p = name.rfind(".p");
    if (e.path().extension() != ".json" || p == std::string::npos) continue;
    out.push_back({name.substr(0, p), e.path()});
  }
  std::sort(out.begin(), out.end(), [](const Case& a, const Case& b) { return a.json < b.json; });
  return out;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

bool is_quantized(const gguf::File& f) {
  for (const auto& t : f.tensors())
    if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16) return true;
  return false;
}

std::shared_ptr<gguf::File> open_model(const std::string& name) {
  static std::map<std::string, std::shared_ptr<gguf::File>> files;
  auto& f = files[name];
  if (!f) f = gguf::File::open((kGolden / "models" / (name + ".gguf")).string());
  return f;
}

int argmax(std::span<const float> v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

constexpr float kMinMargin = 0.05f;

}  // namespace

TEST(ModelGolden, LogitsAndGreedyMatchReference) {
  if (!fs::is_directory(kGolden / "logits")) GTEST_SKIP() << "golden data not found at " << kGolden;
  const auto all = cases();
  ASSERT_FALSE(all.empty());
  std::map<std::string, double> worst;   // model -> max |d|/std
  std::map<std::string, std::string> greedy_summary;
  int checked = 0;
  for (const auto& c : all) {
    SCOPED_TRACE(c.json.filename().string());
    auto file = open_model(c.model);
    const std::string arch = file->architecture();
    if (arch != "llama" && arch != "qwen2") continue;
    const double tol = is_quantized(*file) ? 0.1 : 0.01;
    auto model = Model::load(file);
    const auto ref = read_json(c.json);
    const std::vector<Token> toks = ref["tokens"].get<std::vector<Token>>();
    const auto& positions = ref["positions"];
    ASSERT_EQ(positions.size(), toks.size());
    Context ctx(model, 512, 1, 2);
    std::vector<BatchEntry> batch;
    for (size_t i = 0; i < toks.size(); ++i) batch.push_back({toks[i], static_cast<int32_t>(i), 0, true});
    const auto logits = ctx.forward(batch);
    const int nv = model->hparams().n_vocab;
    ASSERT_EQ(logits.size(), toks.size() * nv);
    double& w = worst[c.model];
    for (size_t i = 0; i < toks.size(); ++i) {
      const auto row = logits.subspan(i * nv, nv);
      const auto& pos = positions[i];
      const double std_ = pos["std"].get<double>();
      const auto& top = pos["top"];
      const double margin = top[0][1].get<double>() - top[1][1].get<double>();
      if (margin >= kMinMargin) {
        EXPECT_EQ(argmax(row), top[0][0].get<int>()) << "top-1 at position " << i << " (margin " << margin << ")";
      }
      for (const auto& tl : top) {
        const int id = tl[0].get<int>();
        const double d = std::fabs(row[id] - tl[1].get<double>());
        w = std::max(w, d / std_);
        EXPECT_LE(d, tol * std_) << "position " << i << " token " << id << ": ours " << row[id] << " reference "
                                 << tl[1].get<double>() << " (std " << std_ << ")";
      }
    }
    // Greedy continuation through the decode path.
    const auto& greedy = ref["greedy"];
    std::vector<float> last(logits.end() - nv, logits.end());
    int matched = 0;
    bool stopped = false;
    // Logit error allowed on one token at these steps (the std of the last
    // prompt position stands in for the step's own, which the file lacks).
    const double step_err = tol * positions.back()["std"].get<double>();
    for (size_t s = 0; s < greedy.size(); ++s) {
      const int ref_id = greedy[s][0].get<int>();
      const double ref_margin = greedy[s][1].get<double>();
      const int ours = argmax(last);
      if (ref_margin < kMinMargin) {
        // A near tie: either pick is right, compared by logit: the reference's
        // token must be within the tie and our error of our best. The same
        // pick keeps the sequences comparable; a different one ends the check.
        EXPECT_LE(last[ours] - last[ref_id], kMinMargin + 2 * step_err) << "near-tie greedy step " << s;
        if (ours != ref_id) { stopped = true; break; }
      } else {
        ASSERT_EQ(ours, ref_id) << "greedy step " << s;
      }
      ++matched;
      if (s + 1 == greedy.size()) break;
      BatchEntry e{ours, ctx.seq_len(0), 0, true};
      auto out = ctx.forward(std::span<const BatchEntry>(&e, 1));
      last.assign(out.begin(), out.end());
    }
    greedy_summary[c.json.filename().string()] =
        std::to_string(matched) + "/" + std::to_string(greedy.size()) + (stopped ? " (then a near tie picked the other way)" : "");
    ++checked;
  }
  EXPECT_GT(checked, 0);
  for (const auto& [m, v] : worst) std::printf("  %-28s max |dlogit|/std over top-10 = %.5f\n", m.c_str(), v);
  for (const auto& [f, g] : greedy_summary) std::printf("  %-34s greedy matched %s\n", f.c_str(), g.c_str());
}

TEST(ModelGolden, TokenizerReproducesReferenceTokens) {
  if (!fs::is_directory(kGolden / "logits")) GTEST_SKIP() << "golden data not found at " << kGolden;
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.json.filename().string());
    auto file = open_model(c.model);
    const auto ref = read_json(c.json);
    std::unique_ptr<Tokenizer> tok;
    try {
      tok = Tokenizer::from_gguf(*file);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "tokenizer: " << e.what();
      continue;
    }
    const auto ids = tok->encode(ref["prompt"].get<std::string>(), true, true);
    EXPECT_EQ(ids, ref["tokens"].get<std::vector<Token>>());
  }
}
