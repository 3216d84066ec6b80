// Quoting for POSIX sh: turns argv-style arguments into one command string for
// SSH exec, which the remote login shell parses again.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rch {

// One shell word that expands back to exactly `arg`. Arguments made only of
// [A-Za-z0-9_./:=@%+,-] stay unquoted (readable logs); anything else goes in
// single quotes, with ' written as '\''. The empty string becomes ''.
std::string shell_quote(std::string_view arg);

// The quoted arguments joined by single spaces, ready to run as a command.
// A first argument containing '=' is always quoted so sh runs it as the
// command instead of reading it as a variable assignment.
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace rch
