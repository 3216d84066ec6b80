// Unit tests of core/util/text: the terminal sanitiser, UTF-8 checks, base64.
#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "core/util/text.hpp"

using rch::sanitize_for_terminal;

TEST_CASE("sanitize_for_terminal escapes what a hostile worker prints", "[text]") {
  // Title, clear screen and an OSC 52 clipboard write.
  const std::string evil = "\x1b]0;x\x07\x1b[2J\x1b]52;c;Zm9v\x07";
  CHECK(sanitize_for_terminal(evil) == "\\x1b]0;x\\x07\\x1b[2J\\x1b]52;c;Zm9v\\x07");
  CHECK(sanitize_for_terminal("a\rb\x7f\x01") == "a\\x0db\\x7f\\x01");
  CHECK(sanitize_for_terminal(std::string("nul\0x", 5)) == "nul\\x00x");
}

TEST_CASE("sanitize_for_terminal keeps newline and tab only in multi-line output", "[text]") {
  CHECK(sanitize_for_terminal("a\nb\tc") == "a\\x0ab\\x09c");
  CHECK(sanitize_for_terminal("a\nb\tc", {.multiline = true}) == "a\nb\tc");
  CHECK(sanitize_for_terminal("a\r\n", {.multiline = true}) == "a\\x0d\n");
}

TEST_CASE("sanitize_for_terminal: C1 controls escaped, invalid UTF-8 as U+FFFD, UTF-8 kept", "[text]") {
  CHECK(sanitize_for_terminal("\xc2\x9b"
                              "2J") == "\\x9b2J");  // U+009B CSI
  CHECK(sanitize_for_terminal("\xe9"
                              "chec") ==
        "\xef\xbf\xbd"
        "chec");  // Latin-1 e-acute
  CHECK(sanitize_for_terminal("\xff\xfe") == "\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(sanitize_for_terminal("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // a surrogate
  CHECK(sanitize_for_terminal("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");                  // overlong '/'
  CHECK(sanitize_for_terminal("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 \xc2\xa0") ==
        "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 \xc2\xa0");
  CHECK(sanitize_for_terminal("cut \xe2\x9c") == "cut \xef\xbf\xbd\xef\xbf\xbd");
}

TEST_CASE("sanitize_for_terminal keeps SGR colours only when asked, and nothing else", "[text]") {
  const std::string painted = "\x1b[31m\xe2\x9c\x97 \x1b[0mw1 failed";
  CHECK(sanitize_for_terminal(painted, {.keep_sgr = true}) == painted);
  CHECK(sanitize_for_terminal(painted) == "\\x1b[31m\xe2\x9c\x97 \\x1b[0mw1 failed");
  // Not SGR: cursor movement, erase, OSC, a bare ESC at the end.
  CHECK(sanitize_for_terminal("\x1b[2J\x1b[3F\x1b]0;t\x07\x1b", {.keep_sgr = true}) ==
        "\\x1b[2J\\x1b[3F\\x1b]0;t\\x07\\x1b");
}

TEST_CASE("sanitize_for_terminal output never holds a control byte or invalid UTF-8", "[text]") {
  std::mt19937 rng(42);
  for (int round = 0; round < 2000; ++round) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 256);
    for (const bool multiline : {false, true}) {
      const std::string out = sanitize_for_terminal(s, {.multiline = multiline});
      REQUIRE(rch::valid_utf8(out));
      for (std::size_t i = 0; i < out.size(); ++i) {
        const auto c = static_cast<unsigned char>(out[i]);
        REQUIRE((c >= 0x20 || (multiline && (c == '\n' || c == '\t'))));
        REQUIRE(c != 0x7F);
        if (c == 0xC2 && i + 1 < out.size()) REQUIRE(static_cast<unsigned char>(out[i + 1]) >= 0xA0);
      }
    }
  }
}

TEST_CASE("valid_utf8 and replace_invalid_utf8", "[text]") {
  CHECK(rch::valid_utf8(""));
  CHECK(rch::valid_utf8("plain \xc3\xa9\xf4\x8f\xbf\xbf"));
  CHECK_FALSE(rch::valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(rch::valid_utf8("\xe0\x80\x80"));      // overlong
  CHECK_FALSE(rch::valid_utf8("\x80"));
  CHECK(rch::replace_invalid_utf8("a\xe9z") == "a\xef\xbf\xbdz");
  CHECK(rch::replace_invalid_utf8("ok \xc3\xa9") == "ok \xc3\xa9");
}

TEST_CASE("base64 round-trips every byte string and rejects non-canonical text", "[text]") {
  CHECK(rch::base64_encode("") == "");
  CHECK(rch::base64_encode("f") == "Zg==");
  CHECK(rch::base64_encode("fo") == "Zm8=");
  CHECK(rch::base64_encode("foo") == "Zm9v");
  CHECK(rch::base64_encode("\xe9"
                           "chec") == "6WNoZWM=");
  std::mt19937 rng(7);
  for (int round = 0; round < 1000; ++round) {
    std::string s(rng() % 40, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 256);
    const auto back = rch::base64_decode(rch::base64_encode(s));
    REQUIRE(back.has_value());
    REQUIRE(*back == s);
  }
  CHECK_FALSE(rch::base64_decode("Zg=").has_value());
  CHECK_FALSE(rch::base64_decode("Zh==").has_value());  // non-zero bits under the padding
  CHECK_FALSE(rch::base64_decode("Z=g=").has_value());
  CHECK_FALSE(rch::base64_decode("Zm9v!A==").has_value());
  CHECK_FALSE(rch::base64_decode("=Zm9").has_value());
}
