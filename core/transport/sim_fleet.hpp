// The simulated fleet behind RCH_MOCK_SSH=1 and `rch fleet stress`: in-memory
// workers that keep the real remote layout (versions/, current, bin link,
// manifest) and agent behaviour (health, drain), with configurable latency,
// bandwidth and faults. Operations return what they did and how long the
// real thing would have taken; the Lua binding waits that long on the loop.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/transport/sim_exec.hpp"
#include "core/util/result.hpp"
#include "core/util/unique_fd.hpp"

namespace rch {

enum class SimFaultKind { none, connect, fail_at_step, disconnect_transfer, slow_health, unhealthy };

struct SimFault {
  SimFaultKind kind = SimFaultKind::none;
  std::string step;  // fail_at_step: preflight | drain | transfer | install | toolchain | verify
};

struct SimConfig {
  int latency_ms = 5;             // per remote command
  double bandwidth_mb_s = 200.0;  // per worker upload
  double fault_rate = 0.0;        // share of workers given a random fault
  std::uint64_t seed = 1;
  std::filesystem::path state_file;        // empty: nothing persists across runs
  std::map<std::string, SimFault> faults;  // named faults win over the rate
  std::filesystem::path exec_file;         // RCH_SIM_EXEC: scripted answers to commands
  std::vector<SimExecRule> exec_rules;

  // RCH_SIM_LATENCY_MS, RCH_SIM_BANDWIDTH_MBPS, RCH_SIM_FAULT_RATE, RCH_SIM_SEED,
  // RCH_SIM_FAULTS ("w1:connect,w2:fail_at=verify,w3:disconnect_transfer,w4:slow_health,w5:unhealthy"),
  // RCH_SIM_EXEC (a file of [[exec]] rules, sim_exec.hpp).
  static Result<SimConfig> from_env(std::filesystem::path default_state_file);
};

// The outcome of one simulated remote operation.
struct SimOp {
  bool ok = true;
  std::string error;
  int delay_ms = 0;   // how long the operation takes on a real worker
  std::string value;  // JSON text for facts / probes; empty otherwise
};

class SimFleet {
 public:
  static Result<std::unique_ptr<SimFleet>> open(SimConfig config);
  ~SimFleet();

  SimOp connect(const std::string& worker);
  SimOp preflight(const std::string& worker, const std::string& target_version);
  SimOp transfer(const std::string& worker, const std::string& version, const std::string& sha256, std::uint64_t size);
  SimOp install(const std::string& worker, const std::string& version, const std::string& sha256,
                const std::string& deployment_id);
  SimOp rollback(const std::string& worker, const std::string& previous_link);
  SimOp drain(const std::string& worker, int timeout_s);
  SimOp undrain(const std::string& worker);
  SimOp toolchain(const std::string& worker, const std::string& toolchain);
  SimOp probe_agent(const std::string& worker, bool with_health);
  SimOp inspect(const std::string& worker);  // what fleet verify checks
  // Where the worker's current link points ("" without one), at once: ground truth for rch fleet stress.
  std::string current_link(const std::string& worker);
  // A remote command, answered by the first matching RCH_SIM_EXEC rule:
  // {code, out, err, timed_out} after its delay (cut at the timeout, as a real one).
  SimOp exec(const std::string& worker, const std::vector<std::string>& argv, int timeout_s);

  // Persistence, if a state file is configured: the file holds a snapshot
  // of the fleet and <state file>.journal one line per change since, each
  // the whole state of one worker (the last line of a worker wins). record()
  // appends the worker's line: a change costs one write(2), whatever the
  // fleet's size. open() replays the journal and folds it into a new
  // snapshot once it has more lines than the fleet has workers, so loading
  // stays linear in the work done.
  Result<void> record(const std::string& worker);
  // Writes the whole fleet to the state file (atomic) and empties the journal.
  Result<void> save();
  const SimConfig& config() const { return config_; }
  SimFault fault_of(const std::string& worker) const;

 private:
  explicit SimFleet(SimConfig config);
  struct Worker;
  Worker& worker(const std::string& id);
  SimOp fail_if(const std::string& id, const std::string& step, int delay_ms);
  SimOp run_agent(const std::string& id, const std::string& command, int delay_ms);

  std::filesystem::path journal_path() const;
  Result<void> load();

  SimConfig config_;
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  UniqueFd journal_;  // open for append once the first change is recorded
};

}  // namespace rch
