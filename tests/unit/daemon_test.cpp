// Unit tests of the rchd protocol reader and of core/agent/daemon_client
// against the real rchd binary ($RCH_BINARY_DIR/rchd), run in the foreground
// as a child of the test in a temporary root: status, drain with a running
// build, refusals, shutdown, pidfile exclusion and stale-pidfile takeover.
#include "core/agent/daemon_client.hpp"
#include "core/agent/daemon_protocol.hpp"
#include "core/util/json.hpp"

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

rch::Json parsed(const std::string& reply) {
  auto obj = rch::Json::parse(reply, nullptr, false);
  REQUIRE(obj.is_object());
  return obj;
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

TEST_CASE("the protocol reads typed requests and refuses the rest", "[daemon]") {
  namespace proto = rch::daemon_protocol;
  auto build = proto::parse_request(
      R"( {"cmd":"build","argv":["make","-j8","a\"b\\c\n\u00e9\ud83d\ude00"],"cwd":"/src","extra":null} )");
  REQUIRE(build.ok());
  const auto& b = std::get<proto::Build>(*build);
  REQUIRE(b.argv.size() == 3);
  CHECK(b.argv[2] == "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(b.cwd == "/src");
  auto drain = proto::parse_request(R"({"cmd":"drain","timeout":10.0})");
  REQUIRE(drain.ok());
  CHECK(std::get<proto::Drain>(*drain).timeout == 10);
  CHECK(std::get<proto::Shutdown>(*proto::parse_request(R"({"cmd":"shutdown","force":true})")).force);
  CHECK_FALSE(std::get<proto::Shutdown>(*proto::parse_request(R"({"cmd":"shutdown"})")).force);

  // What the daemon encodes, it reads back.
  for (const proto::Request& request :
       {proto::Request{proto::Status{}}, proto::Request{proto::Drain{5}}, proto::Request{proto::Shutdown{true}},
        proto::Request{proto::Build{{"sh", "-c", "echo \"x\""}, "/tmp"}}}) {
    auto again = proto::parse_request(proto::encode(request));
    REQUIRE(again.ok());
    CHECK(again->index() == request.index());
  }

  for (const char* bad :
       {"", "[]", "{", "{\"cmd\":\"status\",}", "{\"cmd\":01}", "{\"cmd\":\"\\x\"}", "{\"cmd\":\"\\ud800\"}",
        "{\"cmd\":\"status\",\"cmd\":\"drain\"}", "{\"cmd\":\"status\"} x", "{cmd:1}", "{\"cmd\":\"raw\ttab\"}",
        "{\"cmd\":\"drain\",\"timeout\":1.5}", "{\"cmd\":\"drain\",\"timeout\":-1}",
        "{\"cmd\":\"shutdown\",\"force\":1}", "{\"cmd\":\"build\",\"argv\":[1]}", "{\"cmd\":\"build\",\"argv\":[\"\"]}",
        "{\"cmd\":true}", "{}"}) {
    INFO("input: " << bad);
    CHECK_FALSE(proto::parse_request(bad).ok());
  }
  auto err = proto::parse_request("{\"cmd\":}");
  REQUIRE_FALSE(err.ok());
  CHECK(err.error().find("invalid JSON at offset") != std::string::npos);
  CHECK(proto::parse_request(R"({"cmd":"status","cmd":"drain"})").error() == "duplicate key \"cmd\"");
  CHECK(proto::parse_request(R"({"cmd":"drain","timeout":"soon"})").error() ==
        "field \"timeout\" must be a whole number from 0 to 31536000");

  // Replies: a refusal is the daemon's message; a malformed reply quotes the line.
  CHECK(proto::parse_ok_reply(proto::encode(proto::Refusal{"draining", {}})).error() == "rchd: draining");
  CHECK(proto::parse_status_reply(R"({"ok":true,"pid":"x"})").error().find("bad status reply") != std::string::npos);
  auto st =
      proto::parse_status_reply(proto::encode(proto::StatusReply{42, "1.2.3", true, 2, "/r", "/r/daemon", 7, "x"}));
  REQUIRE(st.ok());
  CHECK((st->pid == 42 && st->version == "1.2.3" && st->draining && st->active_builds == 2 && st->disk_free_mb == 7));
  CHECK(st->agent_error == "x");
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
  CHECK(obj["root"].get<std::string>() == root.path.string());
  CHECK(slurp(root.pidfile()) == std::to_string(d.pid()) + "\n");
  CHECK((fs::status(root.socket()).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
}

TEST_CASE("drain counts a running build until it ends and refuses new builds meanwhile", "[daemon]") {
  TempRoot root;
  Daemon d(root);
  const auto build = parsed(request(root, R"({"cmd":"build","argv":["sleep","2"]})"));
  REQUIRE(build["ok"].get<bool>());
  CHECK(build.contains("job"));
  // The reply comes once the job holds its lease: no waiting needed here.
  CHECK(status_of(root).active_builds == 1);

  const auto started = std::chrono::steady_clock::now();
  const auto drain = parsed(request(root, R"({"cmd":"drain","timeout":10})"));
  CHECK(drain["ok"].get<bool>());
  CHECK(drain["draining"].get<bool>());
  CHECK(drain["active_builds"].get<int>() == 1);
  auto st = status_of(root);
  CHECK(st.draining);
  CHECK(st.active_builds == 1);

  const auto refused = parsed(request(root, R"({"cmd":"build","argv":["true"]})"));
  CHECK_FALSE(refused["ok"].get<bool>());
  CHECK(refused["error"].get<std::string>() == "draining");

  REQUIRE(eventually([&] { return status_of(root).active_builds == 0; }));
  CHECK(std::chrono::steady_clock::now() - started > 1s);  // it did wait for sleep 2
  CHECK(status_of(root).draining);

  REQUIRE(rch::daemon_undrain(root.socket()).ok());
  CHECK_FALSE(status_of(root).draining);
  const auto again = parsed(request(root, R"({"cmd":"build","argv":["true"]})"));
  CHECK(again["ok"].get<bool>());
  CHECK(rch::daemon_drain(root.socket()).ok());
  CHECK(status_of(root).draining);
}

TEST_CASE("a build whose command cannot run is refused and not reported as started", "[daemon]") {
  TempRoot root;
  Daemon d(root);
  const auto missing = parsed(request(root, R"({"cmd":"build","argv":["rch-no-such-command-xyz"]})"));
  CHECK_FALSE(missing["ok"].get<bool>());
  CHECK(missing["error"].get<std::string>().find("rch-no-such-command-xyz") != std::string::npos);
  for (const char* bad : {R"({"cmd":"build"})", R"({"cmd":"build","argv":[]})", R"({"cmd":"build","argv":"ls"})",
                          R"({"cmd":"build","argv":["ls"],"cwd":"relative"})"}) {
    INFO(bad);
    CHECK_FALSE(parsed(request(root, bad))["ok"].get<bool>());
  }
  CHECK(status_of(root).active_builds == 0);
}

TEST_CASE("shutdown is refused while builds are active and accepted with force or when idle", "[daemon]") {
  TempRoot root;
  SECTION("builds active") {
    Daemon d(root);
    REQUIRE(parsed(request(root, R"({"cmd":"build","argv":["sleep","30"]})"))["ok"].get<bool>());
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
  CHECK_FALSE(bad["ok"].get<bool>());
  CHECK(bad["error"].get<std::string>().find("invalid JSON") != std::string::npos);
  const auto unknown = parsed(request(root, R"({"cmd":"frobnicate"})"));
  CHECK_FALSE(unknown["ok"].get<bool>());
  CHECK(unknown["error"].get<std::string>().find("frobnicate") != std::string::npos);
  CHECK_FALSE(parsed(request(root, R"({"nocmd":1})"))["ok"].get<bool>());
  CHECK_FALSE(parsed(request(root, R"({"cmd":"drain","timeout":"soon"})"))["ok"].get<bool>());

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
  CHECK(parsed(replies.substr(0, nl)).contains("job"));
  CHECK(parsed(replies.substr(nl + 1, replies.size() - nl - 2))["pid"].get<int>() == d.pid());

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
