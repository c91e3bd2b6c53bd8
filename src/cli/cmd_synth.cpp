// `lmhost synth`: write a shape-exact GGUF model with seeded random weights
// and a real, self-consistent tokenizer (see model/synth.h).
#include <cstdio>

#include "cli/command.h"
#include "model/synth.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

struct SynthArgs {
  std::string shape, type = "F16", out, arch, tokenizer;
  uint64_t seed = 42;
  int64_t dim = 0, layers = 0, heads = 0, kv_heads = 0, ff = 0, vocab = 0, ctx = 0;
  int threads = 0;
  bool tied = false, untied = false;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

int run_synth(const SynthArgs& a) {
  model::SynthSpec spec;
  if (!a.shape.empty()) {
    auto s = model::synth_shape(a.shape);
    if (!s) throw Error("unknown shape '" + a.shape + "' (known: " + join(model::synth_shape_names()) + ")");
    spec = *s;
  } else {
    if (!a.dim || !a.layers || !a.heads || !a.ff || !a.vocab)
      throw Error("give --shape NAME, or --dim --layers --heads --ff --vocab (and optionally --arch --kv-heads --ctx)");
    spec.name = "synthetic";
    spec.arch = a.arch.empty() ? "llama" : a.arch;
    if (spec.arch == "qwen2") {
      spec.qkv_bias = true, spec.tied = true, spec.rope_base = 1000000.0f, spec.rms_eps = 1e-6f;
      spec.tokenizer = model::SynthTokenizer::Qwen;
    }
  }
  if (!a.arch.empty()) spec.arch = a.arch;
  if (a.dim) spec.dim = a.dim;
  if (a.layers) spec.layers = a.layers;
  if (a.heads) spec.heads = a.heads;
  spec.kv_heads = a.kv_heads ? a.kv_heads : (a.shape.empty() ? spec.heads : spec.kv_heads);
  if (a.ff) spec.ff = a.ff;
  if (a.vocab) spec.vocab = a.vocab;
  if (a.ctx) spec.ctx = a.ctx;
  if (a.tied) spec.tied = true;
  if (a.untied) spec.tied = false;
  if (!a.tokenizer.empty()) {
    if (a.tokenizer == "spm") spec.tokenizer = model::SynthTokenizer::Spm;
    else if (a.tokenizer == "qwen") spec.tokenizer = model::SynthTokenizer::Qwen;
    else if (a.tokenizer == "llama3") spec.tokenizer = model::SynthTokenizer::Llama3;
    else throw Error("unknown --tokenizer '" + a.tokenizer + "' (spm, qwen, llama3)");
  }
  spec.type = a.type;
  spec.seed = a.seed;
  if (!model::synth_file_type_id(spec.type))
    throw Error("unknown --type '" + spec.type + "' (known: " + join(model::synth_file_types()) + ")");
  auto r = model::synth_model(spec, a.out, a.threads);
  std::printf("wrote %s: %s %s, %zu tensors, %.1fM parameters, %.1f MiB in %.2f s\n", a.out.c_str(),
              spec.arch.c_str(), spec.type.c_str(), r.tensors, r.parameters / 1e6, r.file_bytes / 1048576.0,
              r.seconds);
  return 0;
}

const bool registered = register_command({
    "synth",
    "Write a synthetic GGUF model (real shapes, random weights, working tokenizer)",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<SynthArgs>();
      sub.add_option("--shape", a->shape, "Shape: " + join(model::synth_shape_names()));
      sub.add_option("--type", a->type, "File type: " + join(model::synth_file_types()))->capture_default_str();
      sub.add_option("-o,--output", a->out, "Output .gguf path")->required();
      sub.add_option("--seed", a->seed, "Random seed")->capture_default_str();
      sub.add_option("--arch", a->arch, "Architecture: llama or qwen2");
      sub.add_option("--dim", a->dim, "Embedding length");
      sub.add_option("--layers", a->layers, "Block count");
      sub.add_option("--heads", a->heads, "Attention heads");
      sub.add_option("--kv-heads", a->kv_heads, "KV heads (default: heads)");
      sub.add_option("--ff", a->ff, "Feed-forward length");
      sub.add_option("--vocab", a->vocab, "Vocabulary size");
      sub.add_option("--ctx", a->ctx, "Training context length");
      sub.add_option("--tokenizer", a->tokenizer, "Tokenizer style: spm, qwen, llama3");
      sub.add_flag("--tied", a->tied, "Tie the output matrix to the embedding");
      sub.add_flag("--untied", a->untied, "Write a separate output matrix");
      sub.add_option("--threads", a->threads, "Threads for quantization (default: all)");
      return [a] { return run_synth(*a); };
    },
});

}  // namespace
}  // namespace lmhost::cli
