// rchd: the local daemon that `rch update` drains and restarts. The daemon
// itself (Unix socket, leases through core/agent) lands with the update issue.
#include <cstring>
#include <iostream>

#include "core/version/build_info.hpp"

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::cout << "rchd " << rch::build_version() << "\n";
    return 0;
  }
  if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::cout << "usage: rchd --version\n";
    return 0;
  }
  std::cerr << "rchd: the daemon is not available yet\n";
  return 2;
}
