// rch's settings, config.toml: fleet defaults, preflight requirements,
// toolchain, worker retention, canary, the update source, rch.http defaults
// and [policy], a free-form table for hooks. A missing file means defaults.
// Every error reads "<file>:<line>:<col>: <message>".
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/ssh/host_key_policy.hpp"
#include "core/util/result.hpp"

namespace rch {

enum class Requirement { required, optional, ignore };
enum class UpdateChannel { stable, beta, nightly };

// The spelling used in config.toml ("accept-new", "optional", "beta").
std::string_view to_string(HostKeyPolicy policy);
std::string_view to_string(Requirement requirement);
std::string_view to_string(UpdateChannel channel);

// Paths are absolute or relative to the working directory once loaded:
// relative ones in the file resolve against the file's directory, "~/" is expanded.
struct Config {
  struct Defaults {
    int parallel = 4;
    int probe_parallel = 64;  // read-only probes (status, verify, dry run, deploy's preflight) at once
    std::chrono::seconds connect_timeout{10};
    std::chrono::seconds command_timeout{300};
    HostKeyPolicy host_key_policy = HostKeyPolicy::strict;
    std::filesystem::path known_hosts;       // empty in the file: ~/.ssh/known_hosts
    std::filesystem::path ssh_config;        // empty: ~/.ssh/config if it exists (a path named here must exist)
    int max_output_bytes = 1 << 20;          // kept of each remote command's stdout and of its stderr
    int min_transfer_mbps = 1;               // uploads may take artifact size / this rate (+ command_timeout)
    std::chrono::seconds stall_timeout{30};  // an upload with no progress this long fails as stalled
    int connect_retries = 2;                 // more attempts after a transient connect failure (refused, reset, …)
    double connect_retry_delay = 1;          // seconds before the first retry; doubles for each next one
  } defaults;

  struct Preflight {
    int min_disk_mb = 500;
    Requirement rsync = Requirement::optional;
    Requirement zstd = Requirement::optional;
    Requirement rustup = Requirement::optional;
  } preflight;

  struct Toolchain {
    std::string rust = "stable";  // rustup toolchain name
    bool update = false;          // also `rustup update` it when already installed (needs network)
  } toolchain;

  struct Deploy {
    int keep_versions = 3;  // versions/ kept on each worker (current and previous always)
    bool compress = true;   // "auto": zstd-compressed uploads to workers that have zstd; "never"
    bool delta = true;      // "auto": zstd patches against the agent a worker runs; "never"
    bool pull = false;      // source "pull": workers fetch the release tarball themselves; "push"
  } deploy;

  struct Canary {
    int percent = 10;  // 1..100
    std::chrono::seconds wait{60};
    std::chrono::seconds interval{0};  // canary_health every this often during the wait; 0: once, at its end
  } canary;

  struct Update {
    std::string url = "https://api.github.com/repos/rch-dev/rch/releases";
    UpdateChannel channel = UpdateChannel::stable;
    std::string minisign_pubkey;    // base64 key line; empty: signatures not required
    std::filesystem::path ca_file;  // empty: the system CA store
    int keep = 3;                   // installed versions kept as backups
    std::chrono::seconds connect_timeout{15};
    std::chrono::seconds transfer_timeout{600};
  } update;

  struct Audit {
    bool syslog = false;  // also send the audit chain's head to syslog
    std::filesystem::path syslog_socket = "/dev/log";
    double rotate_mb = 64;  // audit.jsonl and history.jsonl move to .1 at this size
    int keep_files = 10;    // rotated files kept (.1 … .N)
  } audit;

  struct State {
    int keep_deployments = 200;  // deployments/<id>/ directories kept
  } state;

  struct Http {                        // rch.http requests of hooks and scripts
    std::chrono::seconds timeout{30};  // default whole-request timeout
    double max_body_mb = 8;            // default cap on a response body
  } http;

  // [policy]: free-form settings for hooks (thresholds, URLs), as JSON text;
  // rch does not interpret them.
  std::string policy_json = "{}";

  // "section.key" -> "file:line" of every key the file set (the rest are defaults).
  std::map<std::string, std::string> origins;
};

// Defaults with ~/.ssh paths filled in, as when config.toml does not exist.
Config default_config();

Result<Config> load_config(const std::filesystem::path& path);

// One key of config.toml as the parser checks it (rch-config(5) is made from these).
struct ConfigKeyDoc {
  std::string section, key;
  std::string type;           // "integer, 1 to 10000", "one of \"strict\", \"accept-new\""
  std::string default_value;  // as written in config.toml
};
std::vector<ConfigKeyDoc> config_key_docs();
// `source_name` prefixes errors and, if it has a directory, anchors relative paths.
Result<Config> parse_config(std::string_view text, std::string_view source_name);

}  // namespace rch
