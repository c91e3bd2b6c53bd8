// lmhost run -m FILE -p PROMPT [-n N] [--temp T] [--seed S] [-t THREADS]
// Streams the generated text to stdout; timings go to stderr.
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/command.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int n_predict = 128;
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int64_t seed = -1;
  int threads = 0;
  int ctx = 0;
  bool quiet = false;
};

int run(const RunOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto t_load = Clock::now();
  auto file = gguf::File::open(o.model);
  auto model = Model::load(file);
  auto tok = Tokenizer::from_gguf(*file);
  std::string prompt = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file);
  std::vector<Token> tokens = tok->encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  if (tokens.empty()) throw Error("the prompt is empty after tokenization");

  // Default context: just enough for the prompt and the output, capped at the model's.
  const int train_ctx = model->hparams().n_ctx_train;
  int n_ctx = o.ctx;
  if (n_ctx <= 0) {
    n_ctx = static_cast<int>(tokens.size()) + std::max(o.n_predict, 0);
    if (train_ctx > 0) n_ctx = std::min(n_ctx, train_ctx);
  }
  if (static_cast<int>(tokens.size()) >= n_ctx)
    throw Error("the prompt has " + std::to_string(tokens.size()) + " tokens but the context holds " +
                std::to_string(n_ctx) + " (raise it with --ctx)");
  Context ctx(model, n_ctx, 1, o.threads);

  SamplingParams sp;
  sp.temperature = o.temp;
  sp.top_k = o.top_k;
  sp.top_p = o.top_p;
  sp.min_p = o.min_p;
  sp.repeat_penalty = o.repeat_penalty;
  sp.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed) : std::random_device{}();
  Sampler sampler(sp);
  for (Token t : tokens) sampler.accept(t);

  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < tokens.size(); ++i)
    batch.push_back({tokens[i], static_cast<int32_t>(i), 0, i + 1 == tokens.size()});
  const auto t_prompt = Clock::now();
  std::span<const float> logits = ctx.forward(batch);
  const auto t_gen = Clock::now();

  StreamDecoder out(*tok);
  int n_gen = 0;
  int pos = static_cast<int>(tokens.size());
  while (n_gen < o.n_predict && pos < n_ctx) {
    const Token next = sampler.sample(logits);
    if (tok->is_eog(next)) break;
    sampler.accept(next);
    ++n_gen;
    const std::string piece = out.push(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    const BatchEntry e{next, pos++, 0, true};
    logits = ctx.forward(std::span<const BatchEntry>(&e, 1));
  }
  const std::string rest = out.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  const auto t_end = Clock::now();

  if (!o.quiet) {
    auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    const double pp = secs(t_prompt, t_gen), tg = secs(t_gen, t_end);
    std::fprintf(stderr, "\nload %.0f ms | prompt %zu tokens, %.1f tok/s | generated %d tokens, %.1f tok/s\n",
                 1e3 * secs(t_load, t_prompt), tokens.size(), tokens.size() / std::max(pp, 1e-9), n_gen,
                 n_gen / std::max(tg, 1e-9));
  }
  return 0;
}

const bool registered = register_command({"run", "Generate text from a prompt, streamed to stdout",
  [](CLI::App& sub) -> std::function<int()> {
    auto o = std::make_shared<RunOptions>();
    sub.add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
    sub.add_option("-p,--prompt", o->prompt, "prompt text");
    sub.add_option("-f,--file", o->prompt_file, "read the prompt from a file")->check(CLI::ExistingFile);
    sub.add_option("-n,--n-predict", o->n_predict, "tokens to generate")->capture_default_str();
    sub.add_option("--temp", o->temp, "temperature (0 = greedy)")->capture_default_str();
    sub.add_option("--top-k", o->top_k, "top-k (0 = off)")->capture_default_str();
    sub.add_option("--top-p", o->top_p, "top-p (1 = off)")->capture_default_str();
    sub.add_option("--min-p", o->min_p, "min-p (0 = off)")->capture_default_str();
    sub.add_option("--repeat-penalty", o->repeat_penalty, "repeat penalty (1 = off)")->capture_default_str();
    sub.add_option("--seed", o->seed, "random seed (-1 = random)")->capture_default_str();
    sub.add_option("-t,--threads", o->threads, "threads (0 = physical cores)")->capture_default_str();
    sub.add_option("-c,--ctx", o->ctx, "context size (0 = fit prompt and output, at most the model's)");
    sub.add_flag("-q,--quiet", o->quiet, "no timings on stderr");
    return [o] { return run(*o); };
  }});

}  // namespace
}  // namespace lmhost::cli
