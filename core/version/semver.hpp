// Semantic versions (semver.org 2.0): parsing, precedence, and picking the
// version out of a program's --version output.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

struct Version {
  std::uint64_t major = 0;
  std::uint64_t minor = 0;
  std::uint64_t patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers after '-'
  std::string build;                    // after '+', kept verbatim, ignored by comparison

  // "1.2.3", "v1.2.3-rc.1+git.abc". Rejects leading zeros in numeric
  // identifiers, empty identifiers, and anything around the version.
  static Result<Version> parse(std::string_view text);
  // Without the leading 'v'.
  std::string to_string() const;

  // Precedence of semver §11; build metadata does not take part.
  friend std::strong_ordering operator<=>(const Version& a, const Version& b);
  friend bool operator==(const Version& a, const Version& b) { return (a <=> b) == 0; }
};

// The first whitespace/punctuation-delimited token of `text` that parses as a
// version: "rch-wkr 0.2.0 (abc123)" → 0.2.0.
Result<Version> extract_version(std::string_view text);

}  // namespace rch
