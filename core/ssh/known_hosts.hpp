// known_hosts as OpenSSH reads it (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"):
// @cert-authority and @revoked markers, hashed names, wildcard and negated
// patterns; the host key decision built on it (plain keys, host certificates
// signed by a trusted CA, revocations); and adding an entry the way several
// processes can at once. libssh 0.10 ignores the markers, so rch reads the
// file itself.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ssh/host_key_policy.hpp"
#include "core/ssh/ssh_key.hpp"
#include "core/util/result.hpp"

namespace rch {

struct KnownHostEntry {
  enum class Marker { none, cert_authority, revoked };
  Marker marker = Marker::none;
  std::string hosts;  // the host field as written (patterns, or one |1|salt|hash)
  SshPublicKey key;
  std::string where;  // "file:line", for messages
};

// The entries of `path`; a missing file has none. Lines that do not parse are
// skipped, as OpenSSH does.
Result<std::vector<KnownHostEntry>> load_known_hosts(const std::filesystem::path& path);

// The name known_hosts files a host under: "host", or "[host]:port" off port 22.
std::string known_hosts_name(std::string_view host, unsigned port);

// Whether a host field matches `name`: comma-separated patterns with * and ?
// (case-insensitive), a matching !pattern excludes, or a hashed |1|salt|hmac.
bool known_host_matches(std::string_view hosts, std::string_view name);

// "|1|salt|HMAC-SHA1(salt, name)" in base64, as HashKnownHosts writes it.
std::string hash_known_host(std::string_view name, std::string_view salt);

// Appends "NAME TYPE BASE64" (NAME hashed with a fresh salt when `hashed`) as
// one O_APPEND write under an exclusive flock: no rename, so a known_hosts that
// is a symlink stays one, and concurrent writers lose no entry.
Result<void> append_known_host(const std::filesystem::path& path, std::string_view name, const SshPublicKey& key,
                               bool hashed);

struct HostTrustRequest {
  std::string host;  // the name connected to, after the ssh config's HostName
  unsigned port = 22;
  SshPublicKey key;                              // the key the handshake proved the host holds
  std::filesystem::path known_hosts;             // the user's file: read, and appended to under accept-new
  std::string known_hosts_label;                 // how messages name it (e.g. ~/.ssh/known_hosts)
  std::vector<std::filesystem::path> read_only;  // e.g. /etc/ssh/ssh_known_hosts
  HostKeyPolicy policy = HostKeyPolicy::strict;
  bool hash_new_entries = false;  // HashKnownHosts
  // The certificates the host presents (blobs), fetched only when an
  // @cert-authority entry matches the host and no plain entry accepts it.
  std::function<Result<std::vector<std::string>>()> fetch_certificates;
  std::uint64_t now = 0;  // seconds since the epoch
};

// Accepts or refuses the host's key. Value: how it was accepted (for the
// debug log). Errors name the host, the key's fingerprint, the rule that
// failed and the fix.
Result<std::string> check_host_trust(const HostTrustRequest& request);

}  // namespace rch
