// `ssh -G` output parsing; getaddrinfo for the address column of status.
#include "core/ssh/resolve.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <sstream>

#include "core/exec/process.hpp"
#include "core/util/user.hpp"

namespace rch {
namespace {

// ssh -G leaves "~/" in some paths; OpenSSH takes the home from the password database.
std::string expand_home(const std::string& path) {
  if (!path.starts_with("~/")) return path;
  const auto home = passwd_home_dir();
  return (home.empty() ? std::string("~") : home.string()) + path.substr(1);
}

}  // namespace

Result<SshResolved> resolve_ssh_target(const SshTarget& target) {
  std::vector<std::string> argv{"ssh", "-G"};
  if (target.ssh_config_file == "none") {
    argv.insert(argv.end(), {"-F", "none"});
  } else if (!target.ssh_config_file.empty()) {
    argv.insert(argv.end(), {"-F", target.ssh_config_file});
  }
  if (target.port != 22) argv.insert(argv.end(), {"-p", std::to_string(target.port)});
  if (!target.user.empty()) argv.insert(argv.end(), {"-l", target.user});
  argv.insert(argv.end(), {"--", target.host});
  // One ssh -G per distinct target and process (it costs a fork and exec,
  // ~10-20 ms): status resolves a worker, then connects to it.
  static std::mutex mutex;
  static std::map<std::vector<std::string>, SshResolved> cache;
  {
    const std::lock_guard lock(mutex);
    if (const auto it = cache.find(argv); it != cache.end()) return it->second;
  }
  auto run = run_process(argv, 10);
  if (!run) return make_error("cannot run ssh -G for " + target.host + ": " + run.error());
  if (run->exit_code != 0) {
    std::string err = run->err;
    while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) err.pop_back();
    return make_error("ssh -G " + target.host +
                      " failed: " + (err.empty() ? "exit " + std::to_string(run->exit_code) : err));
  }
  SshResolved r;
  std::istringstream in(run->out);
  for (std::string line; std::getline(in, line);) {
    const auto space = line.find(' ');
    if (space == std::string::npos) continue;
    const std::string key = line.substr(0, space), value = line.substr(space + 1);
    if (key == "hostname") {
      r.hostname = value;
    } else if (key == "port") {
      r.port = static_cast<unsigned>(std::stoul(value));
    } else if (key == "user") {
      r.user = value;
    } else if (key == "proxyjump" && value != "none") {
      std::istringstream hops(value);
      for (std::string hop; std::getline(hops, hop, ',');) r.jump.push_back(hop);
    } else if (key == "certificatefile") {
      r.certificate_files.push_back(expand_home(value));
    } else if (key == "identityfile") {
      r.identity_files.push_back(expand_home(value));
    } else if (key == "hashknownhosts") {
      r.hash_known_hosts = value == "yes";
    }
  }
  if (r.hostname.empty()) return make_error("ssh -G " + target.host + " printed no hostname");
  const std::lock_guard lock(mutex);
  cache.emplace(std::move(argv), r);
  return r;
}

std::string resolve_address(const std::string& hostname) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(hostname.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) return {};
  char buf[INET6_ADDRSTRLEN] = {};
  const void* addr = found->ai_family == AF_INET6
                         ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr)
                         : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr);
  std::string out = inet_ntop(found->ai_family, addr, buf, sizeof buf) != nullptr ? buf : "";
  freeaddrinfo(found);
  return out;
}

}  // namespace rch
