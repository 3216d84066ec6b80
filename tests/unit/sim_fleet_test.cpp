// Unit tests of the simulated fleet's persistence (core/transport/sim_fleet):
// changes go to an append-only journal, the next open replays it (a torn last
// line dropped) and folds it into the snapshot once it outgrows the fleet.
#include "core/transport/sim_fleet.hpp"
#include "core/store/atomic_file.hpp"
#include "tests/unit/temp_dir.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using rch::test::TempDir;

std::unique_ptr<rch::SimFleet> open_at(const std::filesystem::path& file) {
  rch::SimConfig config;
  config.latency_ms = 0;
  config.state_file = file;
  auto fleet = rch::SimFleet::open(config);
  REQUIRE(fleet.ok());
  return std::move(fleet.value());
}

std::string current_of(rch::SimFleet& fleet, const std::string& id) {
  const auto facts = nlohmann::json::parse(fleet.preflight(id, "9.9.9").value);
  return facts.value("current_version", "");
}

void deploy(rch::SimFleet& fleet, const std::string& id, const std::string& version) {
  REQUIRE(fleet.transfer(id, version, "sha-" + version, 10).ok);
  REQUIRE(fleet.record(id).ok());
  REQUIRE(fleet.install(id, version, "sha-" + version, "dep").ok);
  REQUIRE(fleet.record(id).ok());
}

std::size_t lines_of(const std::filesystem::path& p) {
  std::ifstream in(p);
  return static_cast<std::size_t>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
}

}  // namespace

TEST_CASE("sim fleet changes are journalled, one line each, and replayed by the next open") {
  TempDir dir;
  const auto file = dir.path / "sim-fleet.json";
  const auto journal = dir.path / "sim-fleet.json.journal";
  {
    auto fleet = open_at(file);
    deploy(*fleet, "a", "1.0.0");
    deploy(*fleet, "b", "1.0.0");
    deploy(*fleet, "a", "1.1.0");
    CHECK_FALSE(std::filesystem::exists(file));  // no whole-fleet write per change
    CHECK(lines_of(journal) == 6);
  }
  // A run killed mid-write leaves a torn line: dropped, the rest replays.
  { std::ofstream(journal, std::ios::app) << R"({"id":"b","current":"7.7)"; }
  auto fleet = open_at(file);
  CHECK(current_of(*fleet, "a") == "1.1.0");
  CHECK(current_of(*fleet, "b") == "1.0.0");
  // 6 lines for 2 workers: folded into the snapshot, the journal starts over.
  CHECK(std::filesystem::exists(file));
  CHECK(lines_of(journal) == 0);
  deploy(*fleet, "b", "2.0.0");
  auto again = open_at(file);
  CHECK(current_of(*again, "a") == "1.1.0");
  CHECK(current_of(*again, "b") == "2.0.0");
}

TEST_CASE("a damaged journal line names the file and line") {
  TempDir dir;
  const auto file = dir.path / "sim-fleet.json";
  REQUIRE(rch::write_file_atomic(dir.path / "sim-fleet.json.journal", "{\"id\":\"a\"}\nnot json\n{}\n").ok());
  rch::SimConfig config;
  config.state_file = file;
  auto fleet = rch::SimFleet::open(config);
  REQUIRE_FALSE(fleet.ok());
  CHECK(fleet.error().find("sim-fleet.json.journal:2: ") != std::string::npos);
}
