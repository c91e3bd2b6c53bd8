// lmhost: one binary, many subcommands (serve, run, tokenize, logits, show, synth, ...).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "cli/command.h"
#include "util/error.h"

namespace lmhost::cli {

std::vector<Command>& commands() {
  static std::vector<Command> cmds;
  return cmds;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace lmhost::cli

int main(int argc, char** argv) {
  using namespace lmhost;
  CLI::App app{"lmhost: a self-hosted model server for GGUF models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lmhost 0.1.0");
  std::function<int()> run;
  auto& cmds = cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    auto fn = c.setup(*sub);
    sub->callback([&run, fn] { run = fn; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --version exit 0; a usage error (unknown flag, bad value,
    // missing argument) prints CLI11's message and exits 2, as tools do.
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return run ? run() : 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "lmhost: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmhost: error: %s\n", e.what());
    return 1;
  }
}
