// `lmhost bench -m FILE [-p 512] [-n 128] [-t THREADS] [-r REPS] [--json] [--membw]`
//
// Prompt processing (pp) and text generation (tg) speed as llama.cpp's
// llama-bench defines them:
//   pp: one batch of p prompt tokens into an empty context (logits for the
//       last token only), tokens/s = p / time;
//   tg: n tokens generated one at a time after an empty context (each step
//       a batch of one token with logits), tokens/s = n / time.
// Each figure is the median over -r repetitions, after one warm-up pass.
//
// --membw measures the machine's memory read bandwidth (threads streaming
// through a buffer far larger than the last-level cache; best of several
// passes) so a decode figure can be expressed as a fraction of the limit:
//   weight bytes read per token x tg tokens/s / bandwidth.
// Without -m, only the bandwidth is measured.
//
// With -m, --membw also runs a paired decode ("tg paired"): before each
// generated token the same threads read every weight byte that token will
// read (the same mapped tensors, in the same order, split evenly between
// the threads, no arithmetic), so each token has a bandwidth reading taken
// at the same moment. On a shared host whose bandwidth moves from second to
// second this is the fair limit for that token; the fraction reported is
// read time / decode time over all paired tokens (median of -r runs).
//
// For an embedding model (bert, nomic-bert) the figure is embeddings per
// second: -b inputs of -p tokens each (random token ids, clamped to the
// model's context) embedded in one call, median of -r repetitions after a
// warm-up; the time is the encoder pass alone (no tokenizer, no HTTP), as
// llama-embedding's "prompt eval time" measures it.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "cli/command.h"
#include "gguf/gguf.h"
#include "model/bert.h"
#include "model/model.h"
#include "ops/thread_pool.h"
#include "tensor/kernels.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

struct BenchArgs {
  std::string model;
  int n_prompt = 512;
  int n_gen = 128;
  int threads = 0;
  int reps = 5;
  bool json = false;
  bool membw = false;
  int membw_mib = 1024;
  int batch = 32;  // embedding models: inputs per call
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ------------------------------------------------------------ bandwidth

// Sum of 64-bit words over [p, p + n) (n a multiple of 256 bytes, p any
// address): four independent 256-bit accumulators keep enough loads in
// flight to stream.
__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    const __m256i* v = reinterpret_cast<const __m256i*>(p + i);
    a0 = _mm256_add_epi64(a0, _mm256_add_epi64(_mm256_loadu_si256(v + 0), _mm256_loadu_si256(v + 4)));
    a1 = _mm256_add_epi64(a1, _mm256_add_epi64(_mm256_loadu_si256(v + 1), _mm256_loadu_si256(v + 5)));
    a2 = _mm256_add_epi64(a2, _mm256_add_epi64(_mm256_loadu_si256(v + 2), _mm256_loadu_si256(v + 6)));
    a3 = _mm256_add_epi64(a3, _mm256_add_epi64(_mm256_loadu_si256(v + 3), _mm256_loadu_si256(v + 7)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t out[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), s);
  return out[0] + out[1] + out[2] + out[3];
}

uint64_t read_plain(const uint8_t* p, size_t n) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i < n / 8; i += 4) {
    s0 += w[i];
    s1 += w[i + 1];
    s2 += w[i + 2];
    s3 += w[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

// Read bandwidth in bytes/s with n_threads threads over a buffer of `mib`
// MiB, best of `passes` passes (the machine is shared: the best pass is the
// closest to what the memory system can do).
double measure_read_bandwidth(int n_threads, int mib, int passes = 7) {
  const size_t bytes = static_cast<size_t>(mib) << 20;
  void* mem = std::aligned_alloc(4096, bytes);
  if (!mem) throw Error("bench --membw: cannot allocate " + std::to_string(mib) + " MiB");
  std::unique_ptr<void, decltype(&std::free)> guard(mem, &std::free);
  uint8_t* buf = static_cast<uint8_t*>(mem);
  for (size_t i = 0; i < bytes; i += 64) std::memset(buf + i, static_cast<int>(i >> 12), 64);
  const bool avx2 = __builtin_cpu_supports("avx2");
  const size_t slice = bytes / n_threads / 256 * 256;
  std::atomic<uint64_t> sink{0};
  double best = 0.0;
  for (int p = 0; p < passes; ++p) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> th;
    std::vector<double> took(n_threads);
    for (int t = 0; t < n_threads; ++t) {
      th.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) _mm_pause();
        const auto t0 = Clock::now();
        const uint8_t* s = buf + t * slice;
        sink.fetch_add(avx2 ? read_avx2(s, slice) : read_plain(s, slice), std::memory_order_relaxed);
        took[t] = seconds_since(t0);
      });
    }
    while (ready.load() < n_threads) std::this_thread::yield();
    const auto t0 = Clock::now();
    go.store(true, std::memory_order_release);
    for (auto& t : th) t.join();
    const double s = seconds_since(t0);
    (void)took;
    best = std::max(best, static_cast<double>(slice) * n_threads / s);
  }
  if (sink.load() == 42) std::fputc(' ', stderr);  // keep the reads
  return best;
}

// ------------------------------------------------------------ model bench

const char* file_type_name(int64_t ft) {
  static const std::map<int64_t, const char*> names = {
      {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},
      {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"},
      {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},   {32, "BF16"}};
  const auto it = names.find(ft);
  return it == names.end() ? nullptr : it->second;
}

// The file's quantization: general.file_type, else the type holding most bytes.
std::string model_type(const gguf::File& f) {
  if (auto ft = f.get_int("general.file_type"))
    if (const char* n = file_type_name(*ft)) return n;
  std::map<std::string, size_t> by;
  for (const auto& t : f.tensors()) by[dtype_name(t.type)] += t.view().nbytes;
  std::string best;
  size_t most = 0;
  for (const auto& [n, b] : by)
    if (b > most) most = b, best = n;
  return best;
}

// The weight tensors a decode step streams, in the order it reads them:
// every layer matrix, then the output matrix (the embedding table only
// contributes one row unless it is tied).
std::vector<const TensorView*> decode_weights(const Model& m) {
  std::vector<const TensorView*> w;
  for (const auto& L : m.layers())
    for (const TensorView* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) w.push_back(t);
  w.push_back(&m.output());
  return w;
}

size_t bytes_per_token(const Model& m) {
  size_t n = 0;
  for (const TensorView* t : decode_weights(m)) n += t->nbytes;
  return n;
}

// Reads the bytes of `ws` (in order) on the pool's threads, each thread one
// contiguous share of their concatenation. Returns a checksum (keeps the loads).
uint64_t read_weights(ops::ThreadPool& pool, const std::vector<const TensorView*>& ws, size_t total) {
  const int n = pool.n_threads();
  const bool avx2 = __builtin_cpu_supports("avx2");
  std::vector<uint64_t> sums(static_cast<size_t>(n) * 8, 0);  // a cache line per thread
  pool.parallel_for(n, [&](int64_t t, int) {
    const size_t b0 = total * t / n, b1 = total * (t + 1) / n;
    size_t at = 0;
    uint64_t s = 0;
    for (const TensorView* w : ws) {
      const size_t lo = std::max(at, b0), hi = std::min(at + w->nbytes, b1);
      if (lo + 256 <= hi) {
        const uint8_t* p = static_cast<const uint8_t*>(w->data) + (lo - at);
        s += avx2 ? read_avx2(p, (hi - lo) / 256 * 256) : read_plain(p, (hi - lo) / 256 * 256);
      }
      at += w->nbytes;
    }
    sums[static_cast<size_t>(t) * 8] = s;
  });
  uint64_t s = 0;
  for (uint64_t v : sums) s += v;
  return s;
}

int run_embed_bench(const BenchArgs& a, std::shared_ptr<gguf::File> file, int threads, nlohmann::ordered_json& out) {
  if (a.batch < 1) throw Error("bench: -b must be at least 1");
  auto model = EmbeddingModel::load(file);
  const EmbedHParams& hp = model->hparams();
  const int len = std::clamp(a.n_prompt > 0 ? a.n_prompt : 128, 1, hp.n_ctx_train);
  ops::ThreadPool pool(threads);
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> pick(1000 < hp.n_vocab ? 1000 : 0, hp.n_vocab - 1);
  std::vector<std::vector<Token>> batch(a.batch);
  for (auto& s : batch) {
    s.resize(len);
    for (auto& t : s) t = pick(rng);
  }
  auto run = [&] {
    const auto t0 = Clock::now();
    auto v = model->embed(batch, pool);
    const double s = seconds_since(t0);
    if (v.size() != batch.size()) throw Error("bench: embedding count mismatch");
    return s;
  };
  run();  // warm-up
  std::vector<double> eps;
  for (int r = 0; r < a.reps; ++r) eps.push_back(a.batch / run());
  const double m = median(eps);
  auto r2 = [](double v) { return std::round(v * 100.0) / 100.0; };
  out["model"] = a.model;
  out["arch"] = hp.arch_name;
  out["type"] = model_type(*file);
  out["file_size"] = file->file_size();
  out["threads"] = threads;
  out["isa"] = isa_name(kernels().isa);
  out["reps"] = a.reps;
  out["input_tokens"] = len;
  out["batch"] = a.batch;
  out["embeddings_per_s"] = r2(m);
  out["embed_tokens_per_s"] = r2(m * len);
  out["embed_samples"] = eps;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  if (out.contains("membw_gb_per_s"))
    std::printf("memory read bandwidth: %.2f GB/s (%d threads)\n", out["membw_gb_per_s"].get<double>(), threads);
  std::printf("model: %s (%s %s, %.1f MiB, %d threads, %s)\n", a.model.c_str(), hp.arch_name.c_str(),
              out["type"].get<std::string>().c_str(), file->file_size() / 1048576.0, threads, isa_name(kernels().isa));
  std::printf("embed %d x %d tokens: %10.2f embeddings/s (%.0f tokens/s, median of %d)\n", a.batch, len, m, m * len,
              a.reps);
  return 0;
}

int run_bench(const BenchArgs& a) {
  if (a.model.empty() && !a.membw) throw Error("bench: give a model with -m FILE, or --membw");
  if (a.n_prompt < 0 || a.n_gen < 0) throw Error("bench: -p and -n must not be negative");
  if (a.reps < 1) throw Error("bench: -r must be at least 1");
  const int threads = a.threads > 0 ? a.threads : ops::ThreadPool::physical_cores();
  nlohmann::ordered_json out;
  double bw = 0.0;
  if (a.membw) {
    bw = measure_read_bandwidth(threads, std::max(64, a.membw_mib));
    out["membw_gb_per_s"] = std::round(bw / 1e7) / 100.0;
  }
  std::shared_ptr<gguf::File> efile;
  if (!a.model.empty()) efile = gguf::File::open(a.model);
  if (efile && is_embedding_model(*efile)) return run_embed_bench(a, efile, threads, out);
  if (!a.model.empty()) {
    auto file = efile;
    auto model = Model::load(file);
    const int nv = model->hparams().n_vocab;
    const int n_ctx = std::max(1, std::max(a.n_prompt, a.n_gen) + 1);
    Context ctx(model, n_ctx, 1, threads);
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> pick(0, nv - 1);

    auto run_pp = [&] {
      std::vector<BatchEntry> batch(a.n_prompt);
      for (int i = 0; i < a.n_prompt; ++i) batch[i] = {pick(rng), i, 0, i == a.n_prompt - 1};
      ctx.clear();
      const auto t0 = Clock::now();
      ctx.forward(batch);
      return seconds_since(t0);
    };
    auto run_tg = [&](int n) {
      ctx.clear();
      const auto t0 = Clock::now();
      // As llama-bench: each step feeds a random token (no sampling cost in the figure).
      for (int i = 0; i < n; ++i) {
        const BatchEntry e{pick(rng), i, 0, true};
        ctx.forward(std::span<const BatchEntry>(&e, 1));
      }
      return seconds_since(t0);
    };

    // Paired (--membw): a read of the token's weights, then the token, n times.
    const std::vector<const TensorView*> wts = decode_weights(*model);
    const size_t bpt = bytes_per_token(*model);
    uint64_t sink = 0;
    auto run_tg_paired = [&](int n) {
      ctx.clear();
      double read_s = 0.0, dec_s = 0.0;
      for (int i = 0; i < n; ++i) {
        auto t0 = Clock::now();
        {
          const ops::ThreadPool::Busy hot(ctx.pool());
          sink += read_weights(ctx.pool(), wts, bpt);
        }
        read_s += seconds_since(t0);
        const BatchEntry e{pick(rng), i, 0, true};
        t0 = Clock::now();
        ctx.forward(std::span<const BatchEntry>(&e, 1));
        dec_s += seconds_since(t0);
      }
      return std::pair{read_s, dec_s};
    };

    std::vector<double> pp, tg, ptg, pbw, pfrac;
    if (a.n_prompt > 0) {
      run_pp();  // warm-up: page in the weights, size the buffers
      for (int r = 0; r < a.reps; ++r) pp.push_back(a.n_prompt / run_pp());
    }
    if (a.n_gen > 0) {
      run_tg(std::min(a.n_gen, 8));
      for (int r = 0; r < a.reps; ++r) tg.push_back(a.n_gen / run_tg(a.n_gen));
      if (a.membw) {
        run_tg_paired(std::min(a.n_gen, 8));
        for (int r = 0; r < a.reps; ++r) {
          const auto [rs, ds] = run_tg_paired(a.n_gen);
          ptg.push_back(a.n_gen / ds);
          pbw.push_back(static_cast<double>(bpt) * a.n_gen / rs / 1e9);
          pfrac.push_back(rs / ds);
        }
      }
    }
    if (sink == 42) std::fputc(' ', stderr);
    out["model"] = a.model;
    out["arch"] = model->hparams().arch_name;
    out["type"] = model_type(*file);
    out["file_size"] = file->file_size();
    out["n_params"] = [&] {
      int64_t n = 0;
      for (const auto& t : file->tensors()) n += t.n_elements();
      return n;
    }();
    out["threads"] = threads;
    out["isa"] = isa_name(kernels().isa);
    out["reps"] = a.reps;
    out["n_prompt"] = a.n_prompt;
    out["n_gen"] = a.n_gen;
    out["weight_bytes_per_token"] = bpt;
    auto r2 = [](double v) { return std::round(v * 100.0) / 100.0; };
    if (!pp.empty()) {
      out["pp_tokens_per_s"] = r2(median(pp));
      out["pp_samples"] = pp;
    }
    if (!tg.empty()) {
      const double m = median(tg);
      out["tg_tokens_per_s"] = r2(m);
      out["tg_samples"] = tg;
      out["tg_gb_per_s"] = r2(m * static_cast<double>(bpt) / 1e9);
      if (bw > 0) out["tg_bandwidth_fraction"] = std::round(m * bpt / bw * 1000.0) / 1000.0;
    }
    if (!ptg.empty()) {
      out["tg_paired_tokens_per_s"] = r2(median(ptg));
      out["tg_paired_read_gb_per_s"] = r2(median(pbw));
      out["tg_paired_fraction"] = std::round(median(pfrac) * 1000.0) / 1000.0;
      out["tg_paired_fraction_samples"] = pfrac;
    }
  }
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  if (out.contains("membw_gb_per_s"))
    std::printf("memory read bandwidth: %.2f GB/s (%d threads)\n", out["membw_gb_per_s"].get<double>(), threads);
  if (!a.model.empty()) {
    std::printf("model: %s (%s %s, %.1f MiB, %d threads, %s)\n", a.model.c_str(),
                out["arch"].get<std::string>().c_str(), out["type"].get<std::string>().c_str(),
                out["file_size"].get<double>() / 1048576.0, threads, out["isa"].get<std::string>().c_str());
    if (out.contains("pp_tokens_per_s"))
      std::printf("pp%-5d %10.2f tokens/s (median of %d)\n", a.n_prompt, out["pp_tokens_per_s"].get<double>(), a.reps);
    if (out.contains("tg_tokens_per_s")) {
      std::printf("tg%-5d %10.2f tokens/s (median of %d), %.2f GB/s of weights", a.n_gen,
                  out["tg_tokens_per_s"].get<double>(), a.reps, out["tg_gb_per_s"].get<double>());
      if (out.contains("tg_bandwidth_fraction"))
        std::printf(" = %.1f%% of the read bandwidth", 100.0 * out["tg_bandwidth_fraction"].get<double>());
      std::printf("\n");
    }
    if (out.contains("tg_paired_fraction"))
      std::printf("tg%-5d %10.2f tokens/s paired with a read of each token's weights at %.2f GB/s: %.1f%% of that "
                  "read's speed (median of %d)\n",
                  a.n_gen, out["tg_paired_tokens_per_s"].get<double>(), out["tg_paired_read_gb_per_s"].get<double>(),
                  100.0 * out["tg_paired_fraction"].get<double>(), a.reps);
  }
  return 0;
}

const bool registered = register_command({
    "bench",
    "Measure prompt processing and generation speed (llama-bench's pp/tg), embeddings/s, and memory bandwidth",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<BenchArgs>();
      sub.add_option("-m,--model", a->model, "GGUF model file");
      sub.add_option("-p,--n-prompt", a->n_prompt, "Prompt tokens evaluated in one batch (0: skip)")->capture_default_str();
      sub.add_option("-n,--n-gen", a->n_gen, "Tokens generated one at a time (0: skip)")->capture_default_str();
      sub.add_option("-b,--batch", a->batch, "Embedding models: inputs per call (-p tokens each)")->capture_default_str();
      sub.add_option("-t,--threads", a->threads, "Threads (default: physical cores)");
      sub.add_option("-r,--repetitions", a->reps, "Repetitions (the median is reported)")->capture_default_str();
      sub.add_flag("--json", a->json, "Print one JSON object");
      sub.add_flag("--membw", a->membw, "Also measure the memory read bandwidth (alone without -m)");
      sub.add_option("--membw-mib", a->membw_mib, "Buffer size for --membw in MiB")->capture_default_str();
      return [a] { return run_bench(*a); };
    },
});

}  // namespace
}  // namespace lmhost::cli
