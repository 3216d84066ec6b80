// Unit tests of core/util/uuid and core/util/time: formats and uniqueness.
#include <catch2/catch.hpp>
#include <chrono>
#include <regex>
#include <set>
#include <string>

#include "core/util/time.hpp"
#include "core/util/uuid.hpp"

TEST_CASE("uuid_v4 has the v4 format and does not repeat", "[uuid]") {
  const std::regex format("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = rch::uuid_v4();
    REQUIRE(std::regex_match(id, format));
    seen.insert(id);
  }
  CHECK(seen.size() == 10000);
}

TEST_CASE("fill_random fills every byte position", "[uuid]") {
  // 64 draws of 32 bytes: each position being zero every time has odds 256^-64.
  unsigned char any[32] = {};
  for (int i = 0; i < 64; ++i) {
    unsigned char buf[32] = {};
    rch::fill_random(buf, sizeof buf);
    for (std::size_t j = 0; j < sizeof buf; ++j) any[j] |= buf[j];
  }
  for (unsigned char b : any) CHECK(b != 0);
}

TEST_CASE("iso8601_utc formats UTC with milliseconds", "[time]") {
  using namespace std::chrono;
  CHECK(rch::iso8601_utc(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  // 2026-11-22T10:00:00.123Z
  const auto tp = system_clock::time_point{seconds{1795341600} + milliseconds{123}};
  CHECK(rch::iso8601_utc(tp) == "2026-11-22T10:00:00.123Z");
  CHECK(rch::iso8601_utc(tp + microseconds{999}) == "2026-11-22T10:00:00.123Z");  // truncates
  CHECK(rch::iso8601_utc(system_clock::time_point{milliseconds{-1}}) == "1969-12-31T23:59:59.999Z");
  CHECK(rch::iso8601_utc(system_clock::time_point{seconds{951782400}}) == "2000-02-29T00:00:00.000Z");

  const std::regex format(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  const std::string now = rch::iso8601_utc_now();
  CHECK(std::regex_match(now, format));
  CHECK(now >= "2024-");
}
