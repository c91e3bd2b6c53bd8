// lmhost config check FILE   : every problem of a configuration file (exit 2 when any)
// lmhost config keys         : every setting with its environment name
#include <cstdio>

#include "cli/command.h"
#include "config/config.h"

namespace lmhost::cli {
namespace {

struct ConfigOptions {
  std::string file;
  bool keys = false;
};

const bool registered = register_command({"config", "Check a configuration file or list the settings",
  [](CLI::App& sub) -> std::function<int()> {
    auto o = std::make_shared<ConfigOptions>();
    sub.require_subcommand(1);
    CLI::App* check = sub.add_subcommand("check", "report every problem in a YAML configuration file");
    check->add_option("FILE", o->file, "the YAML file")->required();
    CLI::App* keys = sub.add_subcommand("keys", "list every setting: key path, environment variable, meaning");
    keys->callback([o] { o->keys = true; });
    return [o]() -> int {
      if (o->keys) {
        for (const auto& s : config::settings())
          std::printf("%-34s %-32s %s\n", s.path.c_str(), s.env.empty() ? "-" : s.env.c_str(), s.help.c_str());
        return 0;
      }
      const auto problems = config::check_file(o->file);
      if (problems.empty()) {
        std::printf("%s: OK\n", o->file.c_str());
        return 0;
      }
      for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.c_str());
      std::fprintf(stderr, "%zu problem%s in %s\n", problems.size(), problems.size() == 1 ? "" : "s", o->file.c_str());
      return 2;
    };
  }});

}  // namespace
}  // namespace lmhost::cli
