// Who and where this process runs: the one place that asks the password
// database and $HOME (rch, rchd and rch-wkr alike).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace rch {

// The login name of `uid`, or "uid N" when the password database has none.
std::string user_name(uid_t uid);
// The login name of the effective user.
std::string current_user_name();
// This machine's host name, or "unknown".
std::string host_name();

// $HOME when set and not empty, else the effective user's home in the
// password database, else "/".
std::filesystem::path home_dir();

// "~" and "~/x" → home_dir() based; anything else (including "~user") unchanged.
std::filesystem::path expand_user(std::string_view path);

// The real user's home in the password database, ignoring $HOME: where
// OpenSSH and libssh look for ~/.ssh. Empty if there is none.
std::filesystem::path passwd_home_dir();

}  // namespace rch
