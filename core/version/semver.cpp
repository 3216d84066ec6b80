// Version parsing is strict (exactly semver 2.0) because a version string
// decides which binary gets installed; extract_version is the lenient part.
#include "core/version/semver.hpp"

#include <algorithm>

namespace rch {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ident_char(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'; }
bool all_digits(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_digit); }

Error bad(std::string_view text, const std::string& why) {
  return make_error("invalid version '" + std::string(text) + "': " + why);
}

// Splits on '.', keeping empty pieces so they can be rejected.
std::vector<std::string_view> split_dots(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto dot = s.find('.');
    out.push_back(s.substr(0, dot));
    if (dot == std::string_view::npos) return out;
    s.remove_prefix(dot + 1);
  }
}

// Numeric identifiers compare as numbers; without leading zeros that is
// length first, then digits, with no overflow limit.
std::strong_ordering compare_numeric(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return a.size() <=> b.size();
  return a.compare(b) <=> 0;
}

}  // namespace

Result<Version> Version::parse(std::string_view text) {
  std::string_view s = text;
  if (!s.empty() && (s.front() == 'v' || s.front() == 'V')) s.remove_prefix(1);
  if (s.empty()) return bad(text, "empty");

  Version v;
  const auto plus = s.find('+');
  if (plus != std::string_view::npos) {
    const std::string_view build = s.substr(plus + 1);
    for (std::string_view id : split_dots(build)) {
      if (id.empty()) return bad(text, "empty build identifier");
      if (!std::all_of(id.begin(), id.end(), is_ident_char)) {
        return bad(text, "build identifier '" + std::string(id) + "' may use only [0-9A-Za-z-]");
      }
    }
    v.build = std::string(build);
    s = s.substr(0, plus);
  }
  const auto dash = s.find('-');
  if (dash != std::string_view::npos) {
    for (std::string_view id : split_dots(s.substr(dash + 1))) {
      if (id.empty()) return bad(text, "empty pre-release identifier");
      if (!std::all_of(id.begin(), id.end(), is_ident_char)) {
        return bad(text, "pre-release identifier '" + std::string(id) + "' may use only [0-9A-Za-z-]");
      }
      if (all_digits(id) && id.size() > 1 && id[0] == '0') {
        return bad(text, "leading zero in '" + std::string(id) + "'");
      }
      v.prerelease.emplace_back(id);
    }
    s = s.substr(0, dash);
  }
  const auto core = split_dots(s);
  if (core.size() != 3) return bad(text, "need MAJOR.MINOR.PATCH");
  std::uint64_t* fields[] = {&v.major, &v.minor, &v.patch};
  for (std::size_t i = 0; i < 3; ++i) {
    const std::string_view n = core[i];
    if (!all_digits(n)) return bad(text, "'" + std::string(n) + "' is not a number");
    if (n.size() > 1 && n[0] == '0') return bad(text, "leading zero in '" + std::string(n) + "'");
    std::uint64_t value = 0;
    for (char c : n) {
      const auto digit = static_cast<std::uint64_t>(c - '0');
      if (value > (UINT64_MAX - digit) / 10) return bad(text, "'" + std::string(n) + "' is too large");
      value = value * 10 + digit;
    }
    *fields[i] = value;
  }
  return v;
}

std::string Version::to_string() const {
  std::string out = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  for (std::size_t i = 0; i < prerelease.size(); ++i) out += (i == 0 ? "-" : ".") + prerelease[i];
  if (!build.empty()) out += "+" + build;
  return out;
}

std::strong_ordering operator<=>(const Version& a, const Version& b) {
  if (auto c = a.major <=> b.major; c != 0) return c;
  if (auto c = a.minor <=> b.minor; c != 0) return c;
  if (auto c = a.patch <=> b.patch; c != 0) return c;
  // A pre-release ranks below the release itself.
  if (a.prerelease.empty() || b.prerelease.empty()) {
    return a.prerelease.empty() <=> b.prerelease.empty();
  }
  const std::size_t n = std::min(a.prerelease.size(), b.prerelease.size());
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& x = a.prerelease[i];
    const std::string& y = b.prerelease[i];
    const bool xn = all_digits(x);
    const bool yn = all_digits(y);
    std::strong_ordering c = std::strong_ordering::equal;
    if (xn && yn) {
      c = compare_numeric(x, y);
    } else if (xn != yn) {
      c = xn ? std::strong_ordering::less : std::strong_ordering::greater;  // numeric < alphanumeric
    } else {
      c = x.compare(y) <=> 0;  // ASCII order
    }
    if (c != 0) return c;
  }
  return a.prerelease.size() <=> b.prerelease.size();
}

Result<Version> extract_version(std::string_view text) {
  const auto in_token = [](char c) { return is_ident_char(c) || c == '.' || c == '+'; };
  std::size_t i = 0;
  while (i < text.size()) {
    if (!in_token(text[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && in_token(text[j])) ++j;
    std::string_view token = text.substr(i, j - i);
    while (!token.empty() && token.back() == '.') token.remove_suffix(1);  // end of a sentence
    if (auto v = Version::parse(token); v.ok()) return v;
    i = j;
  }
  std::string shown(text.substr(0, 80));
  std::replace(shown.begin(), shown.end(), '\n', ' ');
  return make_error("no version found in '" + shown + (text.size() > 80 ? "…'" : "'"));
}

}  // namespace rch
