// `lmhost embed -m FILE [--file PATH | TEXT]`: prints {"embedding": [...]},
// the pooled, L2-normalised sentence embedding of TEXT (or of the exact bytes
// of PATH) under a bert / nomic-bert GGUF model. CLS/SEP are added as the
// model's tokenizer says; input longer than the model's context is truncated
// unless --no-truncate (then it is an error).
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "gguf/gguf.h"
#include "model/bert.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

struct Opts {
  std::string model, file, text;
  int threads = 0;
  bool no_truncate = false;
};

int run_embed(const Opts& o, bool have_text) {
  if (have_text && !o.file.empty()) throw Error("give either TEXT or --file, not both");
  if (!have_text && o.file.empty()) throw Error("nothing to embed: give TEXT or --file PATH");
  const std::string text = o.file.empty() ? o.text : read_file(o.file);
  auto gguf = gguf::File::open(o.model);
  if (!is_embedding_model(*gguf))
    throw Error(o.model + ": architecture '" + gguf->architecture() +
                "' is not an embedding model (supported: bert, nomic-bert)");
  auto model = EmbeddingModel::load(gguf);
  auto tok = Tokenizer::from_gguf(*gguf);
  auto ids = tok->encode(text, true, true);
  if (static_cast<int>(ids.size()) > model->n_ctx()) {
    if (o.no_truncate)
      throw Error("input has " + std::to_string(ids.size()) + " tokens, more than the model's context length of " +
                  std::to_string(model->n_ctx()));
    const Token last = ids.back();
    ids.resize(static_cast<size_t>(model->n_ctx()));
    if (last == tok->eos()) ids.back() = last;  // keep the closing SEP
  }
  const auto vec = model->embed({ids}, o.threads);
  nlohmann::json j;
  j["embedding"] = vec[0];
  const std::string out = j.dump() + "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

const bool registered = register_command({
    "embed",
    "Print the sentence embedding of a text under an embedding model (bert, nomic-bert)",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<Opts>();
      sub.add_option("-m,--model", o->model, "GGUF embedding model")->required();
      sub.add_option("--file", o->file, "Read the text from this file (exact bytes)");
      sub.add_option("-t,--threads", o->threads, "Compute threads (0: physical cores)");
      sub.add_flag("--no-truncate", o->no_truncate, "Fail instead of truncating input longer than the context");
      auto* text_opt = sub.add_option("text", o->text, "Text to embed");
      return [o, text_opt] { return run_embed(*o, text_opt->count() > 0); };
    },
});

}  // namespace
}  // namespace lmhost::cli
