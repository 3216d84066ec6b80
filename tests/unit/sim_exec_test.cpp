// Tests of the simulated fleet's scripted command answers (RCH_SIM_EXEC):
// the rules file, first-match order over worker and command globs, errors
// naming file:line, and SimFleet::exec's result, delay and timeout.
#include "core/transport/sim_exec.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/transport/sim_fleet.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

std::filesystem::path write(const rch::test::TempDir& dir, const std::string& text) {
  const auto p = dir.path / "exec.toml";
  std::ofstream(p) << text;
  return p;
}

}  // namespace

TEST_CASE("RCH_SIM_EXEC rules: the first whose worker and command globs match", "[sim]") {
  rch::test::TempDir dir;
  const auto file = write(dir, R"(
[[exec]]
worker = "w1"
command = "cat /proc/loadavg"
stdout = "9.50 9.00 8.00 3/200 4242\n"
delay_ms = 40

[[exec]]
command = "cat /proc/loadavg"
stdout = "0.25 0.20 0.10 1/100 1234\n"

[[exec]]
worker = "w[23]"
command = "sh -c *"
exit = 3
stderr = "boom"
)");
  auto rules = rch::load_sim_exec(file);
  INFO((rules ? "" : rules.error()));
  REQUIRE(rules.ok());
  REQUIRE(rules->size() == 3);
  CHECK(rules->at(0).origin == file.string() + ":2");

  const auto* w1 = rch::match_sim_exec(*rules, "w1", "cat /proc/loadavg");
  REQUIRE(w1 != nullptr);
  CHECK(w1->out == "9.50 9.00 8.00 3/200 4242\n");
  CHECK(rch::match_sim_exec(*rules, "w2", "cat /proc/loadavg")->out == "0.25 0.20 0.10 1/100 1234\n");
  CHECK(rch::match_sim_exec(*rules, "w3", "sh -c 'echo hi'")->exit_code == 3);
  CHECK(rch::match_sim_exec(*rules, "w4", "sh -c x") == nullptr);
  CHECK(rch::match_sim_exec(*rules, "w1", "uptime") == nullptr);

  rch::SimConfig config;
  config.latency_ms = 5;
  config.exec_file = file;
  config.exec_rules = *rules;
  auto fleet = rch::SimFleet::open(config);
  REQUIRE(fleet.ok());
  auto& f = **fleet;

  rch::SimOp op = f.exec("w1", {"cat", "/proc/loadavg"}, 10);
  REQUIRE(op.ok);
  CHECK(op.delay_ms == 45);
  auto result = nlohmann::json::parse(op.value);
  CHECK(result["code"] == 0);
  CHECK(result["out"] == "9.50 9.00 8.00 3/200 4242\n");
  CHECK(result["timed_out"] == false);

  op = f.exec("w2", {"sh", "-c", "exit 3"}, 10);
  REQUIRE(op.ok);
  CHECK(nlohmann::json::parse(op.value)["code"] == 3);
  CHECK(nlohmann::json::parse(op.value)["err"] == "boom");

  // A command that runs longer than its timeout ends at the timeout, as over SSH.
  rules->at(0).delay_ms = 5000;
  config.exec_rules = *rules;
  auto slow = rch::SimFleet::open(config);
  REQUIRE(slow.ok());
  op = (*slow)->exec("w1", {"cat", "/proc/loadavg"}, 1);
  REQUIRE(op.ok);
  CHECK(op.delay_ms == 1005);
  CHECK(nlohmann::json::parse(op.value)["timed_out"] == true);
  CHECK(nlohmann::json::parse(op.value)["code"] == -1);

  op = f.exec("w4", {"uptime"}, 10);
  REQUIRE_FALSE(op.ok);
  CHECK(op.error == "simulated worker w4 cannot run 'uptime': no [[exec]] rule of " + file.string() + " matches it");
}

TEST_CASE("RCH_SIM_EXEC errors name the file and line", "[sim]") {
  rch::test::TempDir dir;
  auto typo = rch::load_sim_exec(write(dir, "[[exec]]\ncommand = \"x\"\nexitcode = 1\n"));
  REQUIRE_FALSE(typo.ok());
  CHECK_THAT(typo.error(), Catch::Contains("exec.toml:3:1: unknown key 'exitcode' in [[exec]]"));
  auto bad_exit = rch::load_sim_exec(write(dir, "[[exec]]\nexit = 300\n"));
  REQUIRE_FALSE(bad_exit.ok());
  CHECK_THAT(bad_exit.error(), Catch::Contains("exec.toml:2:8: exit must be an integer between 0 and 255"));
  auto other = rch::load_sim_exec(write(dir, "[defaults]\nx = 1\n"));
  REQUIRE_FALSE(other.ok());
  CHECK_THAT(other.error(), Catch::Contains("expected only [[exec]] tables, found 'defaults'"));
  auto missing = rch::load_sim_exec(dir.path / "nope.toml");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error(), Catch::StartsWith("RCH_SIM_EXEC: "));
}
