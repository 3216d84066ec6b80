// known_hosts matching (patterns, negation, names hashed by ssh-keygen -H),
// appends from several threads, and OpenSSH certificates made by ssh-keygen:
// parsed, CA signatures verified for Ed25519, ECDSA and RSA CAs, each rule of
// a host certificate refused by name.
#include "core/ssh/known_hosts.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/ssh/quote.hpp"
#include "core/ssh/ssh_key.hpp"
#include "core/util/text.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system((cmd + " >/dev/null 2>&1").c_str()) == 0);
}

// The key of a .pub file (type and base64).
rch::SshPublicKey pub_key(const fs::path& path) {
  std::istringstream in(read_file(path));
  std::string type, base64;
  in >> type >> base64;
  auto key = rch::parse_public_key(type, base64);
  REQUIRE(key);
  return *key;
}

std::uint64_t now() { return static_cast<std::uint64_t>(std::time(nullptr)); }

}  // namespace

TEST_CASE("known_hosts host fields match as OpenSSH matches them", "[known_hosts]") {
  using rch::known_host_matches;
  CHECK(known_host_matches("build-1,10.0.0.1", "10.0.0.1"));
  CHECK(known_host_matches("BUILD-*", "build-7"));
  CHECK(known_host_matches("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
  CHECK_FALSE(known_host_matches("[127.0.0.1]:2222", "127.0.0.1"));
  CHECK(known_host_matches("build-?", "build-1"));
  CHECK_FALSE(known_host_matches("build-?", "build-10"));
  CHECK_FALSE(known_host_matches("*.example.com,!bad.example.com", "bad.example.com"));
  CHECK(known_host_matches("*.example.com,!bad.example.com", "good.example.com"));
  CHECK(rch::known_hosts_name("h", 22) == "h");
  CHECK(rch::known_hosts_name("h", 2222) == "[h]:2222");
}

TEST_CASE("names hashed by ssh-keygen -H match, others do not", "[known_hosts]") {
  rch::test::TempDir tmp;
  run("ssh-keygen -q -t ed25519 -N '' -f " + rch::shell_quote((tmp.path / "k").string()));
  const auto key = pub_key(tmp.path / "k.pub");
  const fs::path kh = tmp.path / "known_hosts";
  std::ofstream(kh) << "[10.1.2.3]:2200 " << key.type << " " << rch::base64_encode(key.blob) << "\n";
  run("ssh-keygen -H -f " + rch::shell_quote(kh.string()));
  auto entries = rch::load_known_hosts(kh);
  REQUIRE(entries.ok());
  REQUIRE(entries->size() == 1);
  CHECK(entries->front().hosts.starts_with("|1|"));
  CHECK(rch::known_host_matches(entries->front().hosts, "[10.1.2.3]:2200"));
  CHECK_FALSE(rch::known_host_matches(entries->front().hosts, "[10.1.2.3]:2201"));
  CHECK(entries->front().key.blob == key.blob);
}

TEST_CASE("appends from many threads lose no entry and keep every line whole", "[known_hosts]") {
  rch::test::TempDir tmp;
  run("ssh-keygen -q -t ed25519 -N '' -f " + rch::shell_quote((tmp.path / "k").string()));
  const auto key = pub_key(tmp.path / "k.pub");
  const fs::path kh = tmp.path / "known_hosts";
  std::ofstream(kh) << "# no newline at the end";
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 25; ++j) {
        REQUIRE(rch::append_known_host(kh, "[h" + std::to_string(i) + "]:" + std::to_string(j + 1), key, j % 2 == 0));
      }
    });
  }
  for (auto& t : threads) t.join();
  auto entries = rch::load_known_hosts(kh);
  REQUIRE(entries.ok());
  REQUIRE(entries->size() == 200);
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 25; ++j) {
      const std::string name = "[h" + std::to_string(i) + "]:" + std::to_string(j + 1);
      int found = 0;
      for (const auto& e : *entries) found += rch::known_host_matches(e.hosts, name) ? 1 : 0;
      CHECK(found == 1);
    }
  }
}

TEST_CASE("host certificates from ssh-keygen: CA signatures and every rule", "[known_hosts][cert]") {
  rch::test::TempDir tmp;
  const auto path = [&](const char* name) { return rch::shell_quote((tmp.path / name).string()); };
  run("ssh-keygen -q -t ed25519 -N '' -f " + path("host"));
  const auto host_key = pub_key(tmp.path / "host.pub");
  // sign ARGS: a certificate of the host key, parsed.
  const auto sign = [&](const std::string& ca, const std::string& args) {
    run("ssh-keygen -q -s " + path(ca.c_str()) + " -I test-id " + args + " " + path("host.pub"));
    auto text = read_file(tmp.path / "host-cert.pub");
    std::istringstream in(text);
    std::string type, base64;
    in >> type >> base64;
    auto blob = rch::parse_public_key(type, base64);
    REQUIRE(blob);
    auto cert = rch::parse_certificate(blob->blob);
    INFO((cert ? "" : cert.error()));
    REQUIRE(cert.ok());
    return std::move(cert).value();
  };

  SECTION("Ed25519, ECDSA and RSA CAs all verify; the certified key is the host's") {
    for (const std::string type : {"ed25519", "ecdsa", "rsa"}) {
      const std::string ca = "ca_" + type;
      run("ssh-keygen -q -t " + type + " -N '' -f " + path(ca.c_str()));
      auto cert = sign(ca, "-h -n 127.0.0.1 -V -5m:+1h");
      INFO(type);
      CHECK(cert.key_blob == host_key.blob);
      CHECK(cert.ca_blob == pub_key(tmp.path / (ca + ".pub")).blob);
      CHECK(rch::check_host_certificate(cert, "127.0.0.1", now()).ok());
      // A flipped byte of the signed data no longer verifies.
      cert.signed_data[cert.signed_data.size() / 2] ^= 1;
      auto broken = rch::check_host_certificate(cert, "127.0.0.1", now());
      REQUIRE_FALSE(broken.ok());
      CHECK_THAT(broken.error(), Catch::Contains("signature does not verify"));
    }
  }
  SECTION("each rule names itself") {
    run("ssh-keygen -q -t ed25519 -N '' -f " + path("ca"));
    auto check = [&](const rch::SshCertificate& c) { return rch::check_host_certificate(c, "127.0.0.1", now()); };
    auto r = check(sign("ca", "-h -n 127.0.0.1 -V 20200101:20200201"));
    CHECK_THAT(r.error(), Catch::Contains("has expired: valid until 2020-02-01T00:00:00Z"));
    r = check(sign("ca", "-h -n 127.0.0.1 -V 20990101:21000101"));
    CHECK_THAT(r.error(), Catch::Contains("is not yet valid"));
    r = check(sign("ca", "-h -n a.example,b.example -V -5m:+1h"));
    CHECK_THAT(r.error(), Catch::Contains("does not name 127.0.0.1 among its principals (a.example, b.example)"));
    r = check(sign("ca", "-h -V -5m:+1h"));
    CHECK_THAT(r.error(), Catch::Contains("principals (none)"));
    r = check(sign("ca", "-n 127.0.0.1 -V -5m:+1h"));
    CHECK_THAT(r.error(), Catch::Contains("is a user certificate, not a host certificate"));
    // ssh-keygen only puts critical options into user certificates; one in a
    // host certificate is refused the same way whatever its name.
    auto with_option = sign("ca", "-h -n 127.0.0.1 -V -5m:+1h");
    with_option.critical_options.push_back("verify-required");
    CHECK_THAT(check(with_option).error(), Catch::Contains("unknown critical option verify-required"));
    CHECK(check(sign("ca", "-h -n 127.0.0.1 -V always:forever")).ok());
  }
}
