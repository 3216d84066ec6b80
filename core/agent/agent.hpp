// The worker agent's state: job leases and the drain marker under one root
// (<root>/state/leases/, <root>/state/drain; both dirs 0700 whatever the
// umask). Shared by rch-wkr and rchd, so it is plain C++/POSIX (rch_base: no
// JSON library, no third-party code).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

struct AgentHealth {
  std::string version;
  bool draining = false;
  int active_builds = 0;
  uint64_t disk_free_mb = 0;
  bool ok = false;
  std::string root;
  std::string error;  // set when !ok
};

// The error message of run_job when the agent is draining; callers compare
// against it to tell "refused" (exit 75) from "could not start".
inline constexpr std::string_view k_job_refused_draining = "draining, not accepting new jobs";

class Agent {
 public:
  explicit Agent(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }

  // disk_free_mb is statvfs(root); ok is false when the root is unusable.
  AgentHealth health() const;

  // The marker is written atomically and records who drained and when; an
  // existing marker is kept so "since" is when draining began.
  Result<void> set_draining();
  Result<void> undrain();
  bool draining() const;

  // Leases whose holder is alive. A lease nobody holds any more (its job and
  // agent died) is deleted here: a crashed job frees its lease.
  int active_leases() const;

  // Sets the marker, then waits until no lease is held or timeout passes
  // (the marker stays on timeout). progress(n) is called about once a second
  // while n builds are still running.
  Result<void> drain(std::chrono::seconds timeout, const std::function<void(int)>& progress);

  // Runs argv (PATH searched) as a job under a lease and returns its exit
  // status, 128+signal if a signal killed it. Refused with
  // k_job_refused_draining while draining. SIGINT, SIGTERM and SIGHUP sent to
  // this process are forwarded to the job while it runs.
  Result<int> run_job(const std::vector<std::string>& argv);

 private:
  std::filesystem::path root_;
  std::filesystem::path leases_dir_;
  std::filesystem::path drain_path_;
};

// The agent root: root_flag if not empty, else $RCH_WKR_ROOT, else <X> when
// this executable is <X>/versions/v<ver>/rch-wkr (an installed agent), else
// $HOME/.rch.
std::filesystem::path discover_agent_root(const std::string& root_flag);

// The same rule on explicit inputs (exe_path already resolved by realpath).
std::filesystem::path resolve_agent_root(const std::string& root_flag, const char* env_root,
                                         const std::filesystem::path& exe_path, const std::filesystem::path& home);

// {"version":…,"draining":…,"active_builds":…,"disk_free_mb":…,"ok":…,"root":…}
// plus "error" when not ok; one line, no trailing newline.
std::string health_json(const AgentHealth& h);

}  // namespace rch
