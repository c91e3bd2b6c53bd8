// Embedding throughput with and without dynamic batching: the minilm-l6 shape
// (synthesized), 128-token inputs, 64 concurrent clients each sending one
// text at a time to the EmbedBatcher (the path behind /v1/embeddings, minus
// HTTP). Prints embeddings/s and mean latency; not a test.
//   embed_bench [--seconds S] [--clients N] [--threads T] [--type F16|Q8_0|F32] [--tokens N]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "engine/embed_batcher.h"
#include "gguf/gguf.h"
#include "model/synth.h"

using namespace lmhost;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  double seconds = 5;
  int clients = 64, threads = 0, tokens = 128;
  std::string type = "F16";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--clients") clients = std::atoi(argv[i + 1]);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--type") type = argv[i + 1];
    else if (a == "--tokens") tokens = std::atoi(argv[i + 1]);
  }
  auto spec = model::synth_shape("minilm-l6");
  spec->type = type;
  const std::string path = (std::filesystem::temp_directory_path() / ("embed-bench-" + std::to_string(getpid()) + ".gguf")).string();
  model::synth_model(*spec, path, 0);
  auto file = gguf::File::open(path);
  std::filesystem::remove(path);
  auto model = EmbeddingModel::load(file);
  std::printf("model: minilm-l6 shape (bert 384/6/12/1536), %s, %d-token inputs, %d clients, %d compute threads\n",
              type.c_str(), tokens, clients, threads > 0 ? threads : ops::ThreadPool::physical_cores());

  for (int batch : {1, 32}) {
    EmbedOptions eo;
    eo.batch_size = batch;
    eo.n_threads = threads;
    eo.max_queue = 4096;
    EmbedBatcher b(model, eo);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> done{0}, lat_us{0};
    std::vector<std::thread> ts;
    const auto t0 = Clock::now();
    for (int c = 0; c < clients; ++c)
      ts.emplace_back([&, c] {
        uint64_t k = 0;
        while (!stop.load()) {
          std::vector<Token> s{101};
          for (int i = 1; i < tokens - 1; ++i) s.push_back(1000 + static_cast<Token>((c * 7919 + k * 104729 + i * 31) % 29000));
          s.push_back(102);
          const auto t = Clock::now();
          b.embed({s});
          lat_us += std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
          ++done;
          ++k;
        }
      });
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& t : ts) t.join();
    const double el = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto st = b.stats();
    std::printf("batching %-3s (BATCH_SIZE=%2d): %8.1f embeddings/s, mean latency %7.1f ms, %llu passes, %.1f seqs/pass\n",
                batch > 1 ? "on" : "off", batch, done / el, done ? lat_us / 1000.0 / done : 0.0,
                static_cast<unsigned long long>(st.passes), st.passes ? double(st.sequences) / st.passes : 0.0);
  }
  return 0;
}
