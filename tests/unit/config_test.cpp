// Unit tests of core/config/config: defaults, a full file, path resolution,
// and each error with its exact "<file>:<line>:<col>: " prefix.
#include "core/config/config.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/config/paths.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string error_of(const std::string& text) {
  auto r = rch::parse_config(text, "config.toml");
  REQUIRE_FALSE(r.ok());
  return r.error();
}

}  // namespace

TEST_CASE("parse_config: empty file gives the documented defaults", "[config]") {
  auto r = rch::parse_config("", "config.toml");
  REQUIRE(r.ok());
  const rch::Config& c = *r;
  CHECK(c.defaults.parallel == 4);
  CHECK(c.defaults.connect_timeout == 10s);
  CHECK(c.defaults.command_timeout == 300s);
  CHECK(c.defaults.host_key_policy == rch::HostKeyPolicy::strict);
  CHECK(c.defaults.known_hosts == rch::home_dir() / ".ssh/known_hosts");
  CHECK(c.defaults.ssh_config.empty());  // libssh reads ~/.ssh/config when it exists
  CHECK(c.defaults.max_output_bytes == 1048576);
  CHECK(c.defaults.min_transfer_mbps == 1);
  CHECK(c.defaults.stall_timeout == 30s);
  CHECK(c.defaults.connect_retries == 2);
  CHECK(c.defaults.connect_retry_delay == 1.0);
  CHECK(c.preflight.min_disk_mb == 500);
  CHECK(c.preflight.rsync == rch::Requirement::optional);
  CHECK(c.preflight.zstd == rch::Requirement::optional);
  CHECK(c.preflight.rustup == rch::Requirement::optional);
  CHECK(c.toolchain.rust == "stable");
  CHECK_FALSE(c.toolchain.update);
  CHECK(c.deploy.keep_versions == 3);
  CHECK(c.canary.percent == 10);
  CHECK(c.canary.wait == 60s);
  CHECK(c.update.url == "https://api.github.com/repos/rch-dev/rch/releases");
  CHECK(c.update.channel == rch::UpdateChannel::stable);
  CHECK(c.update.minisign_pubkey.empty());
  CHECK(c.update.ca_file.empty());
  CHECK(c.update.keep == 3);
  CHECK(c.update.connect_timeout == 15s);
  CHECK(c.update.transfer_timeout == 600s);
}

TEST_CASE("parse_config reads every setting", "[config]") {
  auto r = rch::parse_config(R"(
[defaults]
parallel = 16
connect_timeout = 5
command_timeout = 900
host_key_policy = "accept-new"
known_hosts = "testbed/known_hosts"
ssh_config = "~/ssh/cfg"
max_output_bytes = 65536
min_transfer_mbps = 20
stall_timeout = 7
connect_retries = 0
connect_retry_delay = 0.25

[preflight]
min_disk_mb = 0
rsync = "required"
zstd = "ignore"
rustup = "required"

[toolchain]
rust = "1.75.0"
update = true

[deploy]
keep_versions = 5

[canary]
percent = 25
wait = 0

[update]
url = "http://127.0.0.1:8080/releases"
channel = "beta"
minisign_pubkey = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"
ca_file = "/etc/ssl/test-ca.pem"
keep = 5
connect_timeout = 3
transfer_timeout = 60
)",
                             "/etc/rch/config.toml");
  REQUIRE(r.ok());
  const rch::Config& c = *r;
  CHECK(c.defaults.parallel == 16);
  CHECK(c.defaults.connect_timeout == 5s);
  CHECK(c.defaults.command_timeout == 900s);
  CHECK(c.defaults.host_key_policy == rch::HostKeyPolicy::accept_new);
  CHECK(c.defaults.known_hosts == "/etc/rch/testbed/known_hosts");
  CHECK(c.defaults.ssh_config == rch::home_dir() / "ssh/cfg");
  CHECK(c.defaults.max_output_bytes == 65536);
  CHECK(c.defaults.min_transfer_mbps == 20);
  CHECK(c.defaults.stall_timeout == 7s);
  CHECK(c.defaults.connect_retries == 0);
  CHECK(c.defaults.connect_retry_delay == 0.25);
  CHECK(c.preflight.min_disk_mb == 0);
  CHECK(c.preflight.rsync == rch::Requirement::required);
  CHECK(c.preflight.zstd == rch::Requirement::ignore);
  CHECK(c.preflight.rustup == rch::Requirement::required);
  CHECK(c.toolchain.rust == "1.75.0");
  CHECK(c.toolchain.update);
  CHECK(c.deploy.keep_versions == 5);
  CHECK(c.canary.percent == 25);
  CHECK(c.canary.wait == 0s);
  CHECK(c.update.url == "http://127.0.0.1:8080/releases");
  CHECK(c.update.channel == rch::UpdateChannel::beta);
  CHECK(c.update.minisign_pubkey == "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3");
  CHECK(c.update.ca_file == "/etc/ssl/test-ca.pem");
  CHECK(c.update.keep == 5);
  CHECK(c.update.connect_timeout == 3s);
  CHECK(c.update.transfer_timeout == 60s);
}

TEST_CASE("config enum spellings round-trip", "[config]") {
  CHECK(rch::to_string(rch::HostKeyPolicy::accept_new) == "accept-new");
  CHECK(rch::to_string(rch::HostKeyPolicy::strict) == "strict");
  CHECK(rch::to_string(rch::Requirement::ignore) == "ignore");
  CHECK(rch::to_string(rch::UpdateChannel::nightly) == "nightly");
  CHECK(rch::parse_config("[update]\nchannel = \"nightly\"\n", "c").value().update.channel ==
        rch::UpdateChannel::nightly);
}

TEST_CASE("parse_config errors name file, line and column", "[config]") {
  CHECK(error_of("[defaults]\nparalel = 8\n") ==
        "config.toml:2:1: unknown key 'paralel' in [defaults] (did you mean 'parallel'?)");
  CHECK(error_of("[defualts]\nparallel = 8\n") == "config.toml:1:2: unknown key 'defualts' (did you mean 'defaults'?)");
  CHECK(error_of("verbose = true\n") == "config.toml:1:1: unknown key 'verbose'");
  CHECK(error_of("[update]\nchanel = \"beta\"\n") ==
        "config.toml:2:1: unknown key 'chanel' in [update] (did you mean 'channel'?)");
  CHECK(error_of("[defaults]\nparallel = 0\n") ==
        "config.toml:2:12: parallel in [defaults] must be an integer between 1 and 10000");
  CHECK(error_of("[defaults]\nmax_output_bytes = 100\n") ==
        "config.toml:2:20: max_output_bytes in [defaults] must be an integer between 1024 and 1073741824");
  CHECK(error_of("[defaults]\nmax_ouput_bytes = 4096\n") ==
        "config.toml:2:1: unknown key 'max_ouput_bytes' in [defaults] (did you mean 'max_output_bytes'?)");
  CHECK(error_of("[defaults]\nparallel = \"4\"\n") ==
        "config.toml:2:12: parallel in [defaults] must be an integer between 1 and 10000");
  CHECK(error_of("[defaults]\nconnect_timeout = 1.5\n") ==
        "config.toml:2:19: connect_timeout in [defaults] must be an integer number of seconds between 1 and "
        "86400");
  CHECK(error_of("[defaults]\nconnect_retries = -1\n") ==
        "config.toml:2:19: connect_retries in [defaults] must be an integer between 0 and 100");
  CHECK(error_of("[defaults]\nconnect_retry_delay = \"1s\"\n") ==
        "config.toml:2:23: connect_retry_delay in [defaults] must be a number of seconds between 0 and 3600");
  CHECK(error_of("[defaults]\nhost_key_policy = \"acept-new\"\n") ==
        "config.toml:2:19: host_key_policy in [defaults] must be one of \"strict\", \"accept-new\" "
        "(got \"acept-new\") (did you mean 'accept-new'?)");
  CHECK(error_of("[defaults]\nhost_key_policy = false\n") ==
        "config.toml:2:19: host_key_policy in [defaults] must be one of \"strict\", \"accept-new\"");
  CHECK(error_of("[preflight]\n\nrsync = \"requried\"\n") ==
        "config.toml:3:9: rsync in [preflight] must be one of \"required\", \"optional\", \"ignore\" "
        "(got \"requried\") (did you mean 'required'?)");
  CHECK(error_of("[canary]\npercent = 101\n") ==
        "config.toml:2:11: percent in [canary] must be an integer between 1 and 100");
  CHECK(error_of("[deploy]\nkeep_versions = 1\n") ==
        "config.toml:2:17: keep_versions in [deploy] must be an integer between 2 and 1000");
  CHECK(error_of("[toolchain]\nupdate = \"yes\"\n") == "config.toml:2:10: update in [toolchain] must be true or false");
  CHECK(error_of("[update]\nkeep = 0\n") == "config.toml:2:8: keep in [update] must be an integer between 1 and 1000");
  CHECK(error_of("[update]\nchannel = \"edge\"\n") ==
        "config.toml:2:11: channel in [update] must be one of \"stable\", \"beta\", \"nightly\" (got "
        "\"edge\")");
  CHECK(error_of("[update]\nurl = \"http://example.com/releases\"\n") ==
        "config.toml:2:7: url in [update] must be an https:// URL (http:// only to localhost)");
  CHECK(error_of("[update]\nurl = \"http://127.0.0.1.evil.com/x\"\n") ==
        "config.toml:2:7: url in [update] must be an https:// URL (http:// only to localhost)");
  CHECK(error_of("[update]\nurl = \"ftp://x\"\n") ==
        "config.toml:2:7: url in [update] must be an https:// URL (http:// only to localhost)");
  CHECK(error_of("[update]\nminisign_pubkey = \"untrusted comment: minisign public key 1234\"\n") ==
        "config.toml:2:19: minisign_pubkey in [update] must be the key line of a minisign public key "
        "(56 base64 characters starting with 'RW'), not its comment line");
  CHECK(error_of("[toolchain]\nrust = \"stable; rm -rf /\"\n") ==
        "config.toml:2:8: rust in [toolchain] must be a rustup toolchain name (letters, digits, '.', '_' and "
        "'-', "
        "not starting with '-')");
  CHECK(error_of("[defaults]\nknown_hosts = 3\n") ==
        "config.toml:2:15: known_hosts in [defaults] must be a string (a path)");
  CHECK(error_of("defaults = 3\n") == "config.toml:1:12: 'defaults' must be a table ([defaults])");
}

TEST_CASE("parse_config reports the first error in file order", "[config]") {
  // toml++ tables are sorted by key; "zstd" comes after "rsync" in the map but first in the file.
  CHECK(error_of("[preflight]\nzstd = \"x\"\nrsync = \"y\"\n") ==
        "config.toml:2:8: zstd in [preflight] must be one of \"required\", \"optional\", \"ignore\" (got "
        "\"x\")");
}

TEST_CASE("parse_config reports TOML syntax errors with their position", "[config]") {
  const std::string e = error_of("[defaults]\nparallel = 4\nparallel = 5\n");
  CHECK_THAT(e, Catch::StartsWith("config.toml:3:"));
  CHECK_THAT(e, Catch::Contains("parallel"));
  CHECK_THAT(error_of("[defaults\n"), Catch::StartsWith("config.toml:1:"));
  CHECK_THAT(error_of("[canary]\npercent = 1O\n"), Catch::StartsWith("config.toml:2:"));
}

TEST_CASE("load_config: missing file means defaults, errors carry the path", "[config]") {
  std::string tmpl = (fs::temp_directory_path() / "rch-config-test-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path dir = tmpl;

  auto missing = rch::load_config(dir / "config.toml");
  REQUIRE(missing.ok());
  CHECK(missing->defaults.parallel == 4);

  std::ofstream(dir / "config.toml") << "[update]\nca_file = \"certs/ca.pem\"\n[canary]\nwait = -1\n";
  auto bad = rch::load_config(dir / "config.toml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error() == (dir / "config.toml").string() +
                           ":4:8: wait in [canary] must be an integer number of seconds between 0 and 86400");

  std::ofstream(dir / "config.toml") << "[update]\nca_file = \"certs/ca.pem\"\n";
  auto good = rch::load_config(dir / "config.toml");
  REQUIRE(good.ok());
  CHECK(good->update.ca_file == dir / "certs/ca.pem");

  fs::create_directory(dir / "isdir.toml");
  auto unreadable = rch::load_config(dir / "isdir.toml");
  REQUIRE_FALSE(unreadable.ok());
  CHECK_THAT(unreadable.error(), Catch::Contains((dir / "isdir.toml").string()));
  fs::remove_all(dir);
}
