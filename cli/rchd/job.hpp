// Builds run by rchd. Each build gets a supervisor process (a fork of the
// daemon) that calls Agent::run_job, so leases and the drain rule are the
// agent's own code. The job run_job starts is rchd itself in its internal
// `__job` role (the shim): it reports "started" on a pipe, then execs the real
// command. run_job only forks after it took the lease and passed its drain
// check, so once the shim speaks the build holds a lease that a drain will
// wait for; if the daemon is told "refused" instead, nothing ran. That is what
// lets `build` answer exactly "ok" or "draining" without touching leases here.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/util/result.hpp"
#include "core/util/unique_fd.hpp"

namespace rch::rchd {

inline constexpr const char* k_job_shim_command = "__job";

// Supervisor exit codes besides the job's own status (128+N for signal N).
inline constexpr int k_supervisor_refused = 75;        // draining (EX_TEMPFAIL, as rch-wkr exec)
inline constexpr int k_supervisor_cannot_start = 125;  // the job never ran

struct StartedBuild {
  pid_t supervisor = -1;
  // Readable end of the notify pipe: one line, "S" once the job runs or
  // "E<message>" if it could not start; EOF alone means the supervisor died.
  UniqueFd notify;
};

// Forks the supervisor. The caller reaps it (SIGCHLD); its exit status is the
// job's. cwd, if not empty, is where the job runs.
Result<StartedBuild> start_build(const std::filesystem::path& agent_root, const std::vector<std::string>& argv,
                                 const std::string& cwd);

// `rchd __job --notify FD [--cwd DIR] -- CMD [ARGS...]`: the shim's main.
int job_shim_main(int argc, char** argv);

}  // namespace rch::rchd
