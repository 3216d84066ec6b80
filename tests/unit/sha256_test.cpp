// Unit tests of core/crypto/sha256: known vectors, streaming, files, checksum
// verification and checksums.txt parsing.
#include "core/crypto/sha256.hpp"
#include "tests/unit/temp_dir.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace fs = std::filesystem;

namespace {

using rch::test::TempDir;

void write_bytes(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

constexpr const char* kTestContent = "6ae8a75555209fd6c44157c0aed8016e763ff435a19cf186f76863140143ff72";
constexpr const char* kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kMillionA = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

}  // namespace

TEST_CASE("sha256_hex matches known vectors", "[sha256]") {
  CHECK(rch::sha256_hex("test content") == kTestContent);
  CHECK(rch::sha256_hex("") == kEmpty);
  CHECK(rch::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(rch::sha256_hex(std::string(1'000'000, 'a')) == kMillionA);
  CHECK(rch::sha256_hex("test content\n") != kTestContent);
}

TEST_CASE("Sha256 streaming equals one-shot and resets after final_hex", "[sha256]") {
  rch::Sha256 h;
  h.update("test ", 5);
  h.update(std::string_view("con"));
  h.update("tent", 4);
  CHECK(h.final_hex() == kTestContent);
  // After final_hex the object starts over.
  CHECK(h.final_hex() == kEmpty);
  h.update(std::string_view("test content"));
  rch::Sha256 moved = std::move(h);
  CHECK(moved.final_hex() == kTestContent);
}

TEST_CASE("sha256_file_hex hashes multi-MiB files like the buffer", "[sha256]") {
  TempDir dir;
  SECTION("million 'a' vector") {
    write_bytes(dir.path / "a", std::string(1'000'000, 'a'));
    auto r = rch::sha256_file_hex(dir.path / "a");
    REQUIRE(r.ok());
    CHECK(*r == kMillionA);
  }
  SECTION("3.5 MiB of random bytes, crossing chunk boundaries") {
    std::mt19937_64 rng(42);
    std::string data((7u << 20) / 2, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    write_bytes(dir.path / "big", data);
    auto r = rch::sha256_file_hex(dir.path / "big");
    REQUIRE(r.ok());
    CHECK(*r == rch::sha256_hex(data));
    data[data.size() - 1] ^= 1;
    CHECK(*r != rch::sha256_hex(data));
  }
  SECTION("empty file") {
    write_bytes(dir.path / "empty", "");
    auto r = rch::sha256_file_hex(dir.path / "empty");
    REQUIRE(r.ok());
    CHECK(*r == kEmpty);
  }
  SECTION("missing file names the file and the errno text") {
    auto r = rch::sha256_file_hex(dir.path / "nope.tar.gz");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains((dir.path / "nope.tar.gz").string()));
    CHECK_THAT(r.error(), Catch::Contains("No such file or directory"));
  }
  SECTION("a directory is an error, not a hash") {
    auto r = rch::sha256_file_hex(dir.path);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains("Is a directory"));
  }
}

TEST_CASE("verify_sha256", "[sha256]") {
  CHECK(rch::verify_sha256("test content", kTestContent).ok());
  SECTION("case-insensitive") {
    std::string upper = kTestContent;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(rch::verify_sha256("test content", upper).ok());
  }
  SECTION("mismatch says expected and actual") {
    const std::string wrong(64, '0');
    auto r = rch::verify_sha256("test content", wrong);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains("expected " + wrong));
    CHECK_THAT(r.error(), Catch::Contains(std::string("got ") + kTestContent));
  }
  SECTION("malformed expected digests are refused") {
    CHECK_FALSE(rch::verify_sha256("test content", "").ok());
    CHECK_FALSE(rch::verify_sha256("test content", std::string(kTestContent).substr(0, 63)).ok());
    CHECK_FALSE(rch::verify_sha256("test content", std::string(kTestContent) + "0").ok());
    CHECK_FALSE(rch::verify_sha256("test content", " " + std::string(kTestContent).substr(1)).ok());
    std::string with_g = kTestContent;
    with_g[10] = 'g';
    auto r = rch::verify_sha256("test content", with_g);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains("64 hex digits"));
  }
}

TEST_CASE("parse_checksums", "[sha256]") {
  SECTION("spec example") {
    const auto parsed = rch::parse_checksums("abc123  rch-v0.1.0-linux.tar.gz\ndef456  rch-v0.1.0-darwin.tar.gz");
    REQUIRE(parsed->size() == 2);
    CHECK(parsed->at("rch-v0.1.0-linux.tar.gz") == "abc123");
    CHECK(parsed->at("rch-v0.1.0-darwin.tar.gz") == "def456");
  }
  SECTION("binary marker, blank lines, CRLF, uppercase digests, names with spaces") {
    const auto parsed =
        rch::parse_checksums("\nABC123 *bin.tar.gz\r\n\n   \ndef456  name with spaces.txt\n0aF  ./rel/path\n");
    CHECK(parsed->size() == 3);
    CHECK(parsed->at("bin.tar.gz") == "abc123");
    CHECK(parsed->at("name with spaces.txt") == "def456");
    CHECK(parsed->at("./rel/path") == "0af");
  }
  SECTION("sha256sum escaped names") {
    const auto parsed = rch::parse_checksums("\\abc  new\\nline\\\\x\n");
    REQUIRE(parsed->size() == 1);
    CHECK(parsed->at("new\nline\\x") == "abc");
  }
  SECTION("malformed lines are skipped") {
    const auto parsed = rch::parse_checksums(
        "abc123 single-space.tar.gz\nnothex  x.tar.gz\nabc123  \nabc123\n  leading.tar.gz\nabc123  "
        "good.tar.gz");
    CHECK(parsed->size() == 1);
    CHECK(parsed->count("good.tar.gz") == 1);
  }
  SECTION("a name listed twice is refused, naming both lines") {
    const auto parsed = rch::parse_checksums("00ff  other\nbad1  rch.tar.gz\ngood  other2\nabcd  rch.tar.gz\n");
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error(), Catch::Contains("rch.tar.gz twice (lines 2 and 4)"));
    CHECK_FALSE(rch::parse_checksums("abcd  x\nabcd *x\n").ok());
  }
}
