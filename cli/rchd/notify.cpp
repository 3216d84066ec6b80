// sd_notify by hand: rchd links only rch_base, and the protocol is one
// datagram (systemd's sd_notify(3) documents it as stable).
#include "cli/rchd/notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/util/unique_fd.hpp"

namespace rch::rchd {

Result<void> notify_systemd(std::string_view state) {
  const char* env = std::getenv("NOTIFY_SOCKET");
  if (env == nullptr || *env == '\0') return {};
  const std::string path = env;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || path.size() > sizeof addr.sun_path) {
    return make_error("NOTIFY_SOCKET=" + path + " is neither an absolute path nor an abstract socket (@name)");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  if (path[0] == '@') {
    addr.sun_path[0] = '\0';  // abstract: the name is the bytes after the NUL, not NUL-terminated
  } else if (path.size() < sizeof addr.sun_path) {
    length += 1;  // a path keeps its terminating NUL
  } else {
    return make_error("NOTIFY_SOCKET=" + path + " is too long");
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_error(std::string("cannot create a datagram socket: ") + std::strerror(errno));
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), length) <
      0) {
    return make_error("cannot notify systemd on " + path + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace rch::rchd
