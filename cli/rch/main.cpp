// rch: command-line parsing (CLI11) for every command and flag of the fleet
// and update specs, and dispatch to the Lua commands in lua/rch/commands/.
// Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/rch/docgen.hpp"
#include "core/config/paths.hpp"
#include "core/log/log.hpp"
#include "core/util/text.hpp"
#include "core/version/build_info.hpp"
#include "lua/bind/engine.hpp"

namespace {

using nlohmann::json;

// "rch: message" on stderr; messages quote config files, workers and
// scripts, so they pass the output sanitiser.
void print_error(const std::string& message) {
  std::cerr << "rch: " << rch::sanitize_for_terminal(message, {.multiline = true}) << "\n";
}

struct Globals {
  int verbosity = 0;
  bool quiet = false;
  std::string log_file;
  std::vector<std::string> script_dirs;
};

// Options whose default lives in config.toml are std::optional: unset, the
// Lua command takes [defaults]/[canary] (flag > config.toml > built-in default).
struct DeployOptions {
  std::vector<std::string> worker, exclude;
  std::optional<int> parallel;
  std::optional<int> canary;
  std::optional<int> canary_wait;
  bool no_toolchain = false, force = false, verify = false, drain_first = false;
  int drain_timeout = 120;
  bool dry_run = false, resume = false, json = false;
  std::string version, audit_log, strategy, source;  // source "": [deploy] source
  int rolling_batch = 0, rolling_wait = 0, max_fail_percent = 0;
  int wait_lock = 0;
};

struct RollbackOptions {
  std::vector<std::string> worker, exclude;
  std::string to_version;
  std::optional<int> parallel;
  bool verify = false, dry_run = false, json = false;
  int wait_lock = 0;
};

struct StatusOptions {
  std::vector<std::string> worker, exclude;
  bool json = false, watch = false;
};

struct WorkerListOptions {
  std::vector<std::string> worker, exclude;
  int timeout = 120;
  bool json = false;
};

struct ExecOptions {
  std::vector<std::string> worker, exclude, argv;
  std::optional<int> parallel, timeout;
  std::string shell;
  bool json = false, no_fold = false, as_build = false;
};

struct CopyOptions {
  std::vector<std::string> worker, exclude;
  std::optional<int> parallel;
  std::string mode = "0644", src, dest;
  bool json = false, force = false;
};

struct HistoryOptions {
  int limit = 10;
  std::string worker, show_id;
  bool json = false;
};

struct StressOptions {
  int workers = 1000, parallel = 64;
  std::string strategy = "all";
  double fault_rate = 0.0;
  int latency_ms = 5;
  unsigned long seed = 1;
  bool json = false;
};

struct UpdateOptions {
  bool check = false, fleet = false, rollback = false, verify = false, yes = false;
  bool dry_run = false, no_restart = false, force = false, json = false, user_install = false;
  std::string version, channel = "stable", source;
  int drain_timeout = 60;
};

rch::lua::EngineOptions engine_options(const Globals& g) {
  rch::lua::EngineOptions options;
  for (const auto& dir : g.script_dirs) options.script_dirs.emplace_back(dir);
  options.config_dir = rch::Paths::from_env().config_dir;
  options.verbosity = g.verbosity;
  return options;
}

// Runs `what` as the engine's main task; a number it returns is the exit code,
// a Lua error (file:line, traceback with -v) exits 1.
int run_in_engine(const Globals& g, const std::function<rch::Result<json>(rch::lua::Engine&)>& what) {
  try {
    rch::lua::Engine engine(engine_options(g));
    auto result = what(engine);
    if (!result.ok()) {
      print_error(result.error());
      return 1;
    }
    if (result.value().is_number_integer()) return result.value().get<int>();
    return 0;
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
}

// Runs lua/rch/commands/<name>.lua's run(args); args.quiet is the global --quiet.
int run_lua_command(const Globals& g, const std::string& name, json args) {
  args["quiet"] = g.quiet;
  return run_in_engine(g, [&](rch::lua::Engine& e) { return e.run_module("rch.commands." + name, args); });
}

// rch run FILE [ARGS…]
int run_script(const Globals& g, const std::string& file, const std::vector<std::string>& args) {
  return run_in_engine(g, [&](rch::lua::Engine& e) { return e.run_file(file, args); });
}

json worker_list(const std::vector<std::string>& workers) {
  json out = json::array();
  for (const auto& w : workers) out.push_back(w);
  return out;
}

constexpr const char* k_patterns =
    "comma list of ids, globs (build-*), ranges (w[1-32], gpu-[01-08,12]), @TAG and @failed "
    "(the workers that did not end Completed or Skipped in the newest deployment)";

// --worker and --exclude, the same patterns for every command (lua/rch/targets.lua).
// Not split here: commas inside [] belong to a range.
void add_targets(CLI::App* cmd, std::vector<std::string>& worker, std::vector<std::string>& exclude,
                 const std::string& verb) {
  cmd->add_option("--worker", worker, verb + " these workers: " + k_patterns);
  cmd->add_option("--exclude", exclude, "Leave out these workers (same patterns as --worker)");
}

// Commands that change workers take each one's controller lease first.
void add_wait_lock(CLI::App* cmd, int& seconds) {
  cmd->add_option("--wait-lock", seconds,
                  "Wait up to S seconds for another controller's lease on a worker (default 0: fail that worker)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

int scripts_list(const Globals& g, bool as_json) {
  const auto options = engine_options(g);
  rch::lua::Resolver resolver(options.script_dirs, options.config_dir);
  const auto listing = resolver.list();
  if (as_json) {
    json out = json::array();
    for (const auto& item : listing) {
      out.push_back({{"name", item.name}, {"origin", item.origin}, {"overrides_builtin", item.overrides_builtin}});
    }
    std::cout << json{{"scripts", out}}.dump(2) << "\n";
    return 0;
  }
  std::size_t width = 4;
  for (const auto& item : listing) width = std::max(width, item.name.size());
  for (const auto& item : listing) {
    std::printf("%-*s  %s%s\n", static_cast<int>(width), item.name.c_str(), item.origin.c_str(),
                item.overrides_builtin ? "  (overrides builtin)" : "");
  }
  return 0;
}

int scripts_show(const Globals& g, const std::string& name) {
  const auto options = engine_options(g);
  rch::lua::Resolver resolver(options.script_dirs, options.config_dir);
  auto found = resolver.find(name);
  if (!found.ok()) {
    print_error(found.error());
    return 1;
  }
  if (!found.value()) {
    print_error("no script '" + name + "' (looked in " + resolver.describe_search_path() + "); see `rch scripts list`");
    return 2;
  }
  std::fwrite(found.value()->source.data(), 1, found.value()->source.size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rch: deploy, update and manage the rch worker agent across a fleet of SSH hosts"};
  app.set_version_flag("--version", std::string("rch ") + rch::build_version());
  app.require_subcommand(1);
  Globals g;
  app.add_flag("-v,--verbose", g.verbosity, "More logging (-v debug, -vv trace); also RCH_LOG_LEVEL");
  app.add_flag("-q,--quiet", g.quiet,
               "Commands that touch workers (fleet deploy, rollback, status, verify, drain, undrain, update "
               "--fleet) print only their closing summary: the workers of each outcome and the retry command; no "
               "per-worker progress. Errors still go to stderr; no effect with --json");
  app.add_option("--log-file", g.log_file, "Append log lines to FILE instead of stderr");
  app.add_option("--script-dir", g.script_dirs,
                 "Directory searched first for strategies/, hooks/ and rch/ scripts (repeatable)")
      ->check(CLI::ExistingDirectory);
  // Global flags before or after the subcommand (rch fleet deploy -v --script-dir D):
  // subcommands created from here on pass options they do not know up to here.
  app.fallthrough();

  // ---- rch fleet
  auto* fleet = app.add_subcommand("fleet", "Deploy and manage the worker agent on the fleet");
  fleet->require_subcommand(1);

  DeployOptions deploy;
  auto* deploy_cmd = fleet->add_subcommand("deploy", "Deploy or update workers");
  add_targets(deploy_cmd, deploy.worker, deploy.exclude, "Deploy to");
  deploy_cmd->add_option("--parallel", deploy.parallel, "Max parallel deployments (default: [defaults] parallel, 4)")
      ->check(CLI::PositiveNumber);
  deploy_cmd
      ->add_option("--canary", deploy.canary,
                   "Deploy to PERCENT% of workers first, wait for --canary-wait (--strategy canary alone: "
                   "[canary] percent, 10)")
      ->check(CLI::Range(1, 100));
  deploy_cmd
      ->add_option("--canary-wait", deploy.canary_wait,
                   "Seconds to wait after the canary before the full rollout (default: [canary] wait, 60)")
      ->check(CLI::NonNegativeNumber);
  deploy_cmd->add_option(
      "--strategy", deploy.strategy,
      "Strategy script (strategies/NAME.lua); default from --canary/--rolling-batch, else all_at_once");
  deploy_cmd->add_option("--rolling-batch", deploy.rolling_batch, "Rolling strategy: workers per batch")
      ->check(CLI::PositiveNumber);
  deploy_cmd->add_option("--rolling-wait", deploy.rolling_wait, "Rolling strategy: seconds between batches")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  deploy_cmd
      ->add_option("--max-fail-percent", deploy.max_fail_percent,
                   "Rolling strategy: stop when more than P% of workers failed")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  deploy_cmd->add_flag("--no-toolchain", deploy.no_toolchain, "Skip rustup/toolchain sync");
  deploy_cmd->add_flag("--force", deploy.force, "Reinstall even if version matches");
  deploy_cmd->add_flag("--verify", deploy.verify, "Run post-install verification");
  deploy_cmd->add_flag("--drain-first", deploy.drain_first, "Drain active builds before deploy");
  deploy_cmd->add_option("--drain-timeout", deploy.drain_timeout, "Max seconds to wait for drain")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_wait_lock(deploy_cmd, deploy.wait_lock);
  deploy_cmd->add_flag("--dry-run", deploy.dry_run, "Show the detailed plan without executing");
  deploy_cmd->add_flag("--resume", deploy.resume, "Resume the newest unfinished deployment");
  deploy_cmd->add_option("--version", deploy.version, "Deploy specific version (default: this rch's version)");
  deploy_cmd
      ->add_option("--source", deploy.source,
                   "push: upload rch-wkr from here; pull: each worker fetches the signed release's tarball "
                   "(default: [deploy] source, push)")
      ->check(CLI::IsMember({"push", "pull"}));
  deploy_cmd->add_flag("--json", deploy.json, "JSON output for automation");
  deploy_cmd->add_option("--audit-log", deploy.audit_log, "Also write the deployment audit log to FILE");

  RollbackOptions rollback;
  auto* rollback_cmd = fleet->add_subcommand("rollback", "Rollback to previous version");
  add_targets(rollback_cmd, rollback.worker, rollback.exclude, "Roll back");
  rollback_cmd->add_option("--to-version", rollback.to_version,
                           "Rollback to specific version (default: each worker's previous)");
  rollback_cmd->add_option("--parallel", rollback.parallel, "Max parallel rollbacks (default: [defaults] parallel, 4)")
      ->check(CLI::PositiveNumber);
  rollback_cmd->add_flag("--verify", rollback.verify, "Verify after rollback");
  add_wait_lock(rollback_cmd, rollback.wait_lock);
  rollback_cmd->add_flag("--dry-run", rollback.dry_run, "Show what would be switched, change nothing");
  rollback_cmd->add_flag("--json", rollback.json, "JSON output");

  StatusOptions status;
  auto* status_cmd = fleet->add_subcommand("status", "Show fleet deployment status");
  add_targets(status_cmd, status.worker, status.exclude, "Show");
  status_cmd->add_flag("--json", status.json, "JSON output");
  status_cmd->add_flag("--watch", status.watch, "Continuous update (1s interval)");

  WorkerListOptions verify;
  auto* verify_cmd = fleet->add_subcommand("verify", "Verify worker installations");
  add_targets(verify_cmd, verify.worker, verify.exclude, "Verify");
  verify_cmd->add_flag("--json", verify.json, "JSON output");

  WorkerListOptions drain;
  auto* drain_cmd = fleet->add_subcommand("drain", "Drain workers before maintenance");
  add_targets(drain_cmd, drain.worker, drain.exclude, "Drain");
  drain_cmd->add_option("--timeout", drain.timeout, "Max seconds to wait for active builds")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  drain_cmd->add_flag("--json", drain.json, "JSON output");

  WorkerListOptions undrain;
  auto* undrain_cmd = fleet->add_subcommand("undrain", "Accept builds again after a drain");
  add_targets(undrain_cmd, undrain.worker, undrain.exclude, "Undrain");
  undrain_cmd->add_flag("--json", undrain.json, "JSON output");

  ExecOptions exec;
  auto* exec_cmd = fleet->add_subcommand("exec", "Run a command on workers, output folded like clush -b");
  add_targets(exec_cmd, exec.worker, exec.exclude, "Run on");
  exec_cmd->add_option("--parallel", exec.parallel, "Max workers at once (default: [defaults] parallel, 4)")
      ->check(CLI::PositiveNumber);
  exec_cmd->add_option("--timeout", exec.timeout, "Seconds the command may run (default: [defaults] command_timeout)")
      ->check(CLI::PositiveNumber);
  exec_cmd->add_option("--shell", exec.shell, "Run this line through the login shell instead of -- CMD ARGS");
  exec_cmd->add_flag("--json", exec.json, "JSON output");
  exec_cmd->add_flag("--no-fold", exec.no_fold, "Print 'id: line' as lines arrive instead of folded blocks");
  exec_cmd->add_flag("--as-build", exec.as_build, "Run through rch-wkr exec (a build lease; refused while draining)");
  exec_cmd->add_option("CMD", exec.argv, "-- CMD ARGS…: the command, each argument quoted as given");
  exec_cmd->positionals_at_end();  // from CMD on, `-r` and the like belong to the command

  CopyOptions copy;
  auto* copy_cmd = fleet->add_subcommand("copy", "Copy a file to workers (verified, temp name then rename)");
  add_targets(copy_cmd, copy.worker, copy.exclude, "Copy to");
  copy_cmd->add_option("--parallel", copy.parallel, "Max workers at once (default: [defaults] parallel, 4)")
      ->check(CLI::PositiveNumber);
  copy_cmd->add_option("--mode", copy.mode, "Mode of the file on the workers (octal)")->capture_default_str();
  copy_cmd->add_flag("--json", copy.json, "JSON output");
  copy_cmd->add_flag("--force", copy.force, "Copy even when DEST already has the same bytes and mode");
  copy_cmd->add_option("SRC", copy.src, "Local file")->required();
  copy_cmd->add_option("DEST", copy.dest, "Path on the workers: absolute, ~/…, or relative to the login home")
      ->required();

  HistoryOptions history;
  auto* history_cmd = fleet->add_subcommand("history", "Show deployment history");
  history_cmd->add_option("--limit", history.limit, "Number of deployments to show")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  history_cmd->add_option("--worker", history.worker,
                          std::string("Deployments that touched these workers: ") + k_patterns);
  history_cmd->add_flag("--json", history.json, "JSON output");
  auto* history_show = history_cmd->add_subcommand("show", "Show one deployment's per-worker steps and errors");
  history_show->add_option("ID", history.show_id, "Deployment id")->required();
  history_show->add_flag("--json", history.json, "JSON output");

  std::string audit_file;
  auto* audit_cmd = fleet->add_subcommand("audit", "Audit log tools");
  audit_cmd->require_subcommand(1);
  auto* audit_verify = audit_cmd->add_subcommand("verify", "Check the hash chain of an audit log");
  audit_verify->add_option("FILE", audit_file, "Audit log (JSONL)")->required();

  StressOptions stress;
  auto* stress_cmd =
      fleet->add_subcommand("stress", "Run the real executor against simulated workers and check invariants");
  stress_cmd->add_option("--workers", stress.workers, "Number of simulated workers")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  stress_cmd->add_option("--parallel", stress.parallel, "Max parallel deployments")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  stress_cmd->add_option("--strategy", stress.strategy, "all | canary | rolling")
      ->capture_default_str()
      ->check(CLI::IsMember({"all", "canary", "rolling"}));
  stress_cmd->add_option("--fault-rate", stress.fault_rate, "Fraction of workers given a fault")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  stress_cmd->add_option("--latency-ms", stress.latency_ms, "Simulated latency per remote command")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  stress_cmd->add_option("--seed", stress.seed, "Random seed")->capture_default_str();
  stress_cmd->add_flag("--json", stress.json, "JSON output");

  // ---- rch update
  UpdateOptions update;
  auto* update_cmd = app.add_subcommand("update", "Update rch, rchd and rch-wkr from signed releases");
  update_cmd->add_flag("--check", update.check, "Check for updates without installing");
  update_cmd->add_option("--version", update.version, "Install specific version (e.g., v0.2.0)");
  update_cmd->add_option("--channel", update.channel, "Release channel: stable, beta, nightly")
      ->capture_default_str()
      ->check(CLI::IsMember({"stable", "beta", "nightly"}));
  update_cmd->add_flag("--fleet", update.fleet, "Also deploy the new rch-wkr to all configured workers");
  update_cmd
      ->add_option("--source", update.source,
                   "With --fleet: push rch-wkr from here, or let each worker pull the release (default: [deploy] "
                   "source, push)")
      ->check(CLI::IsMember({"push", "pull"}));
  update_cmd->add_flag("--rollback", update.rollback, "Restore previous version from backup");
  update_cmd->add_flag("--verify", update.verify, "Verify current installation integrity");
  update_cmd->add_flag("--yes", update.yes, "Skip confirmation prompts");
  update_cmd->add_flag("--dry-run", update.dry_run, "Show planned actions without executing");
  update_cmd->add_flag("--no-restart", update.no_restart, "Update binaries but don't restart daemon");
  update_cmd->add_option("--drain-timeout", update.drain_timeout, "Wait up to N seconds for builds to complete")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  update_cmd->add_flag("--force", update.force, "Skip version check, reinstall current version");
  update_cmd->add_flag("--json", update.json, "Output results as JSON");
  update_cmd->add_flag("--user-install", update.user_install,
                       "When this rch belongs to a package: install a copy for this user under $RCH_HOME anyway "
                       "(put $RCH_HOME/bin first on PATH to use it)");

  // ---- rch scripts
  // ---- rch config
  auto* config_cmd = app.add_subcommand("config", "Check config.toml, workers.toml and the Lua overrides");
  config_cmd->require_subcommand(1);
  bool config_json = false;
  auto* config_check_cmd = config_cmd->add_subcommand(
      "check", "Parse both files, load every Lua override, print the effective settings and where each came from");
  config_check_cmd->add_flag("--json", config_json, "JSON output");

  auto* scripts_cmd = app.add_subcommand("scripts", "Show which Lua scripts (strategies, hooks, engine) resolve where");
  scripts_cmd->require_subcommand(1);
  bool scripts_json = false;
  auto* scripts_list_cmd = scripts_cmd->add_subcommand("list", "List every script name and the file it resolves to");
  scripts_list_cmd->add_flag("--json", scripts_json, "JSON output");
  std::string show_name;
  auto* scripts_show_cmd =
      scripts_cmd->add_subcommand("show", "Print the script NAME resolves to (copy it to override)");
  scripts_show_cmd->add_option("NAME", show_name, "e.g. strategies/canary or rch/init.lua")->required();

  // ---- rch run
  std::string run_file;
  std::vector<std::string> run_args;
  auto* run_cmd = app.add_subcommand("run", "Run a maintenance script with the rch Lua API");
  run_cmd->fallthrough(false);    // what follows the script belongs to the script,
  run_cmd->positionals_at_end();  // options (`uname -r`) included: no `--` needed
  run_cmd->add_option("FILE", run_file, "Lua script")->required();
  run_cmd->add_option("ARGS", run_args, "Arguments passed to the script as ...");

  // Last: the man pages and completions walk every command defined above.
  rch::cli::DocCommands docs(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (auto code = docs.run()) return *code;
  if (auto r = rch::log::init(g.verbosity, g.log_file); !r) {
    print_error(r.error());
    return 2;
  }

  if (*fleet) {
    if (*deploy_cmd) {
      json args = {{"worker", worker_list(deploy.worker)},
                   {"exclude", worker_list(deploy.exclude)},
                   {"no_toolchain", deploy.no_toolchain},
                   {"force", deploy.force},
                   {"verify", deploy.verify},
                   {"drain_first", deploy.drain_first},
                   {"drain_timeout", deploy.drain_timeout},
                   {"dry_run", deploy.dry_run},
                   {"resume", deploy.resume},
                   {"json", deploy.json},
                   {"version", deploy.version},
                   {"source", deploy.source},
                   {"audit_log", deploy.audit_log},
                   {"strategy", deploy.strategy},
                   {"rolling_batch", deploy.rolling_batch},
                   {"rolling_wait", deploy.rolling_wait},
                   {"max_fail_percent", deploy.max_fail_percent},
                   {"wait_lock", deploy.wait_lock}};
      if (deploy.canary) args["canary"] = *deploy.canary;
      if (deploy.parallel) args["parallel"] = *deploy.parallel;
      if (deploy.canary_wait) args["canary_wait"] = *deploy.canary_wait;
      return run_lua_command(g, "deploy", args);
    }
    if (*rollback_cmd) {
      json args = {{"worker", worker_list(rollback.worker)},
                   {"exclude", worker_list(rollback.exclude)},
                   {"to_version", rollback.to_version},
                   {"verify", rollback.verify},
                   {"dry_run", rollback.dry_run},
                   {"json", rollback.json},
                   {"wait_lock", rollback.wait_lock}};
      if (rollback.parallel) args["parallel"] = *rollback.parallel;
      return run_lua_command(g, "rollback", args);
    }
    if (*status_cmd) {
      return run_lua_command(g, "status",
                             {{"worker", worker_list(status.worker)},
                              {"exclude", worker_list(status.exclude)},
                              {"json", status.json},
                              {"watch", status.watch}});
    }
    if (*verify_cmd)
      return run_lua_command(
          g, "verify",
          {{"worker", worker_list(verify.worker)}, {"exclude", worker_list(verify.exclude)}, {"json", verify.json}});
    if (*drain_cmd) {
      return run_lua_command(g, "drain",
                             {{"worker", worker_list(drain.worker)},
                              {"exclude", worker_list(drain.exclude)},
                              {"timeout", drain.timeout},
                              {"json", drain.json},
                              {"undrain", false}});
    }
    if (*undrain_cmd) {
      return run_lua_command(g, "drain",
                             {{"worker", worker_list(undrain.worker)},
                              {"exclude", worker_list(undrain.exclude)},
                              {"timeout", 0},
                              {"json", undrain.json},
                              {"undrain", true}});
    }
    if (*exec_cmd) {
      json args = {{"worker", worker_list(exec.worker)},
                   {"exclude", worker_list(exec.exclude)},
                   {"argv", worker_list(exec.argv)},
                   {"shell", exec.shell},
                   {"json", exec.json},
                   {"no_fold", exec.no_fold},
                   {"as_build", exec.as_build}};
      if (exec.parallel) args["parallel"] = *exec.parallel;
      if (exec.timeout) args["timeout"] = *exec.timeout;
      return run_lua_command(g, "exec", args);
    }
    if (*copy_cmd) {
      json args = {{"worker", worker_list(copy.worker)},
                   {"exclude", worker_list(copy.exclude)},
                   {"src", copy.src},
                   {"dest", copy.dest},
                   {"mode", copy.mode},
                   {"json", copy.json},
                   {"force", copy.force}};
      if (copy.parallel) args["parallel"] = *copy.parallel;
      return run_lua_command(g, "copy", args);
    }
    if (*history_cmd) {
      return run_lua_command(
          g, "history",
          {{"limit", history.limit}, {"worker", history.worker}, {"json", history.json}, {"show", history.show_id}});
    }
    if (*audit_cmd) return run_lua_command(g, "audit_verify", {{"file", audit_file}});
    if (*stress_cmd) {
      return run_lua_command(g, "stress",
                             {{"workers", stress.workers},
                              {"parallel", stress.parallel},
                              {"strategy", stress.strategy},
                              {"fault_rate", stress.fault_rate},
                              {"latency_ms", stress.latency_ms},
                              {"seed", stress.seed},
                              {"json", stress.json}});
    }
  }
  if (*update_cmd) {
    // Without --channel, config.toml's update.channel decides (empty = not given).
    const bool channel_given = update_cmd->get_option("--channel")->count() > 0;
    return run_lua_command(g, "update",
                           {{"check", update.check},
                            {"version", update.version},
                            {"channel", channel_given ? update.channel : std::string()},
                            {"fleet", update.fleet},
                            {"source", update.source},
                            {"rollback", update.rollback},
                            {"verify", update.verify},
                            {"yes", update.yes},
                            {"dry_run", update.dry_run},
                            {"no_restart", update.no_restart},
                            {"drain_timeout", update.drain_timeout},
                            {"force", update.force},
                            {"json", update.json},
                            {"user_install", update.user_install}});
  }
  if (*config_check_cmd) return run_lua_command(g, "config_check", {{"json", config_json}});
  if (*scripts_cmd) {
    if (*scripts_list_cmd) return scripts_list(g, scripts_json);
    if (*scripts_show_cmd) return scripts_show(g, show_name);
  }
  if (*run_cmd) return run_script(g, run_file, run_args);
  return 2;
}
