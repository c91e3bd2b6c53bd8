// Decode with the weights packed at load (tensor/packed.h) against the
// file's layout, in one process: the same GGUF file loaded twice
// (Model::load(file, true / false)), decode runs of a few tokens alternating
// round after round on the same threads, so the host's memory-bandwidth
// swings hit both alike. The figure that matters is the median per-round
// ratio of tokens per second.
//
//   pack_bench MODEL.gguf [threads=2] [rounds=15] [tokens=16]
//
// Also decode steps of 2-16 streams at once (continuous batching) and a
// 512-token prompt batch, alternating the same way.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
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
  ctx.clear();
  std::vector<BatchEntry> b;
  for (int i = 0; i < n; ++i) b.push_back({static_cast<Token>(100 + i), static_cast<int32_t>(i), 0, i + 1 == n});
  const auto t0 = std::chrono::steady_clock::now();
  ctx.forward(b);
  return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Tokens per second of n decode steps of `streams` sequences at once (one
// token each per step, as the server's continuous batching runs them).
double decode(Context& ctx, int n, int streams) {
  ctx.clear();
  std::vector<BatchEntry> b(streams);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < streams; ++s) b[s] = {static_cast<Token>(100 + i + 7 * s), i, s, true};
    ctx.forward(b);
  }
  return static_cast<double>(n) * streams / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// fn on the packed and the plain context alternately (which goes first
// alternates too); prints the medians and the median per-round ratio.
void ab(const char* what, int rounds, Context& cp, Context& cf, const std::function<double(Context&)>& fn) {
  fn(cp), fn(cf);  // page in, warm up
  std::vector<double> tp, tf, ratio;
  for (int r = 0; r < rounds; ++r) {
    double p = 0, f = 0;
    if (r % 2 == 0) p = fn(cp), f = fn(cf);
    else f = fn(cf), p = fn(cp);
    tp.push_back(p), tf.push_back(f), ratio.push_back(p / f);
  }
  std::printf("%-28s packed %7.1f tok/s  file layout %7.1f tok/s  ratio %.3f (min %.3f, max %.3f)\n", what,
              median(tp), median(tf), median(ratio), *std::min_element(ratio.begin(), ratio.end()),
              *std::max_element(ratio.begin(), ratio.end()));
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
  const int pp = 512, max_streams = 16;
  Context cp(packed, std::max(tokens + 1, pp), max_streams, threads), cf(plain, std::max(tokens + 1, pp), max_streams, threads);
  std::printf("%d threads, %d rounds\n", threads, rounds);
  for (int streams : {1, 2, 4, 8, 16}) {
    const std::string what = "decode, " + std::to_string(streams) + (streams == 1 ? " stream" : " streams");
    ab(what.c_str(), streams == 1 ? rounds : std::max(3, rounds / 3), cp, cf,
       [&](Context& c) { return decode(c, tokens, streams); });
  }
  ab("prompt of 512 tokens", std::max(3, rounds / 3), cp, cf, [&](Context& c) { return prompt(c, pp); });
  return 0;
}
