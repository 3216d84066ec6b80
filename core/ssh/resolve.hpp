// What OpenSSH's client makes of a worker's ssh target (`ssh -G`): the
// HostName, Port and User it connects to, its ProxyJump hops, and the options
// libssh 0.10 has no setting for (CertificateFile, HashKnownHosts).
#pragma once

#include <string>
#include <vector>

#include "core/ssh/session.hpp"
#include "core/util/result.hpp"

namespace rch {

struct SshResolved {
  std::string hostname;  // after HostName
  unsigned port = 22;
  std::string user;
  std::vector<std::string> jump;  // ProxyJump hops in order, as written; empty: direct
  std::vector<std::string> certificate_files;
  std::vector<std::string> identity_files;
  bool hash_known_hosts = false;
};

// Runs `ssh -G` with the target's ssh config ("none": -F none), port and user.
// An error when OpenSSH's client is missing or refuses the config.
Result<SshResolved> resolve_ssh_target(const SshTarget& target);

// The address `hostname` resolves to ("127.0.0.1"), or empty.
std::string resolve_address(const std::string& hostname);

}  // namespace rch
