// Subcommands register themselves here (one file per command, cmd_*.cpp), so
// adding a command touches only its own file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace lmhost::cli {

struct Command {
  std::string name;
  std::string help;
  // Adds options to `sub` and returns the function that runs the command
  // (its return value is the process exit code).
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Command>& commands();
inline bool register_command(Command c) { commands().push_back(std::move(c)); return true; }

// Reads a whole file as bytes; throws lmhost::Error naming the path.
std::string read_file(const std::string& path);

}  // namespace lmhost::cli
