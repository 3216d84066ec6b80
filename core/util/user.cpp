#include "core/util/user.hpp"

#include <pwd.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

namespace rch {

std::string user_name(uid_t uid) {
  char buf[4096];
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr && found->pw_name != nullptr) {
    return found->pw_name;
  }
  return "uid " + std::to_string(uid);
}

std::string current_user_name() { return user_name(::geteuid()); }

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "unknown";
  return buf;
}

std::filesystem::path home_dir() {
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return h;
  char buf[4096];
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(::geteuid(), &pw, buf, sizeof buf, &found) == 0 && found != nullptr && found->pw_dir != nullptr) {
    return found->pw_dir;
  }
  return "/";
}

std::filesystem::path passwd_home_dir() {
  char buf[4096];
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(::getuid(), &pw, buf, sizeof buf, &found) == 0 && found != nullptr && found->pw_dir != nullptr) {
    return found->pw_dir;
  }
  return {};
}

std::filesystem::path expand_user(std::string_view path) {
  if (path == "~") return home_dir();
  if (path.size() >= 2 && path[0] == '~' && path[1] == '/') return home_dir() / path.substr(2);
  return std::filesystem::path(path);
}

}  // namespace rch
