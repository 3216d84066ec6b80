// Unit tests of the rchd protocol reader and of core/agent/daemon_client
// against the real rchd binary ($RCH_BINARY_DIR/rchd), run in the foreground
// as a child of the test in a temporary root: status, drain with a running
// build, refusals, shutdown, pidfile exclusion and stale-pidfile takeover.
#include "core/agent/daemon_client.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/agent/agent.hpp"
#include "core/version/build_info.hpp"
#include "tests/unit/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

fs::path rchd_binary() {
  if (const char* dir = std::getenv("RCH_BINARY_DIR"); dir != nullptr && *dir != '\0') return fs::path(dir) / "rchd";
  // Run by hand: the unit test binary lives in <build>/tests/.
  return fs::canonical("/proc/self/exe").parent_path().parent_path() / "rchd";
}

// A short temporary root: a Unix socket path must fit in 108 bytes.
struct TempRoot : rch::test::TempDir {
  TempRoot() : TempDir("rchd-test-", "/tmp") {}  // a Unix socket path must stay short
  fs::path socket() const { return path / "rchd.sock"; }
  fs::path pidfile() const { return path / "rchd.pid"; }
};

template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Waits up to `limit` for pid to exit; its wait status, or nullopt.
std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

// `rchd run --foreground` in a temp root as a child of the test, its stderr
// in <root>/stderr.log. Stopped with SIGTERM (then SIGKILL) if still running.
class Daemon {
 public:
  explicit Daemon(const TempRoot& root, bool wait_ready = true) : root_(root.path) {
    const std::string bin = rchd_binary().string();
    const std::string dir = root.path.string();
    const std::string err = (root.path / "stderr.log").string();
    INFO("rchd binary: " << bin << " (set RCH_BINARY_DIR to the build directory)");
    REQUIRE(fs::exists(bin));
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) ::dup2(fd, STDERR_FILENO);
      ::execl(bin.c_str(), bin.c_str(), "run", "--root", dir.c_str(), "--foreground", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (wait_ready) {
      REQUIRE(eventually([&] {
        auto st = rch::daemon_status(root.socket());
        return st.ok() && st->running;
      }));
    }
  }
  ~Daemon() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!wait_exit(pid_, 5000ms)) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  // Reaps the daemon; its wait status, or nullopt if it is still running.
  std::optional<int> exit_status(std::chrono::milliseconds limit) {
    auto status = wait_exit(pid_, limit);
    if (status) pid_ = -1;
    return status;
  }
  std::string log() const { return slurp(root_ / "stderr.log"); }

 private:
  fs::path root_;
  pid_t pid_ = -1;
};

std::string request(const TempRoot& root, const std::string& line) {
  auto reply = rch::daemon_request(root.socket(), line, 5000ms);
  REQUIRE(reply.ok());
  return *reply;
}

rch::FlatJsonObject parsed(const std::string& reply) {
  auto obj = rch::parse_flat_json(reply);
  REQUIRE(obj.ok());
  return *obj;
}

rch::DaemonStatus status_of(const TempRoot& root) {
  auto st = rch::daemon_status(root.socket());
  REQUIRE(st.ok());
  return *st;
}

// The pid of the (only) job holding a lease in the daemon's agent root.
pid_t leased_job_pid(const TempRoot& root) {
  std::error_code ec;
  for (fs::directory_iterator it(root.path / "daemon" / "state" / "leases", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string text = slurp(it->path());
    const auto at = text.find("\"job_pid\":");
    if (at != std::string::npos) return static_cast<pid_t>(std::atol(text.c_str() + at + 10));
  }
  return 0;
}

}  // namespace

TEST_CASE("the flat JSON reader takes values and escapes and refuses the rest", "[daemon]") {
  auto obj = rch::parse_flat_json(
      R"( {"cmd":"build","argv":["make","-j8","a\"b\\c\n\u00e9\ud83d\ude00"],"force":true,"n":-1.5e2,"z":null} )");
  REQUIRE(obj.ok());
  CHECK(obj->get_string("cmd")->value() == "build");
  const auto argv = obj->get_strings("argv")->value();
  REQUIRE(argv.size() == 3);
  CHECK(argv[2] == "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(obj->get_bool("force")->value());
  CHECK(obj->get_number("n")->value() == -150.0);
  CHECK(obj->find("z")->kind == rch::JsonValue::Kind::null);
  CHECK_FALSE(obj->get_bool("absent")->has_value());
  CHECK_FALSE(obj->get_bool("cmd").ok());  // present with another type is an error
  CHECK_FALSE(obj->get_integer("n", 0, 10).ok());
  CHECK(rch::parse_flat_json("{}").ok());

  for (const char* bad :
       {"", "[]", "{", "{\"a\":1,}", "{\"a\":{}}", "{\"a\":[1]}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":\"\\x\"}",
        "{\"a\":\"\\ud800\"}", "{\"a\":1,\"a\":2}", "{\"a\":1} x", "{a:1}", "{\"a\":tru}", "{\"a\":\"raw\ttab\"}"}) {
    INFO("input: " << bad);
    CHECK_FALSE(rch::parse_flat_json(bad).ok());
  }
  auto err = rch::parse_flat_json("{\"a\":}");
  REQUIRE_FALSE(err.ok());
  CHECK(err.error().find("offset 5") != std::string::npos);
}

TEST_CASE("daemon_status says not running when there is no daemon", "[daemon]") {
  TempRoot root;
  CHECK(rch::daemon_socket_path(root.path) == root.socket());
  auto st = rch::daemon_status(root.socket());
  REQUIRE(st.ok());
  CHECK_FALSE(st->running);

  // A socket file nobody listens on, as a daemon killed with -9 leaves it.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, root.socket().c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
  st = rch::daemon_status(root.socket());
  REQUIRE(st.ok());
  CHECK_FALSE(st->running);
  CHECK(rch::daemon_shutdown(root.socket(), false, 1s).ok());  // nothing to stop
  CHECK_FALSE(rch::daemon_drain(root.socket()).ok());          // nothing to drain: say so
}

TEST_CASE("rchd reports its status", "[daemon]") {
  TempRoot root;
  Daemon d(root);
  const auto st = status_of(root);
  CHECK(st.running);
  CHECK(st.pid == d.pid());
  CHECK(st.version == rch::build_version());
  CHECK_FALSE(st.draining);
  CHECK(st.active_builds == 0);

  const auto obj = parsed(request(root, R"({"cmd":"status"})"));
  CHECK(obj.get_string("root")->value() == root.path.string());
  CHECK(slurp(root.pidfile()) == std::to_string(d.pid()) + "\n");
  CHECK((fs::status(root.socket()).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
}

TEST_CASE("drain counts a running build until it ends and refuses new builds meanwhile", "[daemon]") {
  TempRoot root;
  Daemon d(root);
  const auto build = parsed(request(root, R"({"cmd":"build","argv":["sleep","2"]})"));
  REQUIRE(build.get_bool("ok")->value());
  CHECK(build.get_integer("job", 1, 1 << 30)->has_value());
  // The reply comes once the job holds its lease: no waiting needed here.
  CHECK(status_of(root).active_builds == 1);

  const auto started = std::chrono::steady_clock::now();
  const auto drain = parsed(request(root, R"({"cmd":"drain","timeout":10})"));
  CHECK(drain.get_bool("ok")->value());
  CHECK(drain.get_bool("draining")->value());
  CHECK(drain.get_integer("active_builds", 0, 100)->value() == 1);
  auto st = status_of(root);
  CHECK(st.draining);
  CHECK(st.active_builds == 1);

  const auto refused = parsed(request(root, R"({"cmd":"build","argv":["true"]})"));
  CHECK_FALSE(refused.get_bool("ok")->value());
  CHECK(refused.get_string("error")->value() == "draining");

  REQUIRE(eventually([&] { return status_of(root).active_builds == 0; }));
  CHECK(std::chrono::steady_clock::now() - started > 1s);  // it did wait for sleep 2
  CHECK(status_of(root).draining);

  REQUIRE(rch::daemon_undrain(root.socket()).ok());
  CHECK_FALSE(status_of(root).draining);
  const auto again = parsed(request(root, R"({"cmd":"build","argv":["true"]})"));
  CHECK(again.get_bool("ok")->value());
  CHECK(rch::daemon_drain(root.socket()).ok());
  CHECK(status_of(root).draining);
}

TEST_CASE("a build whose command cannot run is refused and not reported as started", "[daemon]") {
  TempRoot root;
  Daemon d(root);
  const auto missing = parsed(request(root, R"({"cmd":"build","argv":["rch-no-such-command-xyz"]})"));
  CHECK_FALSE(missing.get_bool("ok")->value());
  CHECK(missing.get_string("error")->value().find("rch-no-such-command-xyz") != std::string::npos);
  for (const char* bad : {R"({"cmd":"build"})", R"({"cmd":"build","argv":[]})", R"({"cmd":"build","argv":"ls"})",
                          R"({"cmd":"build","argv":["ls"],"cwd":"relative"})"}) {
    INFO(bad);
    CHECK_FALSE(parsed(request(root, bad)).get_bool("ok")->value());
  }
  CHECK(status_of(root).active_builds == 0);
}

TEST_CASE("shutdown is refused while builds are active and accepted with force or when idle", "[daemon]") {
  TempRoot root;
  SECTION("builds active") {
    Daemon d(root);
    REQUIRE(parsed(request(root, R"({"cmd":"build","argv":["sleep","30"]})")).get_bool("ok")->value());
    auto refused = rch::daemon_shutdown(root.socket(), false, 5s);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().find("builds active") != std::string::npos);
    CHECK(status_of(root).running);

    REQUIRE(rch::daemon_shutdown(root.socket(), true, 5s).ok());
    auto status = d.exit_status(5000ms);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK_FALSE(fs::exists(root.socket()));
    CHECK_FALSE(fs::exists(root.pidfile()));
    // The build outlives the daemon and keeps its lease, so the next
    // daemon's drain still waits for it.
    rch::Agent agent(root.path / "daemon");
    CHECK(agent.active_leases() == 1);
    const pid_t job = leased_job_pid(root);
    REQUIRE(job > 0);
    REQUIRE(::kill(job, SIGKILL) == 0);
    CHECK(eventually([&] { return agent.active_leases() == 0; }));
  }
  SECTION("idle") {
    Daemon d(root);
    REQUIRE(rch::daemon_shutdown(root.socket(), false, 5s).ok());
    auto status = d.exit_status(5000ms);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK_FALSE(fs::exists(root.socket()));
    CHECK_FALSE(fs::exists(root.pidfile()));
    CHECK_FALSE(status_of(root).running);
  }
}

TEST_CASE("a second rchd on the same root is refused and names the running one", "[daemon]") {
  TempRoot root;
  Daemon first(root);
  Daemon second(root, false);
  auto status = second.exit_status(5000ms);
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 1);
  const std::string log = second.log();
  INFO(log);
  CHECK(log.find("another rchd (pid " + std::to_string(first.pid()) + ")") != std::string::npos);
  CHECK(status_of(root).pid == first.pid());  // the first one is untouched
  CHECK(slurp(root.pidfile()) == std::to_string(first.pid()) + "\n");
}

TEST_CASE("a pidfile left by a dead rchd is taken over", "[daemon]") {
  TempRoot root;
  const pid_t dead = ::fork();
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  REQUIRE(::waitpid(dead, nullptr, 0) == dead);
  { std::ofstream(root.pidfile()) << dead << "\n"; }

  Daemon d(root);
  CHECK(status_of(root).pid == d.pid());
  CHECK(slurp(root.pidfile()) == std::to_string(d.pid()) + "\n");
  CHECK(d.log().find("of pid " + std::to_string(dead) + ", which is no longer running") != std::string::npos);
}

TEST_CASE("rchd survives bad requests and clients that vanish mid-line", "[daemon]") {
  TempRoot root;
  Daemon d(root);
  const auto bad = parsed(request(root, "not json"));
  CHECK_FALSE(bad.get_bool("ok")->value());
  CHECK(bad.get_string("error")->value().find("invalid JSON") != std::string::npos);
  const auto unknown = parsed(request(root, R"({"cmd":"frobnicate"})"));
  CHECK_FALSE(unknown.get_bool("ok")->value());
  CHECK(unknown.get_string("error")->value().find("frobnicate") != std::string::npos);
  CHECK_FALSE(parsed(request(root, R"({"nocmd":1})")).get_bool("ok")->value());
  CHECK_FALSE(parsed(request(root, R"({"cmd":"drain","timeout":"soon"})")).get_bool("ok")->value());

  for (int i = 0; i < 3; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, root.socket().c_str());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    const char partial[] = "{\"cmd\":\"shut";
    REQUIRE(::write(fd, partial, sizeof partial - 1) == static_cast<ssize_t>(sizeof partial - 1));
    ::close(fd);
  }
  // Two requests on one connection get two replies, in order.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, root.socket().c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string two = "{\"cmd\":\"build\",\"argv\":[\"true\"]}\n{\"cmd\":\"status\"}\n";
  REQUIRE(::write(fd, two.data(), two.size()) == static_cast<ssize_t>(two.size()));
  ::shutdown(fd, SHUT_WR);
  std::string replies;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) replies.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const auto nl = replies.find('\n');
  REQUIRE(nl != std::string::npos);
  CHECK(parsed(replies.substr(0, nl)).get_integer("job", 1, 1 << 30)->has_value());
  CHECK(parsed(replies.substr(nl + 1, replies.size() - nl - 2)).get_integer("pid", 1, 1 << 30)->value() == d.pid());

  CHECK(status_of(root).running);
  CHECK(d.pid() > 0);
  CHECK_FALSE(d.exit_status(0ms));
}

TEST_CASE("SIGTERM ends rchd cleanly", "[daemon]") {
  TempRoot root;
  Daemon d(root);
  REQUIRE(::kill(d.pid(), SIGTERM) == 0);
  auto status = d.exit_status(5000ms);
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK_FALSE(fs::exists(root.socket()));
  CHECK_FALSE(fs::exists(root.pidfile()));
  CHECK(d.log().find("exited cleanly") != std::string::npos);
}
