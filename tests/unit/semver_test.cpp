// Unit tests of core/version/semver: parsing, semver.org precedence, and
// extracting the version from --version output.
#include "core/version/semver.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace {

rch::Version v(const char* text) {
  auto r = rch::Version::parse(text);
  INFO(text);
  REQUIRE(r.ok());
  return *r;
}

}  // namespace

TEST_CASE("Version::parse reads all parts", "[semver]") {
  const auto x = v("v1.22.333-beta.1.x-y+git.abc-1.007");
  CHECK(x.major == 1);
  CHECK(x.minor == 22);
  CHECK(x.patch == 333);
  CHECK(x.prerelease == std::vector<std::string>{"beta", "1", "x-y"});
  CHECK(x.build == "git.abc-1.007");
  CHECK(x.to_string() == "1.22.333-beta.1.x-y+git.abc-1.007");
  CHECK(v("V0.0.0").to_string() == "0.0.0");
  CHECK(v("18446744073709551615.0.0").major == 18446744073709551615ull);
  CHECK(v("1.0.0-0").prerelease == std::vector<std::string>{"0"});
  // Alphanumeric identifiers and build metadata may start with 0.
  CHECK(v("1.0.0-0a.01a").prerelease == std::vector<std::string>{"0a", "01a"});
  CHECK(v("1.0.0+001").build == "001");
}

TEST_CASE("Version::parse rejects bad input with a reason", "[semver]") {
  const char* bad[] = {"",           "v",        "1",        "1.2",         "1.2.3.4",
                       "01.2.3",     "1.02.3",   "1.2.03",   "1.2.3-",      "1.2.3+",
                       "1.2.3-a..b", "1.2.3-01", "1.2.3-a.", "1.2.3+a..b",  "1.2.3-a_b",
                       "1.2.3+a b",  " 1.2.3",   "1.2.3 ",   "1.2.3\n",     "a.b.c",
                       "-1.2.3",     "1.-2.3",   "vv1.2.3",  "1.2.3-beta!", "18446744073709551616.0.0",
                       "1..3",       "1.2.x"};
  for (const char* text : bad) {
    INFO("input: '" << text << "'");
    auto r = rch::Version::parse(text);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("invalid version '"));
  }
  CHECK_THAT(rch::Version::parse("01.2.3").error(), Catch::Contains("leading zero"));
  CHECK_THAT(rch::Version::parse("1.2.3-01").error(), Catch::Contains("leading zero"));
  CHECK_THAT(rch::Version::parse("1.2.3-a..b").error(), Catch::Contains("empty pre-release identifier"));
  CHECK_THAT(rch::Version::parse("18446744073709551616.0.0").error(), Catch::Contains("too large"));
}

TEST_CASE("Version precedence (spec cases)", "[semver]") {
  CHECK(v("0.2.0") > v("0.1.0"));
  CHECK(v("0.2.0-beta.1") < v("0.2.0"));
  CHECK(v("0.10.0") > v("0.9.0"));
  CHECK(v("1.0.0") > v("0.99.99"));
  CHECK(v("0.1.10") > v("0.1.9"));
}

TEST_CASE("Version precedence follows semver.org §11", "[semver]") {
  const std::vector<const char*> chain{
      "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
      "1.0.0-rc.1",  "1.0.0",         "1.0.1-0",          "1.0.1",      "2.0.0"};
  for (std::size_t i = 0; i < chain.size(); ++i) {
    for (std::size_t j = 0; j < chain.size(); ++j) {
      INFO(chain[i] << " vs " << chain[j]);
      const auto c = v(chain[i]) <=> v(chain[j]);
      if (i < j) CHECK(c == std::strong_ordering::less);
      if (i == j) CHECK(c == std::strong_ordering::equal);
      if (i > j) CHECK(c == std::strong_ordering::greater);
    }
  }
}

TEST_CASE("Version equality ignores build metadata and the v prefix", "[semver]") {
  CHECK(v("1.2.3+a") == v("1.2.3+b"));
  CHECK(v("v1.2.3") == v("1.2.3"));
  CHECK_FALSE(v("1.2.3-a") == v("1.2.3"));
  CHECK(v("1.2.3-a") != v("1.2.3-b"));
  CHECK((v("1.2.3+a") <=> v("1.2.3")) == std::strong_ordering::equal);
  // Numeric identifiers compare as numbers, even beyond 64 bits.
  CHECK(v("1.0.0-99999999999999999999") > v("1.0.0-9999999999999999999"));
  CHECK(v("1.0.0-2") < v("1.0.0-10"));
  CHECK(v("1.0.0-10") < v("1.0.0-1a"));  // numeric < alphanumeric
  CHECK(v("1.0.0-B") < v("1.0.0-a"));    // ASCII order
}

TEST_CASE("extract_version finds the version in --version output", "[semver]") {
  auto a = rch::extract_version("rch-wkr 0.2.0 (abc123)");
  REQUIRE(a.ok());
  CHECK(a->to_string() == "0.2.0");
  auto b = rch::extract_version("rch 1.2.3-beta.1+git.abc\n");
  REQUIRE(b.ok());
  CHECK(b->to_string() == "1.2.3-beta.1+git.abc");
  CHECK(rch::extract_version("0.1.0").value().to_string() == "0.1.0");
  CHECK(rch::extract_version("rchd version v3.4.5.").value().to_string() == "3.4.5");
  CHECK(rch::extract_version("tool 1.2 then 4.5.6").value().to_string() == "4.5.6");
  CHECK(rch::extract_version("built with gcc-12, rch 0.3.1").value().to_string() == "0.3.1");

  for (const char* text : {"", "rch-wkr", "rch-wkr 0.2 (abc)", "rch 01.2.3", "rch-v1.2.3"}) {
    INFO(text);
    auto r = rch::extract_version(text);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("no version found in '"));
  }
}
