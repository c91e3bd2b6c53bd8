// The CLI's contracts (other tools depend on them), checked by running the
// real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>
#include <string>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Result {
  int status;  // exit code, or 128 + signal
  std::string out;
};

Result run(const std::string& args) {
  const std::string cmd = std::string(LMHOST_BINARY) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  Result r{-1, {}};
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

fs::path tmpdir() {
  static fs::path d = [] {
    fs::path p = fs::temp_directory_path() / ("lmhost-cli-test-" + std::to_string(getpid()));
    fs::create_directories(p);
    return p;
  }();
  return d;
}

fs::path golden() { return fs::path(LMHOST_SHARED_DIR) / "golden"; }

// A tiny synthesized model shared by the tests below.
fs::path demo_model() {
  static fs::path p = [] {
    fs::path f = tmpdir() / "demo-q8_0.gguf";
    run("synth --shape demo --type Q8_0 --seed 7 -o " + f.string());
    return f;
  }();
  return p;
}

}  // namespace

TEST(Cli, SynthThenShow) {
  ASSERT_TRUE(fs::exists(demo_model())) << "lmhost synth did not write the file";
  Result r = run("show --json -m " + demo_model().string());
  ASSERT_EQ(r.status, 0) << r.out;
  json j = json::parse(r.out);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["file_type"]["name"], "Q8_0");
  EXPECT_GT(j["parameters"].get<int64_t>(), 0);
}

TEST(Cli, RunIsDeterministicForASeed) {
  const std::string args = "run -q -m " + demo_model().string() + " -p 'Once upon a time' -n 12 --temp 0.9 --seed 5";
  Result a = run(args), b = run(args);
  ASSERT_EQ(a.status, 0);
  ASSERT_EQ(b.status, 0);
  EXPECT_EQ(a.out, b.out);
  EXPECT_FALSE(a.out.empty());
}

TEST(Cli, TokenizeDefaultsAndAddSpecial) {
  Result plain = run("tokenize -m " + demo_model().string() + " 'Hello world'");
  ASSERT_EQ(plain.status, 0);
  json a = json::parse(plain.out);
  ASSERT_TRUE(a.is_array());
  ASSERT_FALSE(a.empty());
  Result special = run("tokenize --add-special -m " + demo_model().string() + " 'Hello world'");
  ASSERT_EQ(special.status, 0);
  json b = json::parse(special.out);
  EXPECT_GE(b.size(), a.size());
}

TEST(Cli, LogitsSchema) {
  fs::path prompt = tmpdir() / "prompt.txt";
  std::ofstream(prompt) << "The quick brown fox";
  Result r = run("logits -m " + demo_model().string() + " --file " + prompt.string() + " --top 5 --greedy 4");
  ASSERT_EQ(r.status, 0);
  json j = json::parse(r.out);
  ASSERT_TRUE(j["tokens"].is_array());
  ASSERT_EQ(j["positions"].size(), j["tokens"].size());
  for (auto& p : j["positions"]) {
    ASSERT_EQ(p["top"].size(), 5u);
    EXPECT_TRUE(p["mean"].is_number());
    EXPECT_GT(p["std"].get<double>(), 0.0);
    EXPECT_GE(p["top"][0][1].get<double>(), p["top"][4][1].get<double>());
  }
  ASSERT_EQ(j["greedy"].size(), 4u);
  for (auto& g : j["greedy"]) EXPECT_GE(g[1].get<double>(), 0.0);  // margin = top1 - top2
}

// `lmhost bench --json`: the fields bench/compare.sh reads, with figures a
// run can actually produce (the paired decode reads each token's weights
// before the token, so its fraction is a time ratio in (0, 1]-ish).
TEST(Cli, BenchReportsSpeedsAndPairedBandwidth) {
  Result r = run("bench --json -m " + demo_model().string() + " -p 16 -n 8 -r 2 -t 2 --membw --membw-mib 64");
  ASSERT_EQ(r.status, 0) << r.out;
  json j = json::parse(r.out);
  EXPECT_EQ(j["type"], "Q8_0");
  EXPECT_EQ(j["reps"], 2);
  EXPECT_GT(j["pp_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["tg_tokens_per_s"].get<double>(), 0.0);
  EXPECT_EQ(j["pp_samples"].size(), 2u);
  EXPECT_EQ(j["tg_samples"].size(), 2u);
  EXPECT_GT(j["membw_gb_per_s"].get<double>(), 0.0);
  const auto bpt = j["weight_bytes_per_token"].get<int64_t>();
  EXPECT_GT(bpt, 0);
  EXPECT_LT(bpt, j["file_size"].get<int64_t>());
  EXPECT_GT(j["tg_paired_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["tg_paired_read_gb_per_s"].get<double>(), 0.0);
  const double f = j["tg_paired_fraction"].get<double>();
  EXPECT_GT(f, 0.0);
  EXPECT_LT(f, 1.5) << "a plain read of the weights should not be much slower than a decode step that reads them";
  EXPECT_EQ(j["tg_paired_fraction_samples"].size(), 2u);

  Result plain = run("bench --json -m " + demo_model().string() + " -p 0 -n 4 -r 1");
  ASSERT_EQ(plain.status, 0) << plain.out;
  json k = json::parse(plain.out);
  EXPECT_FALSE(k.contains("pp_tokens_per_s"));
  EXPECT_FALSE(k.contains("tg_paired_fraction")) << "the paired decode runs only with --membw";
  EXPECT_GT(k["tg_tokens_per_s"].get<double>(), 0.0);
}

TEST(Cli, BenchRefusesBadArguments) {
  EXPECT_EQ(run("bench").status, 1) << "no model and no --membw";
  EXPECT_EQ(run("bench -r 0 -m " + demo_model().string()).status, 1);
  EXPECT_EQ(run("bench -n -1 -m " + demo_model().string()).status, 1);
  EXPECT_EQ(run("bench -m /nonexistent/model.gguf").status, 1);
}

TEST(Cli, BadFilesGiveAClearErrorNotACrash) {
  fs::path junk = tmpdir() / "junk.gguf";
  std::ofstream(junk) << "this is not a gguf file at all";
  for (const char* cmd : {"show -m ", "tokenize -m ", "run -n 1 -p x -m ", "logits --file /dev/null -m "}) {
    Result r = run(std::string(cmd) + junk.string());
    EXPECT_EQ(r.status, 1) << cmd << " should fail cleanly (exit 1), got " << r.status;
  }
}

TEST(CliGolden, TokenizeMatchesReference) {
  if (!fs::exists(golden())) GTEST_SKIP() << "../shared/golden not found: golden CLI check skipped";
  // First string of each vocab test file, through the CLI's --file (exact bytes).
  for (const char* name : {"llama-spm", "qwen2", "bert-bge"}) {
    std::ifstream inp(golden() / "tokenizer" / (std::string("vocab-") + name + ".inp"), std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(inp)), {});
    const std::string sep = "\n__ggml_vocab_test__\n";
    const std::string first = all.substr(0, all.find(sep));
    fs::path f = tmpdir() / (std::string(name) + ".txt");
    std::ofstream(f, std::ios::binary) << first;
    std::ifstream out(golden() / "tokenizer" / (std::string("vocab-") + name + ".out"));
    std::string line;
    std::getline(out, line);
    json expect = json::array();
    std::istringstream ids(line);
    for (int id; ids >> id;) expect.push_back(id);
    Result r = run("tokenize -m " + (golden() / "tokenizer" / (std::string("vocab-") + name + ".gguf")).string() +
                   " --file " + f.string());
    ASSERT_EQ(r.status, 0) << name;
    EXPECT_EQ(json::parse(r.out), expect) << name << ": " << first;
  }
}

TEST(CliGolden, LogitsTokensMatchReference) {
  if (!fs::exists(golden())) GTEST_SKIP() << "../shared/golden not found: golden CLI check skipped";
  std::ifstream in(golden() / "logits" / "llama-spm-tiny-q8_0.p1.json");
  json ref = json::parse(in);
  fs::path prompt = tmpdir() / "p1.txt";
  std::ofstream(prompt, std::ios::binary) << ref["prompt"].get<std::string>();
  Result r = run("logits -m " + (golden() / "models" / "llama-spm-tiny-q8_0.gguf").string() + " --file " +
                 prompt.string());
  ASSERT_EQ(r.status, 0);
  json j = json::parse(r.out);
  EXPECT_EQ(j["tokens"], ref["tokens"]);
  ASSERT_EQ(j["positions"].size(), ref["positions"].size());
  EXPECT_EQ(j["positions"].back()["top"][0][0], ref["positions"].back()["top"][0][0]);
  EXPECT_EQ(j["greedy"].size(), 16u);
}
