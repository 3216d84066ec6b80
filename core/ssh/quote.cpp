// POSIX sh quoting: single quotes disable every expansion, so only the quote
// character itself needs care.
#include "core/ssh/quote.hpp"

namespace rch {
namespace {

bool is_safe_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '_':
    case '.':
    case '/':
    case ':':
    case '=':
    case '@':
    case '%':
    case '+':
    case ',':
    case '-':
      return true;
    default:
      return false;
  }
}

std::string single_quote(std::string_view arg) {
  std::string out;
  out.reserve(arg.size() + 2);
  out += '\'';
  for (char c : arg) {
    // Close the quote, add an escaped quote, reopen: 'it'\''s'.
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

}  // namespace

std::string shell_quote(std::string_view arg) {
  if (arg.empty()) return "''";
  bool safe = true;
  for (char c : arg) safe = safe && is_safe_char(c);
  return safe ? std::string(arg) : single_quote(arg);
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (i == 0) {
      // An unquoted NAME=value in command position is an assignment, not
      // the command: quote any first word holding '='.
      out = arg.find('=') == std::string::npos ? shell_quote(arg) : single_quote(arg);
    } else {
      out += ' ';
      out += shell_quote(arg);
    }
  }
  return out;
}

}  // namespace rch
