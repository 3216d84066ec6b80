// Running a local program (argv, no shell) and collecting its output; used to
// ask an artifact for its --version before it is shipped anywhere.
#pragma once

#include <string>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

struct ProcessResult {
  int exit_code = -1;  // 128+N when killed by signal N; -1 on timeout
  std::string out, err;
  bool timed_out = false;
};

// Error only when the program cannot be started; a non-zero exit is a value.
Result<ProcessResult> run_process(const std::vector<std::string>& argv, int timeout_s);

}  // namespace rch
