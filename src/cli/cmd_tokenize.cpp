// `lmhost tokenize -m FILE [--add-special] [--file PATH | TEXT]`: prints the
// token ids of TEXT (or of the exact bytes of PATH) as a JSON array on one
// line. Special-token text (e.g. "<|im_end|>") is parsed as special tokens;
// BOS/EOS (CLS/SEP) are added only with --add-special, as the model says.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace lmhost::cli {
namespace {

struct Opts {
  std::string model;
  std::string file;
  std::string text;
  bool add_special = false;
  bool no_parse_special = false;
};

int run_tokenize(const Opts& o, bool have_text) {
  if (have_text && !o.file.empty()) throw Error("give either TEXT or --file, not both");
  if (!have_text && o.file.empty()) throw Error("nothing to tokenize: give TEXT or --file PATH");
  const std::string text = o.file.empty() ? o.text : read_file(o.file);
  auto gguf = gguf::File::open(o.model);
  auto tok = Tokenizer::from_gguf(*gguf);
  const auto ids = tok->encode(text, o.add_special, !o.no_parse_special);
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

const bool registered = register_command({
    "tokenize",
    "Print the token ids of a text as a JSON array",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<Opts>();
      sub.add_option("-m,--model", o->model, "GGUF file (only its tokenizer metadata is read)")->required();
      sub.add_flag("--add-special", o->add_special, "Add BOS/EOS (CLS/SEP) as the model's metadata says");
      sub.add_flag("--no-parse-special", o->no_parse_special,
                   "Tokenize special-token text (e.g. <|im_end|>) as plain text");
      sub.add_option("--file", o->file, "Read the text from this file (exact bytes)");
      auto* text_opt = sub.add_option("text", o->text, "Text to tokenize");
      return [o, text_opt] { return run_tokenize(*o, text_opt->count() > 0); };
    },
});

}  // namespace
}  // namespace lmhost::cli
