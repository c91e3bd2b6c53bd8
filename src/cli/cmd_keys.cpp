// lmhost keys add NAME [--file F] [--models a,b] [--rpm N] [--burst N] [--tpm N]
// Creates an API key, prints it once on stdout and appends only its SHA-256
// to the keys file (API_KEYS_FILE, default ./lmhost-keys).
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "cli/command.h"
#include "gateway/auth.h"

namespace lmhost::cli {
namespace {

struct KeysOptions {
  std::string name, file, models;
  int64_t rpm = -1, burst = -1, tpm = -1;
};

const bool registered = register_command({"keys", "Manage API keys (only their hashes are stored)",
  [](CLI::App& sub) -> std::function<int()> {
    auto o = std::make_shared<KeysOptions>();
    sub.require_subcommand(1);
    CLI::App* add = sub.add_subcommand("add", "create a key: printed once, its hash appended to the keys file");
    add->add_option("NAME", o->name, "a name for logs and metrics (never the key)")->required();
    add->add_option("--file", o->file, "keys file (default: $API_KEYS_FILE, else ./lmhost-keys)");
    add->add_option("--models", o->models, "comma-separated models this key may use (default: all)");
    add->add_option("--rpm", o->rpm, "requests per minute for this key (default: the server's)");
    add->add_option("--burst", o->burst, "burst on top of --rpm (default: the server's)");
    add->add_option("--tpm", o->tpm, "tokens per minute for this key (default: the server's)");
    return [o]() -> int {
      std::string file = o->file;
      if (file.empty()) {
        const char* env = std::getenv("API_KEYS_FILE");
        file = env && *env ? env : "lmhost-keys";
      }
      std::vector<std::string> models;
      std::istringstream in(o->models);
      for (std::string m; std::getline(in, m, ',');)
        if (!m.empty()) models.push_back(m);
      const std::string key = gateway::generate_key();
      gateway::append_key_file(file, o->name, gateway::sha256(key), models, {o->rpm, o->burst, o->tpm});
      std::printf("%s\n", key.c_str());
      std::fprintf(stderr,
                   "lmhost: key '%s' added to %s (only its SHA-256 is stored: copy the key now, it is not shown "
                   "again)\n",
                   o->name.c_str(), file.c_str());
      return 0;
    };
  }});

}  // namespace
}  // namespace lmhost::cli
