// Unit tests of the worker agent (core/agent): leases, drain, health, root
// discovery. Each test uses its own temporary agent root and real processes.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>

#include "core/agent/agent.hpp"
#include "core/util/json.hpp"
#include "core/version/build_info.hpp"
#include "tests/unit/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// A fresh agent root, removed with everything in it at scope exit.
using TempRoot = rch::test::TempDir;

std::vector<fs::path> lease_files(const fs::path& root) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(root / "state" / "leases", ec), end; !ec && it != end; it.increment(ec)) {
    out.push_back(it->path());
  }
  return out;
}

// Polls cond every 20 ms for up to limit; true if it became true.
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 3000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

// The job's pid, once run_job has written it into the (only) lease.
pid_t job_pid_of_lease(const fs::path& root) {
  for (const auto& p : lease_files(root)) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const auto at = text.find("\"job_pid\":");
    if (at != std::string::npos) return static_cast<pid_t>(std::atol(text.c_str() + at + 10));
  }
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Runs the agent in a forked process (standing in for rch-wkr) in its own
// process group, so the test can kill it, its job, or both.
pid_t fork_agent_with_job(const fs::path& root, const std::vector<std::string>& job) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    rch::Agent agent(root);
    auto r = agent.run_job(job);
    ::_exit(r ? *r : 99);
  }
  REQUIRE(pid > 0);
  ::setpgid(pid, pid);  // also from the parent, so killpg cannot race the child
  return pid;
}

}  // namespace

TEST_CASE("a lease is held while a job runs and removed after", "[agent]") {
  TempRoot root;
  rch::Agent agent(root.path);
  REQUIRE(agent.active_leases() == 0);

  auto job = std::async(std::launch::async, [&] { return agent.run_job({"sleep", "1"}); });
  REQUIRE(eventually([&] { return agent.active_leases() == 1; }));
  auto leases = lease_files(root.path);
  REQUIRE(leases.size() == 1);
  CHECK(leases[0].filename().string().rfind(std::to_string(::getpid()) + "-", 0) == 0);
  CHECK(leases[0].extension() == ".lease");
  REQUIRE(eventually([&] { return job_pid_of_lease(root.path) > 0; }));
  {
    std::ifstream in(leases[0]);
    std::string line;
    std::getline(in, line);
    CHECK(line.find("\"argv\":[\"sleep\",\"1\"]") != std::string::npos);
    CHECK(line.find("\"started\":\"") != std::string::npos);
  }

  auto r = job.get();
  REQUIRE(r.ok());
  CHECK(*r == 0);
  CHECK(agent.active_leases() == 0);
  CHECK(lease_files(root.path).empty());
}

TEST_CASE("run_job returns the job's exit status", "[agent]") {
  TempRoot root;
  rch::Agent agent(root.path);
  auto seven = agent.run_job({"sh", "-c", "exit 7"});
  REQUIRE(seven.ok());
  CHECK(*seven == 7);

  auto killed = agent.run_job({"sh", "-c", "kill -KILL $$"});
  REQUIRE(killed.ok());
  CHECK(*killed == 128 + SIGKILL);
  CHECK(lease_files(root.path).empty());

  auto missing = agent.run_job({"rch-no-such-command-xyz"});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().find("rch-no-such-command-xyz") != std::string::npos);
  CHECK(lease_files(root.path).empty());

  auto not_executable = agent.run_job({root.path.string()});
  REQUIRE_FALSE(not_executable.ok());
  CHECK(lease_files(root.path).empty());
}

TEST_CASE("SIGTERM to the agent process is forwarded to the job", "[agent]") {
  TempRoot root;
  rch::Agent agent(root.path);
  auto job = std::async(std::launch::async, [&] { return agent.run_job({"sleep", "30"}); });
  REQUIRE(eventually([&] { return job_pid_of_lease(root.path) > 0; }));
  const auto start = std::chrono::steady_clock::now();
  ::kill(::getpid(), SIGTERM);  // would end the test runner if not forwarded
  auto r = job.get();
  REQUIRE(r.ok());
  CHECK(*r == 128 + SIGTERM);
  CHECK(seconds_since(start) < 5);
  CHECK(agent.active_leases() == 0);
}

TEST_CASE("a killed job frees its lease, even when its agent died too", "[agent]") {
  TempRoot root;
  rch::Agent agent(root.path);

  SECTION("agent and job killed together") {
    pid_t agent_pid = fork_agent_with_job(root.path, {"sleep", "30"});
    REQUIRE(eventually([&] { return job_pid_of_lease(root.path) > 0; }));
    REQUIRE(agent.active_leases() == 1);
    REQUIRE(::killpg(agent_pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(agent_pid, &status, 0) == agent_pid);
    CHECK(WIFSIGNALED(status));
    // The job is reaped by init; its lock goes as soon as it is dead.
    CHECK(eventually([&] { return agent.active_leases() == 0; }));
    CHECK(lease_files(root.path).empty());
  }

  SECTION("a job outliving its killed agent keeps the lease until it dies") {
    pid_t agent_pid = fork_agent_with_job(root.path, {"sleep", "30"});
    REQUIRE(eventually([&] { return job_pid_of_lease(root.path) > 0; }));
    const pid_t job_pid = job_pid_of_lease(root.path);
    REQUIRE(::kill(agent_pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(agent_pid, &status, 0) == agent_pid);
    std::this_thread::sleep_for(100ms);
    CHECK(agent.active_leases() == 1);  // the job inherited the locked fd
    REQUIRE(::kill(job_pid, SIGKILL) == 0);
    CHECK(eventually([&] { return agent.active_leases() == 0; }));
    CHECK(lease_files(root.path).empty());
  }
}

TEST_CASE("jobs are refused while draining and allowed after undrain", "[agent]") {
  TempRoot root;
  rch::Agent agent(root.path);
  REQUIRE_FALSE(agent.draining());
  REQUIRE(agent.set_draining().ok());
  CHECK(agent.draining());
  CHECK(fs::exists(root.path / "state" / "drain"));
  {
    std::ifstream in(root.path / "state" / "drain");
    std::string marker;
    std::getline(in, marker);
    CHECK(marker.find("\"by\":") != std::string::npos);
    CHECK(marker.find("\"since\":") != std::string::npos);
  }

  auto refused = agent.run_job({"true"});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error() == rch::k_job_refused_draining);
  CHECK(lease_files(root.path).empty());

  REQUIRE(agent.undrain().ok());
  CHECK_FALSE(agent.draining());
  REQUIRE(agent.undrain().ok());  // idempotent
  auto allowed = agent.run_job({"true"});
  REQUIRE(allowed.ok());
  CHECK(*allowed == 0);
}

TEST_CASE("drain waits for running jobs, up to its timeout", "[agent]") {
  TempRoot root;
  rch::Agent agent(root.path);
  int progress_calls = 0;
  int last_reported = -1;
  auto progress = [&](int n) {
    ++progress_calls;
    last_reported = n;
  };

  SECTION("idle: returns at once") {
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(agent.drain(10s, progress).ok());
    CHECK(seconds_since(start) < 0.5);
    CHECK(progress_calls == 0);
    CHECK(agent.draining());
  }

  SECTION("waits for a 1 s job") {
    auto job = std::async(std::launch::async, [&] { return agent.run_job({"sleep", "1"}); });
    REQUIRE(eventually([&] { return agent.active_leases() == 1; }));
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(agent.drain(10s, progress).ok());
    const double waited = seconds_since(start);
    CHECK(waited > 0.5);
    CHECK(waited < 3.0);
    CHECK(progress_calls >= 1);
    CHECK(last_reported == 1);
    REQUIRE(job.get().ok());
  }

  SECTION("times out on a 3 s job with timeout 1 s") {
    auto job = std::async(std::launch::async, [&] { return agent.run_job({"sleep", "3"}); });
    REQUIRE(eventually([&] { return agent.active_leases() == 1; }));
    const auto start = std::chrono::steady_clock::now();
    auto r = agent.drain(1s, progress);
    const double waited = seconds_since(start);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().find("1 active build") != std::string::npos);
    CHECK(waited >= 0.9);
    CHECK(waited < 2.0);
    CHECK(agent.draining());  // a timed-out drain leaves the worker draining
    auto status = job.get();  // a job started before the drain runs to its end
    REQUIRE(status.ok());
    CHECK(*status == 0);
  }
}

TEST_CASE("health reports version, drain state, builds, disk", "[agent]") {
  TempRoot root;
  rch::Agent agent(root.path);
  auto h = agent.health();
  CHECK(h.ok);
  CHECK(h.error.empty());
  CHECK(h.version == rch::build_version());
  CHECK(h.root == root.path.string());
  CHECK_FALSE(h.draining);
  CHECK(h.active_builds == 0);
  CHECK(h.disk_free_mb > 0);

  auto job = std::async(std::launch::async, [&] { return agent.run_job({"sleep", "1"}); });
  REQUIRE(eventually([&] { return agent.active_leases() == 1; }));
  REQUIRE(agent.set_draining().ok());
  h = agent.health();
  CHECK(h.draining);
  CHECK(h.active_builds == 1);
  REQUIRE(job.get().ok());

  const std::string json = rch::health_json(h);
  CHECK(json.find("\"version\":\"" + h.version + "\"") != std::string::npos);
  CHECK(json.find("\"draining\":true") != std::string::npos);
  CHECK(json.find("\"active_builds\":1") != std::string::npos);
  CHECK(json.find("\"ok\":true") != std::string::npos);
  CHECK(json.find("\"error\"") == std::string::npos);

  rch::Agent missing(root.path / "does" / "not" / "exist");
  auto bad = missing.health();
  CHECK_FALSE(bad.ok);
  CHECK_FALSE(bad.error.empty());
  CHECK(rch::health_json(bad).find("\"error\":") != std::string::npos);
}

TEST_CASE("dump_json escapes what JSON requires and replaces bytes that are not UTF-8", "[agent]") {
  CHECK(rch::dump_json("plain") == "\"plain\"");
  CHECK(rch::dump_json("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(rch::dump_json("l1\nl2\t\r") == "\"l1\\nl2\\t\\r\"");
  CHECK(rch::dump_json(std::string("\x01", 1)) == "\"\\u0001\"");
  CHECK(rch::dump_json("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
  CHECK(rch::dump_json("bad\xff") == "\"bad\xef\xbf\xbd\"");                                             // U+FFFD
  CHECK(rch::Json::parse(rch::dump_json("\xc0\xaf")).get<std::string>() == "\xef\xbf\xbd\xef\xbf\xbd");  // overlong '/'
}

TEST_CASE("agent root discovery", "[agent]") {
  const fs::path home = "/home/u";
  CHECK(rch::resolve_agent_root("/flag", "/env", "/x/versions/v1.2.3/rch-wkr", home) == "/flag");
  CHECK(rch::resolve_agent_root("", "/env", "/x/versions/v1.2.3/rch-wkr", home) == "/env");
  CHECK(rch::resolve_agent_root("", "", "/x/versions/v1.2.3/rch-wkr", home) == "/x");
  CHECK(rch::resolve_agent_root("", nullptr, "/srv/rch/versions/v0.1.0/rch-wkr", home) == "/srv/rch");
  CHECK(rch::resolve_agent_root("", nullptr, "/usr/local/bin/rch-wkr", home) == "/home/u/.rch");
  CHECK(rch::resolve_agent_root("", nullptr, "/x/versions/v1/other", home) == "/home/u/.rch");
  CHECK(rch::resolve_agent_root("", nullptr, "/x/builds/v1/rch-wkr", home) == "/home/u/.rch");
  CHECK(rch::resolve_agent_root("", nullptr, "", home) == "/home/u/.rch");
  CHECK(rch::resolve_agent_root("rel", nullptr, "", home) == fs::absolute("rel"));
}

TEST_CASE("state dirs are 0700 whatever the umask, and a loose old one is tightened", "[agent]") {
  TempRoot root;
  const auto mode_of = [](const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
  };
  const mode_t saved = ::umask(0);
  rch::Agent fresh(root.path / "new-root");
  REQUIRE(fresh.set_draining());
  REQUIRE(fresh.undrain());
  REQUIRE(fresh.run_job({"true"}));
  CHECK(mode_of(root.path / "new-root") == 0755);
  CHECK(mode_of(root.path / "new-root" / "state") == 0700);
  CHECK(mode_of(root.path / "new-root" / "state" / "leases") == 0700);

  // An older agent under umask 000 left world-writable state dirs.
  fs::create_directories(root.path / "old" / "state" / "leases");
  fs::permissions(root.path / "old" / "state", fs::perms::all);
  fs::permissions(root.path / "old" / "state" / "leases", fs::perms::all);
  rch::Agent old(root.path / "old");
  REQUIRE(old.run_job({"true"}));
  ::umask(saved);
  CHECK(mode_of(root.path / "old" / "state") == 0700);
  CHECK(mode_of(root.path / "old" / "state" / "leases") == 0700);
}
