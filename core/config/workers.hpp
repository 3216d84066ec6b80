// The fleet inventory, workers.toml: one [[workers]] table per SSH host.
// Every error reads "<file>:<line>:<col>: <message>".
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

struct WorkerConfig {
  std::string id;    // [A-Za-z0-9._-], unique, not starting with '-'
  std::string host;  // not starting with '-' (it reaches ssh's argv)
  std::string user;  // empty: ssh's default
  int port = 22;
  std::string identity_file;     // local path, "~/" expanded, relative to the file's directory
  std::string certificate_file;  // its OpenSSH certificate (same path rules); empty: ssh's default
  std::string root = "~/.rch";   // remote install root, expanded by the remote shell
  std::vector<std::string> tags;
  int line = 0;  // line of the worker's [[workers]] header, for later messages
};

Result<std::vector<WorkerConfig>> load_workers(const std::filesystem::path& path);
// `source_name` prefixes errors and, if it has a directory, anchors relative paths.
Result<std::vector<WorkerConfig>> parse_workers(std::string_view text, std::string_view source_name);

}  // namespace rch
