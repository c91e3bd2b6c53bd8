// Tokenizers against llama.cpp's outputs on real vocabularies
// (../shared/golden: tokenizer/, logits/, embeddings/).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <thread>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using lmhost::Token;
using lmhost::Tokenizer;

namespace {

const fs::path kGolden = fs::path(LMHOST_SHARED_DIR) / "golden";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#define REQUIRE_GOLDEN(sub)                                                                   \
  do {                                                                                        \
    if (!fs::exists(kGolden / (sub)))                                                         \
      GTEST_SKIP() << "golden data not found at " << (kGolden / (sub)).string()               \
                   << " (set LMHOST_SHARED to the shared folder)";                            \
  } while (0)

// The .inp file is the test strings, each followed by "\n__ggml_vocab_test__\n".
std::vector<std::string> split_inputs(const std::string& s) {
  static const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t e = s.find(sep, pos);
    if (e == std::string::npos) {
      out.push_back(s.substr(pos));  // unterminated last entry
      break;
    }
    out.push_back(s.substr(pos, e - pos));
    pos = e + sep.size();
  }
  return out;
}

std::vector<std::vector<Token>> parse_outputs(const std::string& s) {
  std::vector<std::vector<Token>> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<Token> ids;
    long v;
    while (ls >> v) ids.push_back(Token(v));
    out.push_back(std::move(ids));
  }
  return out;
}

std::string ids_str(const std::vector<Token>& ids) {
  std::string s;
  for (Token t : ids) s += " " + std::to_string(t);
  return s;
}

std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '\n') r += "\\n";
    else if (c == '\t') r += "\\t";
    else r += c;
  }
  return r;
}

class VocabGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabGolden, AllStringsMatchReference) {
  REQUIRE_GOLDEN("tokenizer");
  const std::string name = GetParam();
  const fs::path base = kGolden / "tokenizer" / ("vocab-" + name);
  auto file = lmhost::gguf::File::open(base.string() + ".gguf");
  auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_ms();
  auto tok = Tokenizer::from_gguf(*file);
  const double cpu = cpu_ms() - c0;
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ %s ] from_gguf: %.1f ms wall, %.1f ms CPU (%d tokens)\n", name.c_str(), ms, cpu, tok->n_vocab());

  const auto inputs = split_inputs(slurp(base.string() + ".inp"));
  const auto expected = parse_outputs(slurp(base.string() + ".out"));
  ASSERT_EQ(inputs.size(), expected.size()) << "framing of " << base << ".inp";
  ASSERT_GE(inputs.size(), 40u);
  int pass = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto got = tok->encode(inputs[i], /*add_special=*/false, /*parse_special=*/true);
    if (got == expected[i]) {
      ++pass;
    } else {
      ADD_FAILURE() << name << " string " << i << " \"" << escape(inputs[i]) << "\"\n  expected:" << ids_str(expected[i])
                    << "\n  got:     " << ids_str(got);
    }
  }
  std::printf("[ %s ] %d/%zu strings match\n", name.c_str(), pass, inputs.size());
}

INSTANTIATE_TEST_SUITE_P(Families, VocabGolden,
                         ::testing::Values("llama-spm", "phi-3", "bert-bge", "gpt-2", "deepseek-coder", "qwen2"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

TEST(TokenizerGolden, LogitsPromptsWithSpecialTokens) {
  REQUIRE_GOLDEN("logits");
  int checked = 0;
  std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::map<std::string, std::shared_ptr<lmhost::gguf::File>> files;
  for (const auto& e : fs::directory_iterator(kGolden / "logits")) {
    if (e.path().extension() != ".json") continue;
    const std::string stem = e.path().stem().string();  // MODEL.pN
    const std::string model = stem.substr(0, stem.rfind('.'));
    const fs::path gguf = kGolden / "models" / (model + ".gguf");
    if (!fs::exists(gguf)) continue;
    auto j = nlohmann::json::parse(slurp(e.path()));
    if (!cache.count(model)) {
      files[model] = lmhost::gguf::File::open(gguf.string());
      cache[model] = Tokenizer::from_gguf(*files[model]);
    }
    const auto& tok = *cache[model];
    auto got = tok.encode(j["prompt"].get<std::string>(), /*add_special=*/true, /*parse_special=*/true);
    auto want = j["tokens"].get<std::vector<Token>>();
    EXPECT_EQ(got, want) << stem;
    if (model.rfind("llama-spm", 0) == 0) {
      EXPECT_EQ(got.front(), tok.bos()) << stem << ": BOS expected";
    }
    if (model.rfind("qwen2", 0) == 0) {
      EXPECT_NE(got.front(), tok.bos()) << stem << ": no BOS for qwen2";
    }
    // Decoding gives the prompt back.
    EXPECT_EQ(tok.decode(got), j["prompt"].get<std::string>()) << stem;
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

TEST(TokenizerGolden, BertEmbeddingInputsGetClsAndSep) {
  REQUIRE_GOLDEN("embeddings");
  for (const char* m : {"bert-tiny-f32", "bert-tiny-f16"}) {
    auto file = lmhost::gguf::File::open((kGolden / "models" / (std::string(m) + ".gguf")).string());
    auto tok = Tokenizer::from_gguf(*file);
    EXPECT_EQ(tok->model_name(), "bert");
    for (int i = 0; i < 4; ++i) {
      const std::string text = slurp(kGolden / "embeddings" / (std::string(m) + ".e" + std::to_string(i) + ".txt"));
      auto ids = tok->encode(text, true, true);
      ASSERT_GE(ids.size(), 2u);
      EXPECT_EQ(ids.front(), 101) << m << " e" << i;
      EXPECT_EQ(ids.back(), 102) << m << " e" << i;
      for (Token t : ids) EXPECT_NE(t, 100) << m << " e" << i << ": [UNK] in plain English";
      if (text.empty()) {
        EXPECT_EQ(ids, (std::vector<Token>{101, 102}));
      }
      if (text == "hello world") {
        EXPECT_EQ(ids, (std::vector<Token>{101, 7592, 2088, 102}));
      }
    }
  }
}

TEST(TokenizerGolden, Qwen2EncodeSpeed) {
  REQUIRE_GOLDEN("tokenizer");
  auto file = lmhost::gguf::File::open((kGolden / "tokenizer" / "vocab-qwen2.gguf").string());
  auto tok = Tokenizer::from_gguf(*file);
  std::string text;
  const std::string inp = slurp(kGolden / "tokenizer" / "vocab-qwen2.inp");
  while (text.size() < (1u << 20)) text += inp;
  auto t0 = std::chrono::steady_clock::now();
  auto ids = tok->encode(text, false, false);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ qwen2 ] encoded %zu bytes -> %zu tokens in %.3f s: %.0f tokens/s (%.1f MB/s)\n", text.size(),
              ids.size(), s, ids.size() / s, text.size() / s / 1e6);
  EXPECT_EQ(tok->decode(ids), text);
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_GT(ids.size() / s, 200000.0) << "encode is too slow";  // optimized builds only
#endif

  // encode is const and safe to call from several threads at once.
  const std::string part = text.substr(0, 1 << 16);
  const auto want = tok->encode(part, false, true);
  std::vector<std::vector<Token>> got(4);
  std::vector<std::thread> th;
  for (int i = 0; i < 4; ++i) th.emplace_back([&, i] { got[i] = tok->encode(part, false, true); });
  for (auto& t : th) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

}  // namespace

namespace {

// `lmhost tokenize` gives the same ids as the library (runs the built binary
// when it exists; test_tokenizer does not build it).
TEST(TokenizerGolden, CliTokenizeMatchesReference) {
  REQUIRE_GOLDEN("logits");
  if (!fs::exists(LMHOST_BINARY)) GTEST_SKIP() << "lmhost binary not built at " << LMHOST_BINARY;
  for (const char* stem : {"qwen2-tiny-q8_0.p3", "llama-spm-tiny-f32.p2"}) {
    auto j = nlohmann::json::parse(slurp(kGolden / "logits" / (std::string(stem) + ".json")));
    const std::string model = std::string(stem).substr(0, std::string(stem).rfind('.'));
    const fs::path tmp = fs::temp_directory_path() / ("lmhost_tok_" + std::to_string(::getpid()) + ".txt");
    {
      std::ofstream o(tmp, std::ios::binary);
      o << j["prompt"].get<std::string>();
    }
    const std::string cmd = std::string(LMHOST_BINARY) + " tokenize --add-special -m " +
                            (kGolden / "models" / (model + ".gguf")).string() + " --file " + tmp.string();
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    EXPECT_EQ(::pclose(p), 0) << cmd;
    fs::remove(tmp);
    EXPECT_EQ(nlohmann::json::parse(out), j["tokens"]) << cmd;
    EXPECT_EQ(out.find('\n'), out.size() - 1) << "one line";
  }
}

}  // namespace
