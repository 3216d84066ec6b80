// Tests of core/net/download against local servers only (tests/unit/
// https_server.py on 127.0.0.1): TLS trust with a CA generated at test time,
// a self-signed server that must be refused, exact bytes, size caps,
// resume after a dropped connection, restart when the server ignores Range,
// HTTP errors, progress, plain http, and the https→http redirect refusal.
#include "core/net/download.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/crypto/sha256.hpp"
#include "tests/unit/net_fixture.hpp"

namespace fs = std::filesystem;

namespace {

using namespace rch::test;

struct Fixture {
  const Certs& certs = test_certs();
  TempDir root, work;
  rch::DownloadOptions opts;
  std::string big = random_bytes(3 * 1024 * 1024 + 17, 42);

  Fixture() {
    no_proxies();
    write_file(root.path / "hello.txt", "hello over tls\n");
    write_file(root.path / "big.bin", big);
    write_file(root.path / "empty", "");
    opts.ca_file = certs.ca.string();
    opts.connect_timeout_s = 5;
    opts.transfer_timeout_s = 60;
  }
};

}  // namespace

TEST_CASE("http_get over https trusts the configured CA and nothing else", "[download]") {
  Fixture fx;
  Server good(fx.root.path, fx.work.path, "good", fx.certs.server_cert, fx.certs.server_key);

  auto body = rch::http_get(good.url("/hello.txt"), fx.opts);
  INFO((body ? "" : body.error()));
  REQUIRE(body.ok());
  CHECK(*body == "hello over tls\n");

  SECTION("by host name too") {
    std::string url = good.url("/hello.txt");
    url.replace(url.find("127.0.0.1"), 9, "localhost");
    auto r = rch::http_get(url, fx.opts);
    INFO((r ? "" : r.error()));
    CHECK(r.ok());
  }

  SECTION("without the CA the server is not trusted") {
    rch::DownloadOptions plain = fx.opts;
    plain.ca_file.clear();
    auto r = rch::http_get(good.url("/hello.txt"), plain);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("TLS certificate of " + good.url("/hello.txt") + " not trusted: "));
  }

  SECTION("a self-signed server is refused even with the CA set") {
    Server self(fx.root.path, fx.work.path, "self", fx.certs.self_cert, fx.certs.self_key);
    auto r = rch::http_get(self.url("/hello.txt"), fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("TLS certificate of " + self.url("/hello.txt") + " not trusted: "));
    CHECK_THAT(r.error(), Catch::Contains("self-signed") || Catch::Contains("self signed"));
    CHECK(self.requests().empty());
  }

  SECTION("an unreadable CA bundle is named") {
    rch::DownloadOptions bad = fx.opts;
    bad.ca_file = (fx.work.path / "missing.pem").string();
    auto r = rch::http_get(good.url("/hello.txt"), bad);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("cannot read CA bundle '" + bad.ca_file + "'"));
  }

  SECTION("a CA bundle that is not PEM is named") {
    rch::DownloadOptions bad = fx.opts;
    bad.ca_file = (fx.work.path / "junk.pem").string();
    write_file(bad.ca_file, "not a certificate\n");
    auto r = rch::http_get(good.url("/hello.txt"), bad);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("cannot load CA bundle '" + bad.ca_file + "' for "));
  }

  SECTION("an empty body is an empty string") {
    auto r = rch::http_get(good.url("/empty"), fx.opts);
    REQUIRE(r.ok());
    CHECK(r->empty());
  }
}

TEST_CASE("download_file writes the exact bytes and reports progress", "[download]") {
  Fixture fx;
  Server good(fx.root.path, fx.work.path, "good", fx.certs.server_cert, fx.certs.server_key);
  const fs::path dest = fx.work.path / "big.bin";

  std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
  fx.opts.progress = [&](std::uint64_t done, std::uint64_t total) { calls.emplace_back(done, total); };
  auto r = rch::download_file(good.url("/big.bin"), dest, fx.opts);
  INFO((r ? "" : r.error()));
  REQUIRE(r.ok());
  CHECK(*rch::sha256_file_hex(dest) == rch::sha256_hex(fx.big));
  CHECK_FALSE(fs::exists(dest.string() + ".part"));

  REQUIRE(calls.size() > 1);
  for (std::size_t i = 1; i < calls.size(); ++i) CHECK(calls[i].first > calls[i - 1].first);
  CHECK(calls.back().first == fx.big.size());
  for (const auto& c : calls) CHECK(c.second == fx.big.size());

  SECTION("an existing dest is replaced") {
    write_file(dest, "old");
    fx.opts.progress = nullptr;
    REQUIRE(rch::download_file(good.url("/hello.txt"), dest, fx.opts).ok());
    CHECK(read_whole(dest) == "hello over tls\n");
  }

  SECTION("an empty file downloads as an empty file") {
    const fs::path empty = fx.work.path / "empty";
    REQUIRE(rch::download_file(good.url("/empty"), empty, fx.opts).ok());
    CHECK(fs::exists(empty));
    CHECK(fs::file_size(empty) == 0);
  }

  SECTION("a streamed body without Content-Length (total unknown)") {
    calls.clear();
    const fs::path out = fx.work.path / "chunked.bin";
    REQUIRE(rch::download_file(good.url("/chunked/big.bin"), out, fx.opts).ok());
    CHECK(*rch::sha256_file_hex(out) == rch::sha256_hex(fx.big));
    REQUIRE_FALSE(calls.empty());
    CHECK(calls.back().first == fx.big.size());
    CHECK(calls.back().second == 0);
  }
}

TEST_CASE("download_file enforces max_bytes", "[download]") {
  Fixture fx;
  Server good(fx.root.path, fx.work.path, "good", fx.certs.server_cert, fx.certs.server_key);
  const fs::path dest = fx.work.path / "big.bin";
  fx.opts.max_bytes = 1024 * 1024;

  SECTION("refused from Content-Length before anything is written") {
    auto r = rch::download_file(good.url("/big.bin"), dest, fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "refusing " + good.url("/big.bin") + ": it is " + std::to_string(fx.big.size()) +
                           " bytes, over the limit of 1048576 bytes");
    CHECK_FALSE(fs::exists(dest));
    CHECK_FALSE(fs::exists(dest.string() + ".part"));
  }

  SECTION("aborted when a streamed body grows past it") {
    auto r = rch::download_file(good.url("/chunked/big.bin"), dest, fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() ==
          "download of " + good.url("/chunked/big.bin") + " aborted: it grew past the limit of 1048576 bytes");
    CHECK_FALSE(fs::exists(dest));
    CHECK(fs::file_size(dest.string() + ".part") <= fx.opts.max_bytes);
  }

  SECTION("http_get too") {
    auto r = rch::http_get(good.url("/big.bin"), fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("refusing " + good.url("/big.bin")));
  }

  SECTION("a file exactly at the cap is fine") {
    fx.opts.max_bytes = fx.big.size();
    REQUIRE(rch::download_file(good.url("/big.bin"), dest, fx.opts).ok());
  }
}

TEST_CASE("download_file resumes a dropped transfer with a Range request", "[download]") {
  Fixture fx;
  Server good(fx.root.path, fx.work.path, "good", fx.certs.server_cert, fx.certs.server_key, "big.bin");
  const fs::path dest = fx.work.path / "big.bin";
  const fs::path part = dest.string() + ".part";

  auto first = rch::download_file(good.url("/big.bin"), dest, fx.opts);
  REQUIRE_FALSE(first.ok());
  CHECK_THAT(first.error(), Catch::StartsWith("download of " + good.url("/big.bin") + " interrupted: "));
  CHECK_FALSE(fs::exists(dest));
  REQUIRE(fs::exists(part));
  const auto have = fs::file_size(part);
  CHECK(have > 0);
  CHECK(have < fx.big.size());

  std::vector<std::uint64_t> done;
  fx.opts.progress = [&](std::uint64_t d, std::uint64_t total) {
    done.push_back(d);
    CHECK(total == fx.big.size());
  };
  auto second = rch::download_file(good.url("/big.bin"), dest, fx.opts);
  INFO((second ? "" : second.error()));
  REQUIRE(second.ok());
  CHECK(*rch::sha256_file_hex(dest) == rch::sha256_hex(fx.big));
  CHECK_FALSE(fs::exists(part));
  CHECK_THAT(good.requests(), Catch::Contains("GET /big.bin range=bytes=" + std::to_string(have) + "-\n"));
  REQUIRE_FALSE(done.empty());
  CHECK(done.front() > have);
  CHECK(done.back() == fx.big.size());
}

TEST_CASE("download_file starts over when the range cannot be used", "[download]") {
  Fixture fx;
  Server good(fx.root.path, fx.work.path, "good", fx.certs.server_cert, fx.certs.server_key);
  const fs::path dest = fx.work.path / "big.bin";
  const fs::path part = dest.string() + ".part";

  SECTION("server answers 200 to the Range request") {
    write_file(part, "garbage that must not stay in front");
    REQUIRE(rch::download_file(good.url("/chunked/big.bin"), dest, fx.opts).ok());
    CHECK_THAT(good.requests(), Catch::Contains("range=bytes=35-"));
  }

  SECTION("server answers 416: the .part is longer than the file") {
    write_file(part, fx.big + "trailing junk");
    REQUIRE(rch::download_file(good.url("/big.bin"), dest, fx.opts).ok());
    CHECK_THAT(good.requests(), Catch::Contains("range=bytes=" + std::to_string(fx.big.size() + 13) + "-"));
  }

  CHECK(*rch::sha256_file_hex(dest) == rch::sha256_hex(fx.big));
  CHECK_FALSE(fs::exists(part));
}

TEST_CASE("download errors name the URL and the cause", "[download]") {
  Fixture fx;
  Server good(fx.root.path, fx.work.path, "good", fx.certs.server_cert, fx.certs.server_key);
  Server plain(fx.root.path, fx.work.path, "plain");

  SECTION("404") {
    auto r = rch::http_get(good.url("/nope.json"), fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "GET " + good.url("/nope.json") + " failed: HTTP status 404 (File not found)");

    const fs::path dest = fx.work.path / "nope";
    auto d = rch::download_file(good.url("/nope.json"), dest, fx.opts);
    REQUIRE_FALSE(d.ok());
    CHECK_THAT(d.error(), Catch::Contains("HTTP status 404"));
    CHECK_FALSE(fs::exists(dest));
    CHECK_FALSE(fs::exists(dest.string() + ".part"));
  }

  SECTION("plain http to loopback works") {
    auto r = rch::http_get(plain.url("/hello.txt"), fx.opts);
    INFO((r ? "" : r.error()));
    REQUIRE(r.ok());
    CHECK(*r == "hello over tls\n");
  }

  SECTION("redirects are followed within a scheme") {
    auto r = rch::http_get(good.url("/redirect?to=" + good.url("/hello.txt")), fx.opts);
    INFO((r ? "" : r.error()));
    REQUIRE(r.ok());
    CHECK(*r == "hello over tls\n");

    const fs::path dest = fx.work.path / "via-redirect.bin";
    REQUIRE(rch::download_file(plain.url("/redirect?to=" + plain.url("/big.bin")), dest, fx.opts).ok());
    CHECK(*rch::sha256_file_hex(dest) == rch::sha256_hex(fx.big));
  }

  SECTION("http may be redirected to https") {
    auto r = rch::http_get(plain.url("/redirect?to=" + good.url("/hello.txt")), fx.opts);
    INFO((r ? "" : r.error()));
    CHECK(r.ok());
  }

  SECTION("https is never redirected to http") {
    const std::string from = good.url("/redirect?to=" + plain.url("/hello.txt"));
    auto r = rch::http_get(from, fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("refusing redirect from " + from + " to "));
    CHECK_THAT(r.error(), Catch::Contains("may only redirect to https"));
    CHECK(plain.requests().empty());
  }

  SECTION("too many redirects") {
    std::string url = good.url("/hello.txt");
    for (int i = 0; i < 6; ++i) url = good.url("/redirect?to=" + url);
    auto r = rch::http_get(url, fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == "GET " + url + " failed: more than 5 redirects");
  }

  SECTION("schemes other than http and https") {
    for (const std::string url : {"file:///etc/passwd", "ftp://127.0.0.1/x", "127.0.0.1/hello.txt"}) {
      auto r = rch::http_get(url, fx.opts);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error() == "refusing " + url + ": only http:// and https:// URLs are allowed");
    }
    auto r = rch::http_get(plain.url("/redirect?to=file:///etc/passwd"), fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("refusing redirect from "));
  }

  SECTION("nothing listening") {
    auto r = rch::http_get("http://127.0.0.1:1/x", fx.opts);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::StartsWith("cannot connect to http://127.0.0.1:1/x: "));
  }
}
