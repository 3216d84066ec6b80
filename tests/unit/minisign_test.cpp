// Unit tests of core/crypto/minisign against keys and signatures made by the
// real minisign tool at test time: prehashed and legacy signatures, trusted
// comments, wrong data, wrong key, edited comment, malformed files, key parsing.
#include "core/crypto/minisign.hpp"
#include "tests/unit/temp_dir.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

using rch::test::TempDir;

void write_file(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A missing tool is a broken test machine, not a reason to skip.
void require_minisign() {
  if (std::system("minisign -v >/dev/null 2>&1") != 0) {
    FAIL("the minisign tool is not installed (needed to make test signatures): run scripts/bootstrap.sh");
  }
}

void run(const std::string& cmd) {
  INFO("command: " << cmd);
  REQUIRE(std::system((cmd + " </dev/null >/dev/null 2>&1").c_str()) == 0);
}

std::string quote(const std::string& s) {
  REQUIRE(s.find('\'') == std::string::npos);
  return "'" + s + "'";
}

struct KeyPair {
  fs::path pub;
  fs::path sec;
  std::string id;  // as minisign prints it in the .pub comment
};

KeyPair make_key(const fs::path& dir, const std::string& name) {
  require_minisign();
  KeyPair k{dir / (name + ".pub"), dir / (name + ".key"), ""};
  run("minisign -G -W -p " + quote(k.pub.string()) + " -s " + quote(k.sec.string()));
  const std::string text = read_file(k.pub);
  const std::string marker = "minisign public key ";
  const auto at = text.find(marker);
  REQUIRE(at != std::string::npos);
  const auto start = at + marker.size();
  k.id = text.substr(start, text.find('\n', start) - start);
  return k;
}

// Signs `file` and returns the .minisig text.
std::string sign(const KeyPair& k, const fs::path& file, const std::string& comment, bool legacy) {
  const fs::path sig = file.string() + (legacy ? ".legacy.minisig" : ".minisig");
  run("minisign -S " + std::string(legacy ? "-l " : "") + "-s " + quote(k.sec.string()) + " -m " +
      quote(file.string()) + " -x " + quote(sig.string()) + " -t " + quote(comment));
  return read_file(sig);
}

template <class T>
std::string error_of(const rch::Result<T>& r) {
  return r.ok() ? std::string() : r.error();
}

rch::MinisignPublicKey load_key(const KeyPair& k) {
  auto key = rch::parse_minisign_public_key(read_file(k.pub));
  INFO(error_of(key));
  REQUIRE(key.ok());
  return *key;
}

std::string base64_encode(const std::string& bytes) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += table[(v >> s) & 63];
  }
  REQUIRE(i == bytes.size());  // whole 3-byte groups only: no padding needed here
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

struct Fixture {
  TempDir dir;
  KeyPair keys = make_key(dir.path, "release");
  fs::path message = dir.path / "checksums.txt";
  std::string text = "6ae8a75555209fd6c44157c0aed8016e763ff435a19cf186f76863140143ff72  rch-v1.2.3.tar.gz\n";
  Fixture() { write_file(message, text); }
};

}  // namespace

TEST_CASE("prehashed (ED) signatures from minisign verify and return the trusted comment", "[minisign]") {
  Fixture f;
  const std::string sig = sign(f.keys, f.message, "rch 1.2.3", false);
  const auto key = load_key(f.keys);

  auto v = rch::minisign_verify(key, f.text, sig);
  INFO(error_of(v));
  REQUIRE(v.ok());
  CHECK(v->trusted_comment == "rch 1.2.3");
  CHECK(v->prehashed);

  auto vf = rch::minisign_verify_file(key, f.message, sig);
  INFO(error_of(vf));
  REQUIRE(vf.ok());
  CHECK(vf->trusted_comment == "rch 1.2.3");
  CHECK(vf->prehashed);
}

TEST_CASE("legacy (Ed, minisign -l) signatures verify", "[minisign]") {
  Fixture f;
  const std::string sig = sign(f.keys, f.message, "legacy: rch 1.2.3 ✓", true);
  const auto key = load_key(f.keys);

  auto v = rch::minisign_verify(key, f.text, sig);
  INFO(error_of(v));
  REQUIRE(v.ok());
  CHECK(v->trusted_comment == "legacy: rch 1.2.3 ✓");
  CHECK_FALSE(v->prehashed);

  auto vf = rch::minisign_verify_file(key, f.message, sig);
  INFO(error_of(vf));
  REQUIRE(vf.ok());
  CHECK_FALSE(vf->prehashed);
}

TEST_CASE("files larger than one read chunk verify in both modes", "[minisign]") {
  Fixture f;
  std::string big;
  for (int i = 0; big.size() < (3u << 20) + 12345; ++i) big += "line " + std::to_string(i) + " of the tarball\n";
  const fs::path file = f.dir.path / "big.tar.gz";
  write_file(file, big);
  const auto key = load_key(f.keys);
  for (bool legacy : {false, true}) {
    const std::string sig = sign(f.keys, file, "big", legacy);
    auto vf = rch::minisign_verify_file(key, file, sig);
    INFO((legacy ? "legacy: " : "prehashed: ") << error_of(vf));
    CHECK(vf.ok());
    auto v = rch::minisign_verify(key, big, sig);
    CHECK(v.ok());
    // One flipped byte in the middle of the file.
    std::string changed = big;
    changed[changed.size() / 2] ^= 1;
    CHECK_FALSE(rch::minisign_verify(key, changed, sig).ok());
  }
}

TEST_CASE("a modified message does not verify", "[minisign]") {
  Fixture f;
  const auto key = load_key(f.keys);
  for (bool legacy : {false, true}) {
    const std::string sig = sign(f.keys, f.message, "rch 1.2.3", legacy);
    auto v = rch::minisign_verify(key, f.text + "0000  evil.tar.gz\n", sig);
    REQUIRE_FALSE(v.ok());
    CHECK_THAT(v.error(), Catch::Contains("signature does not verify"));

    write_file(f.message, "7" + f.text.substr(1));
    auto vf = rch::minisign_verify_file(key, f.message, sig);
    REQUIRE_FALSE(vf.ok());
    CHECK_THAT(vf.error(), Catch::Contains("signature does not verify"));
    CHECK_THAT(vf.error(), Catch::Contains(f.message.string()));
    write_file(f.message, f.text);
  }
}

TEST_CASE("a signature by another key names both key IDs", "[minisign]") {
  Fixture f;
  const KeyPair other = make_key(f.dir.path, "other");
  REQUIRE(other.id != f.keys.id);
  const std::string sig = sign(other, f.message, "rch 1.2.3", false);
  const auto key = load_key(f.keys);

  CHECK(rch::minisign_key_id_hex(key.key_id) == f.keys.id);
  auto v = rch::minisign_verify(key, f.text, sig);
  REQUIRE_FALSE(v.ok());
  CHECK(v.error() == "signed by key ID " + other.id + ", configured key is " + f.keys.id);
  auto vf = rch::minisign_verify_file(key, f.message, sig);
  REQUIRE_FALSE(vf.ok());
  CHECK_THAT(vf.error(), Catch::Contains("signed by key ID " + other.id));
}

TEST_CASE("a signature whose bytes were changed does not verify", "[minisign]") {
  Fixture f;
  const auto key = load_key(f.keys);
  auto lines = lines_of(sign(f.keys, f.message, "rch 1.2.3", false));
  REQUIRE(lines.size() == 4);
  // Flip a character inside the 64-byte signature part, away from the key id and padding.
  char& c = lines[1][40];
  c = c == 'A' ? 'B' : 'A';
  auto v = rch::minisign_verify(key, f.text, join_lines(lines));
  REQUIRE_FALSE(v.ok());
  CHECK_THAT(v.error(), Catch::Contains("signature does not verify"));
}

TEST_CASE("an edited trusted comment is refused", "[minisign]") {
  Fixture f;
  const auto key = load_key(f.keys);
  for (bool legacy : {false, true}) {
    auto lines = lines_of(sign(f.keys, f.message, "rch 1.2.3", legacy));
    REQUIRE(lines.size() == 4);
    REQUIRE(lines[2] == "trusted comment: rch 1.2.3");
    lines[2] = "trusted comment: rch 9.9.9";
    auto v = rch::minisign_verify(key, f.text, join_lines(lines));
    REQUIRE_FALSE(v.ok());
    CHECK_THAT(v.error(), Catch::Contains("trusted comment was altered"));
    auto vf = rch::minisign_verify_file(key, f.message, join_lines(lines));
    REQUIRE_FALSE(vf.ok());
    CHECK_THAT(vf.error(), Catch::Contains("trusted comment was altered"));

    // The untrusted comment is not signed: changing it is allowed.
    lines[2] = "trusted comment: rch 1.2.3";
    lines[0] = "untrusted comment: anything at all";
    CHECK(rch::minisign_verify(key, f.text, join_lines(lines)).ok());
  }
}

TEST_CASE("CRLF line endings in the signature file are accepted", "[minisign]") {
  Fixture f;
  const auto key = load_key(f.keys);
  std::string crlf;
  for (const auto& l : lines_of(sign(f.keys, f.message, "rch 1.2.3", false))) crlf += l + "\r\n";
  auto v = rch::minisign_verify(key, f.text, crlf);
  INFO(error_of(v));
  REQUIRE(v.ok());
  CHECK(v->trusted_comment == "rch 1.2.3");
}

TEST_CASE("truncated, garbage and unknown-algorithm signature files are refused", "[minisign]") {
  Fixture f;
  const auto key = load_key(f.keys);
  const std::string sig = sign(f.keys, f.message, "rch 1.2.3", false);
  const auto lines = lines_of(sig);
  REQUIRE(lines.size() == 4);

  auto refused = [&](const std::string& text, const std::string& why) {
    auto v = rch::minisign_verify(key, f.text, text);
    INFO("signature file: " << text);
    REQUIRE_FALSE(v.ok());
    CHECK_THAT(v.error(), Catch::Contains(why));
    CHECK_FALSE(rch::minisign_verify_file(key, f.message, text).ok());
  };
  refused("", "malformed signature file: empty");
  refused("hello world\n", "malformed signature file");
  refused(std::string("\x00\xff\x13garbage", 10), "malformed signature file");
  refused(sig.substr(0, sig.size() / 2), "malformed signature file");
  refused(join_lines({lines[0], lines[1]}), "malformed signature file: missing the trusted comment line");
  refused(join_lines({lines[0], lines[1], lines[2]}), "malformed signature file: missing the global signature line");
  refused(join_lines({lines[0], lines[1].substr(0, 50), lines[2], lines[3]}), "malformed signature file");
  refused(join_lines({lines[0], lines[1], lines[2], lines[3].substr(0, 44)}), "malformed signature file");
  refused(join_lines({lines[0], lines[1], "comment: rch 1.2.3", lines[3]}),
          "malformed signature file: line 3 must start with 'trusted comment: '");
  refused(join_lines({lines[0], "!!" + lines[1].substr(2), lines[2], lines[3]}),
          "malformed signature file: the signature line is not valid base64");
  refused(sig + "extra line\n", "malformed signature file: unexpected text after");

  // The first base64 group is 3 bytes: the algorithm name and the first key
  // id byte. Swap it for "Xx" so only the algorithm is unknown.
  const std::string head = base64_encode(std::string("Xx\0", 3));
  refused(join_lines({lines[0], head + lines[1].substr(4), lines[2], lines[3]}), "unsupported algorithm 'Xx'");
}

TEST_CASE("public keys parse from the .pub file and from the bare line", "[minisign]") {
  Fixture f;
  const std::string pub = read_file(f.keys.pub);
  const auto lines = lines_of(pub);
  REQUIRE(lines.size() == 2);

  auto from_file = rch::parse_minisign_public_key(pub);
  auto from_line = rch::parse_minisign_public_key(lines[1]);
  auto from_line_nl = rch::parse_minisign_public_key(lines[1] + "\n");
  REQUIRE(from_file.ok());
  REQUIRE(from_line.ok());
  REQUIRE(from_line_nl.ok());
  CHECK(from_file->key == from_line->key);
  CHECK(from_file->key_id == from_line->key_id);
  CHECK(from_line_nl->key == from_line->key);
  CHECK(rch::minisign_key_id_hex(from_line->key_id) == f.keys.id);

  // A key from the bare line verifies what minisign signed.
  const std::string sig = sign(f.keys, f.message, "rch 1.2.3", false);
  CHECK(rch::minisign_verify(*from_line, f.text, sig).ok());

  CHECK_FALSE(rch::parse_minisign_public_key("").ok());
  CHECK_FALSE(rch::parse_minisign_public_key("RWnot base64!").ok());
  CHECK_FALSE(rch::parse_minisign_public_key(lines[1].substr(0, 40)).ok());
  CHECK_FALSE(rch::parse_minisign_public_key("comment\n" + lines[1]).ok());
  CHECK_FALSE(rch::parse_minisign_public_key(pub + lines[1] + "\n").ok());
  // A signature line is base64 too, but not 42 bytes.
  CHECK_FALSE(rch::parse_minisign_public_key(lines_of(sig)[1]).ok());
}
