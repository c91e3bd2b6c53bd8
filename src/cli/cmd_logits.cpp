// `lmhost logits -m FILE --file PROMPT [--top K] [--greedy N] [-t THREADS]`:
// tokenizes the prompt (special tokens added), evaluates it in one batch and
// prints, as JSON in the golden-data schema, each position's logit mean/std
// and top-K, then N greedy steps (argmax one token at a time through the
// decode path) with their margins.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cli/command.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

struct LogitsArgs {
  std::string model, prompt_file, prompt;
  int top = 10;
  int greedy = 16;
  int threads = 0;
  bool timing = false;
  bool f32_kv = false;
};

double rounded(double v, double scale) { return std::round(v * scale) / scale; }

// Indices of the k largest values, largest first (ties: lower id first).
std::vector<int> top_k(std::span<const float> v, int k) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int>(k, static_cast<int>(v.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  });
  idx.resize(k);
  return idx;
}

nlohmann::ordered_json position_json(std::span<const float> row, int k) {
  double sum = 0;
  for (float x : row) sum += x;
  const double mean = sum / row.size();
  double var = 0;
  for (float x : row) var += (x - mean) * (x - mean);
  nlohmann::ordered_json p;
  p["mean"] = rounded(mean, 1e6);
  p["std"] = rounded(std::sqrt(var / row.size()), 1e6);
  auto top = nlohmann::ordered_json::array();
  for (int id : top_k(row, k)) top.push_back({id, rounded(row[id], 1e5)});
  p["top"] = std::move(top);
  return p;
}

int run_logits(const LogitsArgs& a) {
  std::string prompt = a.prompt;
  if (!a.prompt_file.empty()) prompt = read_file(a.prompt_file);
  if (a.top < 1) throw Error("--top must be at least 1");
  if (a.greedy < 0) throw Error("--greedy must not be negative");
  auto file = gguf::File::open(a.model);
  auto model = Model::load(file);
  auto tok = Tokenizer::from_gguf(*file);
  const std::vector<Token> tokens = tok->encode(prompt, true, true);
  if (tokens.empty()) throw Error("the prompt tokenizes to no tokens");
  const int n_ctx = static_cast<int>(tokens.size()) + a.greedy + 1;
  Context ctx(model, n_ctx, 1, a.threads, a.f32_kv ? DType::F32 : DType::F16);
  const int nv = ctx.n_vocab();

  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < tokens.size(); ++i) batch.push_back({tokens[i], static_cast<int32_t>(i), 0, true});
  const auto t0 = std::chrono::steady_clock::now();
  const auto logits = ctx.forward(batch);
  const auto t1 = std::chrono::steady_clock::now();

  nlohmann::ordered_json out;
  out["prompt"] = prompt;
  out["tokens"] = tokens;
  auto positions = nlohmann::ordered_json::array();
  for (size_t i = 0; i < tokens.size(); ++i) positions.push_back(position_json(logits.subspan(i * nv, nv), a.top));
  out["positions"] = std::move(positions);

  std::vector<float> last(logits.end() - nv, logits.end());
  auto greedy = nlohmann::ordered_json::array();
  double decode_s = 0;
  for (int s = 0; s < a.greedy; ++s) {
    const auto best = top_k(last, 2);
    const int id = best[0];
    const double margin = best.size() > 1 ? last[best[0]] - last[best[1]] : 0.0;
    greedy.push_back({id, rounded(margin, 1e5)});
    if (s + 1 == a.greedy) break;
    BatchEntry e{id, ctx.seq_len(0), 0, true};
    const auto d0 = std::chrono::steady_clock::now();
    const auto next = ctx.forward(std::span<const BatchEntry>(&e, 1));
    decode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    last.assign(next.begin(), next.end());
  }
  out["greedy"] = std::move(greedy);
  std::printf("%s\n", out.dump().c_str());
  if (a.timing) {
    const double ps = std::chrono::duration<double>(t1 - t0).count();
    std::fprintf(stderr, "threads %d: prompt %zu tokens in %.3f s (%.1f tok/s)", ctx.n_threads(), tokens.size(), ps,
                 tokens.size() / ps);
    if (a.greedy > 1)
      std::fprintf(stderr, ", decode %d tokens in %.3f s (%.1f tok/s)", a.greedy - 1, decode_s,
                   (a.greedy - 1) / decode_s);
    std::fprintf(stderr, "\n");
  }
  return 0;
}

const bool registered = register_command({
    "logits",
    "Evaluate a prompt and print per-position logit statistics and greedy steps as JSON",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<LogitsArgs>();
      sub.add_option("-m,--model", a->model, "GGUF model file")->required();
      auto* f = sub.add_option("--file", a->prompt_file, "File holding the prompt text (exact bytes)");
      auto* p = sub.add_option("-p,--prompt", a->prompt, "Prompt text");
      f->excludes(p);
      sub.add_option("--top", a->top, "Top logits per position")->capture_default_str();
      sub.add_option("--greedy", a->greedy, "Greedy steps after the prompt")->capture_default_str();
      sub.add_option("-t,--threads", a->threads, "Threads (default: physical cores)");
      sub.add_flag("--timing", a->timing, "Print prompt and decode speed to stderr");
      sub.add_flag("--f32-kv", a->f32_kv, "Keep the KV cache in F32 instead of F16");
      return [a] { return run_logits(*a); };
    },
});

}  // namespace
}  // namespace lmhost::cli
