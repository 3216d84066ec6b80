// Tests of core/net/http (rch.http's primitive) against tests/unit/
// https_server.py on 127.0.0.1: TLS trust (a test CA added, an untrusted
// server refused), methods, headers and body both ways, a non-2xx status as
// an answer, the timeout, the body cap, and redirects only to http(s).
#include "core/net/http.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "tests/unit/net_fixture.hpp"

namespace {

using namespace rch::test;

struct HttpFixture {
  const Certs& certs = test_certs();
  TempDir root, work;
  HttpFixture() {
    no_proxies();
    write_file(root.path / "metrics.json", R"({"status":"success"})");
    write_file(root.path / "ten.bin", random_bytes(10 * 1024 * 1024, 7));
  }
  rch::HttpRequest get(const std::string& url) const {
    rch::HttpRequest r;
    r.url = url;
    r.ca_file = certs.ca.string();
    r.timeout_s = 10;
    return r;
  }
};

}  // namespace

TEST_CASE("http_request over https trusts the added CA and refuses the others", "[http]") {
  HttpFixture fx;
  Server good(fx.root.path, fx.work.path, "good", fx.certs.server_cert, fx.certs.server_key);

  auto r = rch::http_request(fx.get(good.url("/metrics.json")));
  INFO((r ? "" : r.error()));
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(r->body == R"({"status":"success"})");
  CHECK(r->headers.at("content-type") == "application/octet-stream");
  CHECK(r->headers.at("content-length") == "20");

  SECTION("without the CA the server is not trusted") {
    rch::HttpRequest plain = fx.get(good.url("/metrics.json"));
    plain.ca_file.clear();
    auto bad = rch::http_request(plain);
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error(), Catch::StartsWith("TLS certificate of " + good.url("/metrics.json") + " not trusted: "));
  }

  SECTION("a self-signed server is refused even with the CA set") {
    Server self(fx.root.path, fx.work.path, "self", fx.certs.self_cert, fx.certs.self_key);
    auto bad = rch::http_request(fx.get(self.url("/metrics.json")));
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error(), Catch::StartsWith("TLS certificate of " + self.url("/metrics.json") + " not trusted: "));
    CHECK(self.requests().empty());
  }

  SECTION("an https URL may not be redirected to http") {
    Server plain(fx.root.path, fx.work.path, "plain");
    auto bad = rch::http_request(fx.get(good.url("/redirect?to=" + plain.url("/metrics.json"))));
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error(), Catch::Contains("may only redirect to https"));
    CHECK(plain.requests().empty());
  }
}

TEST_CASE("http_request sends method, headers and body, and returns any status", "[http]") {
  HttpFixture fx;
  Server srv(fx.root.path, fx.work.path, "plain");

  rch::HttpRequest post = fx.get(srv.url("/hook"));
  post.method = "POST";
  post.body = R"({"worker":"w1"})";
  post.headers = {{"Content-Type", "application/json"}, {"X-Token", "abc"}};
  auto r = rch::http_request(post);
  INFO((r ? "" : r.error()));
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK_THAT(r->body, Catch::Contains(R"("method": "POST")"));
  CHECK_THAT(r->body, Catch::Contains(R"("body": "{\"worker\":\"w1\"}")"));
  CHECK_THAT(r->body, Catch::Contains(R"("x-token": "abc")"));
  CHECK_THAT(r->body, Catch::Contains(R"("content-type": "application/json")"));

  rch::HttpRequest put = post;
  put.method = "PUT";
  auto p = rch::http_request(put);
  REQUIRE(p.ok());
  CHECK_THAT(p->body, Catch::Contains(R"("method": "PUT")"));

  auto status = rch::http_request(fx.get(srv.url("/status?code=503")));
  REQUIRE(status.ok());
  CHECK(status->status == 503);
  CHECK(status->body == "status 503\n");

  SECTION("a header value with a line break is refused before anything is sent") {
    rch::HttpRequest bad = fx.get(srv.url("/metrics.json"));
    bad.headers = {{"X-Evil", "a\r\nX-Injected: 1"}};
    auto e = rch::http_request(bad);
    REQUIRE_FALSE(e.ok());
    CHECK_THAT(e.error(), Catch::Contains("header X-Evil contains a line break"));
    bad.headers.clear();
    bad.method = "GET /x";
    CHECK_THAT(rch::http_request(bad).error(), Catch::StartsWith("invalid HTTP method 'GET /x'"));
  }
}

TEST_CASE("http_request ends at its timeout, caps the body, follows only http(s) redirects", "[http]") {
  HttpFixture fx;
  Server srv(fx.root.path, fx.work.path, "plain");

  rch::HttpRequest slow = fx.get(srv.url("/slow?secs=5"));
  slow.timeout_s = 0.5;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = rch::http_request(slow);
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error(), Catch::StartsWith("GET " + srv.url("/slow?secs=5") + " timed out: "));
  CHECK(took < std::chrono::seconds(3));

  // Announced (Content-Length) and streamed (chunked) bodies over the cap.
  for (const std::string path : {"/ten.bin", "/chunked/ten.bin"}) {
    auto big = rch::http_request(fx.get(srv.url(path)));
    REQUIRE_FALSE(big.ok());
    CHECK(big.error() == "response of GET " + srv.url(path) + " is over the limit of 8388608 bytes");
  }
  rch::HttpRequest roomy = fx.get(srv.url("/ten.bin"));
  roomy.max_body_bytes = 11 << 20;
  auto fits = rch::http_request(roomy);
  REQUIRE(fits.ok());
  CHECK(fits->body.size() == 10u << 20);

  auto file = rch::http_request(fx.get(srv.url("/redirect?to=file:///etc/passwd")));
  REQUIRE_FALSE(file.ok());
  CHECK_THAT(file.error(), Catch::StartsWith("refusing redirect from " + srv.url("/redirect?to=file:///etc/passwd")));
  CHECK_THAT(file.error(), Catch::Contains("only http and https are allowed"));

  auto followed = rch::http_request(fx.get(srv.url("/redirect?to=" + srv.url("/metrics.json"))));
  REQUIRE(followed.ok());
  CHECK(followed->status == 200);
  CHECK(followed->body == R"({"status":"success"})");

  CHECK_THAT(rch::http_request(fx.get("file:///etc/passwd")).error(),
             Catch::StartsWith("refusing file:///etc/passwd: only http:// and https:// URLs are allowed"));
}
