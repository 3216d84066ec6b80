// SimFleet: the worker model, fault assignment (named, or by rate from the
// seed so a run is reproducible), and JSON persistence (a snapshot and a
// journal of changes) for multi-command scripts (the spec's E2E script
// deploys in one rch process and checks in the next).
#include "core/transport/sim_fleet.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/store/atomic_file.hpp"
#include "core/store/jsonl.hpp"

namespace rch {

struct SimFleet::Worker {
  std::string arch = "x86_64";
  std::uint64_t disk_free_mb = 100000;
  bool rsync = true, zstd = true, rustup = true;
  std::map<std::string, std::string> versions;  // version -> sha256 of its rch-wkr
  std::string current;                          // version `current` points at; "" = none
  bool bin_link = false;
  bool draining = false;
  int active_builds = 0;
  bool transfer_dropped = false;  // disconnect_transfer happens once
};

namespace {

Result<SimFault> parse_fault(const std::string& text) {
  SimFault f;
  if (text == "connect")
    f.kind = SimFaultKind::connect;
  else if (text == "disconnect_transfer")
    f.kind = SimFaultKind::disconnect_transfer;
  else if (text == "slow_health")
    f.kind = SimFaultKind::slow_health;
  else if (text == "unhealthy")
    f.kind = SimFaultKind::unhealthy;
  else if (text.rfind("fail_at=", 0) == 0) {
    f.kind = SimFaultKind::fail_at_step;
    f.step = text.substr(8);
    static const char* steps[] = {"preflight", "drain", "transfer", "install", "toolchain", "verify"};
    bool known = false;
    for (const char* s : steps) known = known || f.step == s;
    if (!known) return make_error("RCH_SIM_FAULTS: unknown step '" + f.step + "' in '" + text + "'");
  } else {
    return make_error("RCH_SIM_FAULTS: unknown fault '" + text +
                      "' (connect, fail_at=STEP, disconnect_transfer, slow_health, unhealthy)");
  }
  return f;
}

std::uint64_t mix(std::uint64_t seed, const std::string& id) {
  // splitmix64 over a string hash: the same seed gives the same faulty workers.
  std::uint64_t z = seed + std::hash<std::string>{}(id) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Result<SimConfig> SimConfig::from_env(std::filesystem::path default_state_file) {
  SimConfig c;
  c.state_file = std::move(default_state_file);
  auto number = [](const char* name, double fallback) -> Result<double> {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    char* end = nullptr;
    const double d = std::strtod(v, &end);
    if (*end != '\0' || d < 0) return make_error(std::string(name) + ": not a non-negative number: '" + v + "'");
    return d;
  };
  auto latency = number("RCH_SIM_LATENCY_MS", c.latency_ms);
  if (!latency) return Error{latency.error()};
  c.latency_ms = static_cast<int>(*latency);
  auto bandwidth = number("RCH_SIM_BANDWIDTH_MBPS", c.bandwidth_mb_s);
  if (!bandwidth) return Error{bandwidth.error()};
  c.bandwidth_mb_s = *bandwidth > 0 ? *bandwidth : 1e9;
  auto rate = number("RCH_SIM_FAULT_RATE", 0);
  if (!rate) return Error{rate.error()};
  if (*rate > 1) return make_error("RCH_SIM_FAULT_RATE must be between 0 and 1");
  c.fault_rate = *rate;
  auto seed = number("RCH_SIM_SEED", 1);
  if (!seed) return Error{seed.error()};
  c.seed = static_cast<std::uint64_t>(*seed);
  if (const char* faults = std::getenv("RCH_SIM_FAULTS")) {
    std::stringstream list(faults);
    std::string item;
    while (std::getline(list, item, ',')) {
      if (item.empty()) continue;
      const auto colon = item.find(':');
      if (colon == std::string::npos) return make_error("RCH_SIM_FAULTS: expected WORKER:FAULT, got '" + item + "'");
      auto fault = parse_fault(item.substr(colon + 1));
      if (!fault) return Error{fault.error()};
      c.faults[item.substr(0, colon)] = *fault;
    }
  }
  if (const char* exec = std::getenv("RCH_SIM_EXEC"); exec != nullptr && *exec != '\0') {
    auto rules = load_sim_exec(exec);
    if (!rules) return Error{rules.error()};
    c.exec_file = exec;
    c.exec_rules = std::move(*rules);
  }
  return c;
}

SimFleet::SimFleet(SimConfig config) : config_(std::move(config)) {}
SimFleet::~SimFleet() = default;

namespace {

// The persisted part of a worker (the rest is configuration or per process).
nlohmann::json saved_state(const std::string& current, bool bin_link, bool draining,
                           const std::map<std::string, std::string>& versions) {
  return {{"current", current}, {"bin_link", bin_link}, {"draining", draining}, {"versions", versions}};
}

}  // namespace

Result<std::unique_ptr<SimFleet>> SimFleet::open(SimConfig config) {
  std::unique_ptr<SimFleet> fleet(new SimFleet(std::move(config)));
  if (fleet->config_.state_file.empty()) return fleet;
  auto loaded = fleet->load();
  if (!loaded) return Error{loaded.error()};
  return fleet;
}

std::filesystem::path SimFleet::journal_path() const { return config_.state_file.string() + ".journal"; }

Result<void> SimFleet::load() {
  const auto& file = config_.state_file;
  auto apply = [this](const std::string& id, const nlohmann::json& w) {
    auto& state = worker(id);
    state.current = w.value("current", "");
    state.bin_link = w.value("bin_link", false);
    state.draining = w.value("draining", false);
    state.versions = w.value("versions", std::map<std::string, std::string>{});
  };
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    auto text = read_file(file);
    if (!text) return Error{text.error()};
    const auto doc = nlohmann::json::parse(*text, nullptr, false);
    if (doc.is_discarded() || !doc.contains("workers")) return make_error(file.string() + ": not a simulated fleet");
    for (const auto& [id, w] : doc["workers"].items()) apply(id, w);
  }
  const auto journal = journal_path();
  if (!std::filesystem::exists(journal, ec)) return {};
  auto lines = read_jsonl_lines(journal);  // a torn last line (a killed run) is dropped
  if (!lines) return Error{lines.error()};
  for (std::size_t i = 0; i < lines->size(); ++i) {
    const auto line = nlohmann::json::parse((*lines)[i], nullptr, false);
    if (line.is_discarded() || !line.is_object() || !line.contains("id") || !line["id"].is_string()) {
      return make_error(journal.string() + ":" + std::to_string(i + 1) + ": not a simulated fleet change");
    }
    apply(line["id"].get<std::string>(), line);
  }
  if (lines->size() > workers_.size()) return save();
  return {};
}

Result<void> SimFleet::record(const std::string& id) {
  if (config_.state_file.empty()) return {};
  if (!journal_.valid()) {
    std::error_code ec;
    std::filesystem::create_directories(config_.state_file.parent_path(), ec);
    journal_.reset(::open(journal_path().c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    if (!journal_.valid()) return make_error(journal_path().string() + ": " + std::strerror(errno));
  }
  const Worker& w = worker(id);
  nlohmann::json line = saved_state(w.current, w.bin_link, w.draining, w.versions);
  line["id"] = id;
  const std::string text = line.dump() + "\n";
  // One write(2) per line: lines of concurrent appenders do not interleave.
  if (::write(journal_.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return make_error(journal_path().string() + ": " + std::strerror(errno));
  }
  return {};
}

Result<void> SimFleet::save() {
  if (config_.state_file.empty()) return {};
  nlohmann::json doc = {{"workers", nlohmann::json::object()}};
  for (const auto& [id, w] : workers_)
    doc["workers"][id] = saved_state(w->current, w->bin_link, w->draining, w->versions);
  std::filesystem::create_directories(config_.state_file.parent_path());
  auto written = write_file_atomic(config_.state_file, doc.dump() + "\n");
  if (!written) return written;
  // The snapshot now holds every change: the journal starts over. A crash
  // before this leaves lines that replay to the same state.
  journal_.reset(::open(journal_path().c_str(), O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!journal_.valid()) return make_error(journal_path().string() + ": " + std::strerror(errno));
  return {};
}

SimFleet::Worker& SimFleet::worker(const std::string& id) {
  auto& slot = workers_[id];
  if (!slot) slot = std::make_unique<Worker>();
  return *slot;
}

SimFault SimFleet::fault_of(const std::string& id) const {
  if (auto it = config_.faults.find(id); it != config_.faults.end()) return it->second;
  if (config_.fault_rate <= 0) return {};
  const std::uint64_t r = mix(config_.seed, id);
  if (static_cast<double>(r % 1000000) / 1e6 >= config_.fault_rate) return {};
  static const char* steps[] = {"preflight", "transfer", "install", "verify"};
  switch ((r >> 20) % 4) {
    case 0:
      return {SimFaultKind::connect, ""};
    case 1:
      return {SimFaultKind::fail_at_step, steps[(r >> 24) % 4]};
    case 2:
      return {SimFaultKind::disconnect_transfer, ""};
    default:
      return {SimFaultKind::unhealthy, ""};
  }
}

// Whether an agent command (`rch-wkr COMMAND…`) can run: the real ones exec <root>/bin/rch-wkr from sh
// (remote_steps.lua), which fails with exit 127 where no agent is installed; so does the simulated one.
SimOp SimFleet::run_agent(const std::string& id, const std::string& command, int delay_ms) {
  const Worker& w = worker(id);
  if (w.bin_link && !w.current.empty()) return {true, "", delay_ms, ""};
  return {false, command + " failed (exit 127): rch-wkr is not installed on " + id, delay_ms, ""};
}

SimOp SimFleet::fail_if(const std::string& id, const std::string& step, int delay_ms) {
  const SimFault f = fault_of(id);
  if (f.kind == SimFaultKind::fail_at_step && f.step == step) {
    return {false, "simulated failure at " + step + " on " + id, delay_ms, ""};
  }
  return {true, "", delay_ms, ""};
}

SimOp SimFleet::connect(const std::string& id) {
  if (fault_of(id).kind == SimFaultKind::connect) {
    return {false, "cannot connect (sim@" + id + "): Connection refused (simulated)", config_.latency_ms, ""};
  }
  worker(id);
  return {true, "", config_.latency_ms * 3, ""};  // TCP + key exchange + auth round trips
}

SimOp SimFleet::preflight(const std::string& id, const std::string& target) {
  SimOp op = fail_if(id, "preflight", config_.latency_ms);
  if (!op.ok) return op;
  const Worker& w = worker(id);
  nlohmann::json facts = {{"arch", w.arch},
                          {"disk_free_mb", w.disk_free_mb},
                          {"writable", true},
                          {"rsync", w.rsync},
                          {"zstd", w.zstd},
                          {"rustup", w.rustup},
                          {"agent_present", w.bin_link},
                          {"draining", w.draining}};
  if (w.bin_link && !w.current.empty()) facts["current_version"] = w.current;
  // The link is reported whether or not an agent runs from it (rollback --to-version reads it).
  if (!w.current.empty()) facts["current_link"] = "versions/v" + w.current;
  std::string versions;
  for (const auto& [v, sha] : w.versions) versions += "v" + v + " ";
  facts["versions"] = versions;
  if (auto it = w.versions.find(target); it != w.versions.end()) facts["target_sha256"] = it->second;
  op.value = facts.dump();
  return op;
}

SimOp SimFleet::transfer(const std::string& id, const std::string& version, const std::string& sha256,
                         std::uint64_t size) {
  const int delay =
      config_.latency_ms + static_cast<int>(static_cast<double>(size) / 1e6 / config_.bandwidth_mb_s * 1000.0);
  Worker& w = worker(id);
  if (fault_of(id).kind == SimFaultKind::disconnect_transfer && !w.transfer_dropped) {
    w.transfer_dropped = true;
    return {false, "connection to sim@" + id + " lost mid-transfer (simulated)", delay / 2, ""};
  }
  SimOp op = fail_if(id, "transfer", delay);
  if (op.ok) w.versions[version] = sha256;  // lands only complete and verified, as the real rename does
  return op;
}

SimOp SimFleet::install(const std::string& id, const std::string& version, const std::string& sha256,
                        const std::string& deployment_id) {
  SimOp op = fail_if(id, "install", config_.latency_ms);
  if (!op.ok) return op;
  Worker& w = worker(id);
  auto it = w.versions.find(version);
  if (it == w.versions.end()) return {false, "missing versions/v" + version + "/rch-wkr", op.delay_ms, ""};
  if (it->second != sha256) return {false, "installed binary does not match", op.delay_ms, ""};
  w.current = version;
  w.bin_link = true;
  return op;
}

SimOp SimFleet::rollback(const std::string& id, const std::string& previous_link) {
  Worker& w = worker(id);
  if (previous_link.empty()) {
    w.current.clear();
    w.bin_link = false;
    return {true, "", config_.latency_ms, ""};
  }
  const std::string prefix = "versions/v";
  const std::string version = previous_link.rfind(prefix, 0) == 0 ? previous_link.substr(prefix.size()) : "";
  if (!w.versions.count(version))
    return {false, "previous version " + previous_link + " is gone", config_.latency_ms, ""};
  w.current = version;
  return {true, "", config_.latency_ms, ""};
}

SimOp SimFleet::drain(const std::string& id, int timeout_s) {
  SimOp op = fail_if(id, "drain", config_.latency_ms);
  if (op.ok) op = run_agent(id, "rch-wkr drain", op.delay_ms);
  if (!op.ok) return op;
  Worker& w = worker(id);
  w.draining = true;
  if (w.active_builds > 0) {
    return {false, "drain timed out: " + std::to_string(w.active_builds) + " active build(s)", timeout_s * 1000, ""};
  }
  return op;
}

SimOp SimFleet::undrain(const std::string& id) {
  SimOp op = run_agent(id, "rch-wkr undrain", config_.latency_ms);
  if (op.ok) worker(id).draining = false;
  return op;
}

SimOp SimFleet::toolchain(const std::string& id, const std::string&) {
  return fail_if(id, "toolchain", config_.latency_ms * 4);
}

SimOp SimFleet::probe_agent(const std::string& id, bool with_health) {
  const SimFault f = fault_of(id);
  int delay = config_.latency_ms * (with_health ? 2 : 1);
  if (f.kind == SimFaultKind::slow_health && with_health) delay += 2000;
  SimOp op = fail_if(id, "verify", delay);
  if (!op.ok) return op;
  op = run_agent(id, "rch-wkr --version", delay);
  if (!op.ok) return op;
  const Worker& w = worker(id);
  nlohmann::json out = {{"version", w.current}};
  if (with_health) {
    const bool ok = f.kind != SimFaultKind::unhealthy;
    out["health"] = {{"version", w.current},
                     {"draining", w.draining},
                     {"active_builds", w.active_builds},
                     {"disk_free_mb", w.disk_free_mb},
                     {"ok", ok}};
    if (!ok) out["health"]["error"] = "simulated unhealthy agent";
  }
  op.value = out.dump();
  return op;
}

std::string SimFleet::current_link(const std::string& id) {
  const Worker& w = worker(id);
  return w.current.empty() ? "" : "versions/v" + w.current;
}

SimOp SimFleet::inspect(const std::string& id) {
  const Worker& w = worker(id);
  nlohmann::json facts = {{"current_link", current_link(id)}, {"bin_link", w.bin_link ? "../current/rch-wkr" : ""}};
  if (auto it = w.versions.find(w.current); it != w.versions.end()) {
    facts["binary_sha256"] = it->second;
    facts["manifest"] = {{"version", w.current}, {"sha256", it->second}};
  }
  if (w.bin_link && !w.current.empty()) {
    const bool ok = fault_of(id).kind != SimFaultKind::unhealthy;
    facts["health"] = {{"version", w.current},
                       {"draining", w.draining},
                       {"active_builds", w.active_builds},
                       {"disk_free_mb", w.disk_free_mb},
                       {"ok", ok}};
  }
  return {true, "", config_.latency_ms, facts.dump()};
}

SimOp SimFleet::exec(const std::string& id, const std::vector<std::string>& argv, int timeout_s) {
  std::string line;
  for (const auto& word : argv) line += (line.empty() ? "" : " ") + word;
  const SimExecRule* rule = match_sim_exec(config_.exec_rules, id, line);
  if (rule == nullptr) {
    const std::string why = config_.exec_file.empty()
                                ? "set RCH_SIM_EXEC to a file of [[exec]] answers"
                                : "no [[exec]] rule of " + config_.exec_file.string() + " matches it";
    return {false, "simulated worker " + id + " cannot run '" + line + "': " + why, config_.latency_ms, ""};
  }
  const bool timed_out = timeout_s > 0 && rule->delay_ms > timeout_s * 1000;
  nlohmann::json result = {{"code", timed_out ? -1 : rule->exit_code},
                           {"out", timed_out ? "" : rule->out},
                           {"err", timed_out ? "" : rule->err},
                           {"timed_out", timed_out},
                           {"out_truncated", false},
                           {"err_truncated", false}};
  const int ran_ms = timed_out ? timeout_s * 1000 : rule->delay_ms;
  return {true, "", config_.latency_ms + ran_ms, result.dump()};
}

}  // namespace rch
