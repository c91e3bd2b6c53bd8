// Decode with the weights packed at load (tensor/packed.h) against the
// file's layout, in one process: the same GGUF file loaded twice
// (Model::load(file, true / false)), decode runs of a few tokens alternating
// round after round on the same threads, so the host's memory-bandwidth
// swings hit both alike. The figure that matters is the median per-round
// ratio of tokens per second.
//
//   pack_bench MODEL.gguf [threads=2] [rounds=15] [tokens=16]
//
// Also a 512-token prompt batch, alternating the same way (the packed
// layout is unpacked per 16-row panel there).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"

using namespace lmhost;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Tokens per second of one prompt batch of n tokens (logits of the last).
double prompt(Context& ctx, int n) {
  ctx.clear_seq(0);
  std::vector<BatchEntry> b;
  for (int i = 0; i < n; ++i) b.push_back({static_cast<Token>(100 + i), static_cast<int32_t>(i), 0, i + 1 == n});
  const auto t0 = std::chrono::steady_clock::now();
  ctx.forward(b);
  return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Tokens per second of n decode steps after an empty context.
double decode(Context& ctx, int n) {
  ctx.clear_seq(0);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    const BatchEntry e{static_cast<Token>(100 + i), static_cast<int32_t>(i), 0, true};
    ctx.forward(std::span<const BatchEntry>(&e, 1));
  }
  return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: pack_bench MODEL.gguf [threads=2] [rounds=15] [tokens=16]\n");
    return 2;
  }
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 15;
  const int tokens = argc > 4 ? std::atoi(argv[4]) : 16;
  const auto file = gguf::File::open(argv[1]);
  const auto t0 = std::chrono::steady_clock::now();
  const auto plain = Model::load(file, false);
  const auto t1 = std::chrono::steady_clock::now();
  const auto packed = Model::load(file, true);
  const auto t2 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::printf("%s: %.0f MiB packed of %.0f MiB of weights; load %.0f ms packed, %.0f ms as in the file\n", argv[1],
              packed->packed_bytes() / 1048576.0, plain->weight_bytes() / 1048576.0, ms(t1, t2), ms(t0, t1));
  const int pp = 512;
  Context cp(packed, std::max(tokens + 1, pp), 1, threads), cf(plain, std::max(tokens + 1, pp), 1, threads);
  decode(cp, tokens), decode(cf, tokens);  // page in, warm up
  std::vector<double> tp, tf, ratio;
  for (int r = 0; r < rounds; ++r) {
    const bool packed_first = r % 2 == 0;
    const double a = packed_first ? decode(cp, tokens) : 0.0;
    const double b = decode(cf, tokens);
    const double c = packed_first ? a : decode(cp, tokens);
    tp.push_back(c), tf.push_back(b), ratio.push_back(c / b);
  }
  std::vector<double> pp_ratio;
  for (int r = 0; r < std::max(3, rounds / 3); ++r) {
    const double a = r % 2 ? prompt(cp, pp) : 0.0, b = prompt(cf, pp), c = r % 2 ? a : prompt(cp, pp);
    pp_ratio.push_back(c / b);
  }
  std::printf("prompt of %d tokens: per-round ratio packed / file layout %.3f\n", pp, median(pp_ratio));
  std::printf("%d threads, %d rounds of %d tokens: packed %.1f tok/s, file layout %.1f tok/s, per-round ratio %.3f (min %.3f, max %.3f)\n",
              threads, rounds, tokens, median(tp), median(tf), median(ratio), *std::min_element(ratio.begin(), ratio.end()),
              *std::max_element(ratio.begin(), ratio.end()));
  return 0;
}
