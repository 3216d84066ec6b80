// Scripted answers of the simulated fleet to remote commands (ctx.exec,
// fleet.exec under RCH_MOCK_SSH=1), so a site can rehearse its hooks and
// maintenance scripts without a fleet. A TOML file named by RCH_SIM_EXEC
// lists [[exec]] rules; the first whose worker and command globs match answers.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

struct SimExecRule {
  std::string worker = "*";   // glob over the worker id
  std::string command = "*";  // glob over the command's words joined by single spaces
  int exit_code = 0;
  std::string out, err;
  int delay_ms = 0;    // how long the command runs (on top of the latency)
  std::string origin;  // "file:line" of the rule
};

// [[exec]] worker, command, exit, stdout, stderr, delay_ms. Errors name file:line.
Result<std::vector<SimExecRule>> load_sim_exec(const std::filesystem::path& file);

// The first rule matching the worker and the command line, or null.
const SimExecRule* match_sim_exec(const std::vector<SimExecRule>& rules, const std::string& worker,
                                  const std::string& command_line);

}  // namespace rch
