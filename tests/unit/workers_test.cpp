// Unit tests of core/config/workers: a good inventory, and each error with its
// exact "<file>:<line>:<col>: " prefix.
#include "core/config/workers.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/config/paths.hpp"

namespace fs = std::filesystem;

namespace {

std::string error_of(const std::string& text) {
  auto r = rch::parse_workers(text, "workers.toml");
  REQUIRE_FALSE(r.ok());
  return r.error();
}

}  // namespace

TEST_CASE("parse_workers reads a good inventory", "[workers]") {
  const auto r = rch::parse_workers(R"(# fleet
[[workers]]
id = "w1"
host = "10.0.0.1"
user = "builder"

[[workers]]
id = "gpu-2.eu_west"
host = "gpu2.example.com"
port = 2222
identity_file = "keys/id_ed25519"
certificate_file = "keys/id_ed25519-cert.pub"
root = "/srv/rch"
tags = ["gpu", "eu"]

[[workers]]
id = "w3"
host = "::1"
identity_file = "/abs/key"
)",
                                    "/etc/rch/workers.toml");
  REQUIRE(r.ok());
  const auto& w = *r;
  REQUIRE(w.size() == 3);
  CHECK(w[0].id == "w1");
  CHECK(w[0].host == "10.0.0.1");
  CHECK(w[0].user == "builder");
  CHECK(w[0].port == 22);
  CHECK(w[0].identity_file.empty());
  CHECK(w[0].root == "~/.rch");
  CHECK(w[0].tags.empty());
  CHECK(w[0].line == 2);
  CHECK(w[1].id == "gpu-2.eu_west");
  CHECK(w[1].port == 2222);
  CHECK(w[1].identity_file == "/etc/rch/keys/id_ed25519");
  CHECK(w[1].certificate_file == "/etc/rch/keys/id_ed25519-cert.pub");
  CHECK(w[0].certificate_file.empty());
  CHECK(w[1].root == "/srv/rch");
  CHECK(w[1].tags == std::vector<std::string>{"gpu", "eu"});
  CHECK(w[1].line == 7);
  CHECK(w[2].user.empty());
  CHECK(w[2].identity_file == "/abs/key");
}

TEST_CASE("parse_workers: empty file and inline tables", "[workers]") {
  CHECK(rch::parse_workers("", "workers.toml").value().empty());
  CHECK(rch::parse_workers("# nothing yet\n", "workers.toml").value().empty());
  CHECK(rch::parse_workers("workers = []\n", "workers.toml").value().empty());
  auto r = rch::parse_workers("workers = [{ id = \"a\", host = \"h\" }]\n", "workers.toml");
  REQUIRE(r.ok());
  CHECK(r->at(0).id == "a");
}

TEST_CASE("parse_workers expands ~ in identity_file", "[workers]") {
  auto r =
      rch::parse_workers("[[workers]]\nid = \"a\"\nhost = \"h\"\nidentity_file = \"~/.ssh/k\"\n", "/x/workers.toml");
  REQUIRE(r.ok());
  CHECK(r->at(0).identity_file == (rch::home_dir() / ".ssh/k").string());
}

TEST_CASE("parse_workers errors name file, line and column", "[workers]") {
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhots = \"h\"\n") ==
        "workers.toml:3:1: unknown key 'hots' in [[workers]] (did you mean 'host'?)");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhost = \"h\"\n  frobnicate = 1\n") ==
        "workers.toml:4:3: unknown key 'frobnicate' in [[workers]]");
  CHECK(error_of("[[worker]]\nid = \"w1\"\n") == "workers.toml:1:3: unknown key 'worker' (did you mean 'workers'?)");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhost = \"h\"\nport = 70000\n") ==
        "workers.toml:4:8: port must be an integer between 1 and 65535");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhost = \"h\"\nport = \"22\"\n") ==
        "workers.toml:4:8: port must be an integer between 1 and 65535");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhost = \"h\"\nport = 0\n") ==
        "workers.toml:4:8: port must be an integer between 1 and 65535");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhost = \"\"\n") == "workers.toml:3:8: empty host for worker 'w1'");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nuser = \"u\"\n") == "workers.toml:1:1: missing host for worker 'w1'");
  CHECK(error_of("[[workers]]\nhost = \"h\"\n") == "workers.toml:1:1: missing id in [[workers]]");
  CHECK(error_of("[[workers]]\nid = \"\"\nhost = \"h\"\n") == "workers.toml:2:6: empty id in [[workers]]");
  CHECK(error_of("[[workers]]\nid = \"a b\"\nhost = \"h\"\n") ==
        "workers.toml:2:6: invalid worker id 'a b': use only letters, digits, '.', '_' and '-'");
  CHECK(error_of("[[workers]]\nid = \"w/1\"\nhost = \"h\"\n") ==
        "workers.toml:2:6: invalid worker id 'w/1': use only letters, digits, '.', '_' and '-'");
  CHECK(error_of("[[workers]]\nid = 5\nhost = \"h\"\n") == "workers.toml:2:6: id must be a string");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhost = \"h\"\ntags = \"gpu\"\n") ==
        "workers.toml:4:8: tags must be an array of strings");
  CHECK(error_of("[[workers]]\nid = \"w1\"\nhost = \"h\"\ntags = [\"gpu\", 3]\n") ==
        "workers.toml:4:16: tags must be an array of strings");
  CHECK(error_of("workers = 3\n") == "workers.toml:1:11: workers must be an array of tables ([[workers]])");
  CHECK(error_of("[workers]\nid = \"w1\"\n") == "workers.toml:1:1: workers must be an array of tables ([[workers]])");
}

TEST_CASE("parse_workers: duplicate ids", "[workers]") {
  CHECK(error_of("[[workers]]\nid = \"w0\"\nhost = \"h\"\n\n[[workers]]\n# the first w1\nid = \"w1\"\nhost = "
                 "\"h\"\n\n"
                 "[[workers]]\nid = \"w1\"\nhost = \"h2\"\n") ==
        "workers.toml:11:6: duplicate worker id 'w1' (first defined at line 7)");
}

TEST_CASE("parse_workers refuses values that would become ssh options", "[workers]") {
  CHECK(error_of("[[workers]]\nid = \"-w\"\nhost = \"h\"\n") ==
        "workers.toml:2:6: invalid worker id '-w': must not begin with '-'");
  CHECK(error_of("[[workers]]\nid = \"w\"\nhost = \"-oProxyCommand=x\"\n") ==
        "workers.toml:3:8: invalid host '-oProxyCommand=x' for worker 'w': must not begin with '-'");
  CHECK(error_of("[[workers]]\nid = \"w\"\nhost = \"h\"\nuser = \"-lroot\"\n") ==
        "workers.toml:4:8: invalid user '-lroot' for worker 'w': must not begin with '-'");
  CHECK(error_of("[[workers]]\nid = \"w\"\nhost = \"h x\"\n") ==
        "workers.toml:3:8: invalid host 'h x' for worker 'w': contains whitespace");
  CHECK(error_of("[[workers]]\nid = \"w\"\nhost = \"h\"\nroot = \"-rf\"\n") ==
        "workers.toml:4:8: invalid root '-rf' for worker 'w': must not begin with '-'");
  CHECK(error_of("[[workers]]\nid = \"w\"\nhost = \"h\"\ntags = [\"-x\"]\n") ==
        "workers.toml:4:9: invalid tag '-x': use only letters, digits, '.', '_' and '-', not starting with "
        "'-'");
}

TEST_CASE("parse_workers reports TOML syntax errors with their position", "[workers]") {
  const std::string e = error_of("[[workers]]\nid = \"w1\"\nhost = \"h\n");
  CHECK_THAT(e, Catch::StartsWith("workers.toml:3:"));
  const std::string e2 = error_of("[[workers]]\nid = \"w1\"\nid = \"w2\"\n");
  CHECK_THAT(e2, Catch::StartsWith("workers.toml:3:"));
  CHECK_THAT(e2, Catch::Contains("'id'"));
  const std::string e3 = error_of("[[workers]]\nid = \n");
  CHECK_THAT(e3, Catch::StartsWith("workers.toml:2:6: "));
}

TEST_CASE("load_workers reads files and names missing ones", "[workers]") {
  std::string tmpl = (fs::temp_directory_path() / "rch-workers-test-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path dir = tmpl;
  std::ofstream(dir / "workers.toml") << "[[workers]]\nid = \"w1\"\nhost = \"h\"\nport = 99999\n";
  auto bad = rch::load_workers(dir / "workers.toml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error() == (dir / "workers.toml").string() + ":4:8: port must be an integer between 1 and 65535");

  std::ofstream(dir / "good.toml") << "[[workers]]\nid = \"w1\"\nhost = \"h\"\nidentity_file = \"k\"\n";
  auto good = rch::load_workers(dir / "good.toml");
  REQUIRE(good.ok());
  CHECK(good->at(0).identity_file == (dir / "k").string());

  auto missing = rch::load_workers(dir / "nope.toml");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error(), Catch::Contains((dir / "nope.toml").string()));
  CHECK_THAT(missing.error(), Catch::Contains("No such file or directory"));
  fs::remove_all(dir);
}
