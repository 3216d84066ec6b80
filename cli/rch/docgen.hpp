// Hidden commands that print rch's man pages and shell completions by
// walking the same CLI11 tree that parses the command line (and config.toml's
// key table), so that --help, the man pages and completion cannot drift:
//   rch __man rch|rch-config      troff on stdout (the build writes share/man)
//   rch __completion bash|zsh     the completion script
//   rch __complete workers        worker ids and @tags of workers.toml, one a line
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace rch::cli {

class DocCommands {
 public:
  // Adds the hidden subcommands to `app`; call after every other subcommand.
  explicit DocCommands(CLI::App& app);

  // The exit code when one of them was given on the command line.
  std::optional<int> run() const;

 private:
  CLI::App& app_;
  CLI::App* man_ = nullptr;
  CLI::App* completion_ = nullptr;
  CLI::App* complete_ = nullptr;
  std::string page_, shell_, what_;
};

}  // namespace rch::cli
