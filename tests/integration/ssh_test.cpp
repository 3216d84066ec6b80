// SshSession against the real sshd workers of scripts/testbed.sh
// ($RCH_TESTBED_DIR): exec, stdin, timeouts, uploads, host key policies,
// authentication and connection failures.
#include "core/ssh/session.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/config/workers.hpp"
#include "core/crypto/sha256.hpp"
#include "core/ssh/quote.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

fs::path testbed_dir() {
  const char* dir = std::getenv("RCH_TESTBED_DIR");
  INFO("run `bash scripts/testbed.sh up 4 DIR` and set RCH_TESTBED_DIR=DIR");
  REQUIRE(dir != nullptr);
  return dir;
}

std::vector<rch::WorkerConfig> testbed_workers() {
  auto workers = rch::load_workers(testbed_dir() / "workers.toml");
  INFO((workers ? "" : workers.error()));
  REQUIRE(workers.ok());
  REQUIRE(workers->size() >= 2);
  return *workers;
}

// Strict checking against the testbed's known_hosts; the user's ssh config is
// left out so the test does not depend on ~/.ssh.
rch::SshTarget target_for(const rch::WorkerConfig& w) {
  rch::SshTarget t;
  t.host = w.host;
  t.port = w.port;
  t.user = w.user;
  t.identity_file = w.identity_file;
  t.known_hosts_file = (testbed_dir() / "known_hosts").string();
  t.ssh_config_file = "none";
  t.connect_timeout_s = 5;
  return t;
}

std::unique_ptr<rch::SshSession> connect_ok(const rch::SshTarget& t) {
  auto s = rch::SshSession::connect(t);
  INFO((s ? "" : s.error()));
  REQUIRE(s.ok());
  return std::move(s).value();
}

rch::ExecResult exec_ok(rch::SshSession& s, const std::string& cmd, int timeout_s = 30, std::string_view input = {}) {
  auto r = s.exec(cmd, timeout_s, input);
  INFO(cmd << ": " << (r ? "" : r.error()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::string host_port(const rch::WorkerConfig& w) { return w.host + ":" + std::to_string(w.port); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
  REQUIRE(out.good());
}

using rch::test::TempDir;

// The known_hosts line of a worker (testbed.sh writes one per worker).
std::string known_hosts_line(const rch::WorkerConfig& w) {
  std::istringstream in(read_file(testbed_dir() / "known_hosts"));
  const std::string prefix = "[" + w.host + "]:" + std::to_string(w.port) + " ";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  FAIL("no known_hosts line for " << host_port(w));
  return {};
}

// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
int closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  close(fd);
  return ntohs(addr.sin_port);
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

fs::path testbed_script() {
  if (const char* src = std::getenv("RCH_SOURCE_DIR")) return fs::path(src) / "scripts" / "testbed.sh";
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "scripts" / "testbed.sh";
}

int run_testbed(const std::string& args) {
  const std::string cmd = "bash " + rch::shell_quote(testbed_script().string()) + " " + args + " >/dev/null";
  return std::system(cmd.c_str());
}

}  // namespace

TEST_CASE("exec on every testbed worker under strict host key checking", "[ssh]") {
  for (const auto& w : testbed_workers()) {
    CAPTURE(w.id);
    {
      auto s = connect_ok(target_for(w));
      CHECK(s->alive());
      CHECK(s->where() == w.user + "@" + host_port(w));
      const auto r = exec_ok(*s, rch::shell_join({"sh", "-c", "echo out; echo err >&2; exit 3"}));
      CHECK(r.exit_code == 3);
      CHECK(r.out == "out\n");
      CHECK(r.err == "err\n");
      CHECK_FALSE(r.timed_out);
      // The session serves many commands, and the remote user is the configured one.
      const auto who = exec_ok(*s, "id -un");
      CHECK(who.exit_code == 0);
      CHECK(who.out == w.user + "\n");
      CHECK(who.err.empty());
    }
  }
}

TEST_CASE("exec feeds stdin and collects large output without deadlock", "[ssh]") {
  const auto w = testbed_workers().front();
  auto t = target_for(w);
  t.max_output_bytes = 32 * 1024 * 1024;  // above every output below
  auto s = connect_ok(t);

  SECTION("small stdin, binary safe") {
    const std::string input("hello\nworld\0\xff tail", 18);
    const auto r = exec_ok(*s, "cat", 30, input);
    CHECK(r.exit_code == 0);
    CHECK(r.out == input);
  }
  SECTION("no stdin means immediate EOF") {
    const auto r = exec_ok(*s, "cat; echo done");
    CHECK(r.out == "done\n");
  }
  SECTION("8 MB echoed back while it is still being sent") {
    std::string input(8 * 1024 * 1024, '\0');
    std::mt19937 rng(42);
    for (auto& c : input) c = static_cast<char>(rng());
    const auto r = exec_ok(*s, "cat", 60, input);
    CHECK(r.exit_code == 0);
    CHECK(r.out.size() == input.size());
    CHECK(r.out == input);
  }
  SECTION("20 MB stdout and 5 MB stderr") {
    const auto r = exec_ok(*s, "head -c 20000000 /dev/zero; head -c 5000000 /dev/zero >&2; exit 7");
    CHECK(r.exit_code == 7);
    CHECK(r.out.size() == 20000000);
    CHECK(r.err.size() == 5000000);
  }
  SECTION("stdin keeps flowing after the command closed stdout and stderr") {
    const std::string input(3 * 1024 * 1024, 'y');
    const std::string file = rch::shell_quote(w.root + "/stdin-after-eof");
    const auto r = exec_ok(*s, "exec >/dev/null 2>&1; cat > " + file, 30, input);
    CHECK(r.exit_code == 0);
    CHECK_FALSE(r.timed_out);
    CHECK(exec_ok(*s, "wc -c < " + file + "; rm -f " + file).out == std::to_string(input.size()) + "\n");
  }
  SECTION("a command that ignores its stdin") {
    const auto r = exec_ok(*s, "echo ignored", 30, std::string(4 * 1024 * 1024, 'x'));
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ignored\n");
  }
  SECTION("killed by a signal reads as 128+N") {
    const auto r = exec_ok(*s, "kill -TERM $$");
    CHECK(r.exit_code == 128 + 15);
  }
}

TEST_CASE("output beyond max_output_bytes is drained and dropped; status and session survive", "[ssh][cap]") {
  const auto w = testbed_workers().front();
  auto t = target_for(w);
  t.max_output_bytes = 1024 * 1024;
  auto s = connect_ok(t);
  CHECK(s->max_output_bytes() == 1024 * 1024);

  SECTION("50 MB of stdout") {
    const auto start = Clock::now();
    const auto r = exec_ok(*s, "head -c 50M /dev/zero; echo tail >&2; exit 7", 60);
    const double took = seconds_since(start);
    CHECK(r.out.size() == 1024 * 1024);
    CHECK(r.out_truncated);
    CHECK(r.err == "tail\n");  // stderr kept whole, after stdout's excess
    CHECK_FALSE(r.err_truncated);
    CHECK(r.exit_code == 7);  // the command ran to its end: it was never blocked
    CHECK_FALSE(r.timed_out);
    CHECK(took < 30);
  }
  SECTION("3 MB of stderr") {
    const auto r = exec_ok(*s, "echo out; head -c 3M /dev/zero >&2");
    CHECK(r.out == "out\n");
    CHECK_FALSE(r.out_truncated);
    CHECK(r.err.size() == 1024 * 1024);
    CHECK(r.err_truncated);
    CHECK(r.exit_code == 0);
  }
  SECTION("exactly the cap is not truncated") {
    const auto r = exec_ok(*s, "head -c 1M /dev/zero");
    CHECK(r.out.size() == 1024 * 1024);
    CHECK_FALSE(r.out_truncated);
  }
  SECTION("endless output runs into the deadline") {
    const auto start = Clock::now();
    const auto r = exec_ok(*s, "cat /dev/zero", 2);
    const double took = seconds_since(start);
    CHECK(r.timed_out);
    CHECK(r.exit_code == -1);
    CHECK(r.out.size() == 1024 * 1024);
    CHECK(r.out_truncated);
    CHECK(took >= 1.9);
    CHECK(took < 5);
  }
  CHECK(s->alive());
  const auto again = exec_ok(*s, "echo again; exit 3");
  CHECK(again.out == "again\n");
  CHECK_FALSE(again.out_truncated);
  CHECK(again.exit_code == 3);
}

TEST_CASE("exec_streaming hands over output before the command ends, within the cap", "[ssh][stream]") {
  const auto w = testbed_workers().front();
  auto t = target_for(w);
  t.max_output_bytes = 64 * 1024;
  auto s = connect_ok(t);

  SECTION("a line arrives while the command still runs") {
    std::string out, err;
    double first_at = -1;
    const auto start = Clock::now();
    auto r = s->exec_streaming("echo first; sleep 2; echo second; echo oops >&2; exit 4", 30,
                               [&](bool is_stderr, std::string_view chunk) {
                                 if (first_at < 0 && !is_stderr) first_at = seconds_since(start);
                                 (is_stderr ? err : out).append(chunk);
                               });
    REQUIRE(r.ok());
    CHECK(first_at >= 0);
    CHECK(first_at < 1.5);  // before the sleep ended
    CHECK(seconds_since(start) >= 2);
    CHECK(out == "first\nsecond\n");
    CHECK(err == "oops\n");
    CHECK(r->out.empty());  // the sink had the bytes
    CHECK(r->exit_code == 4);
  }
  SECTION("the sink never gets more than the cap; the rest is drained") {
    std::size_t got = 0;
    auto r = s->exec_streaming("head -c 5M /dev/zero; echo done >&2", 30,
                               [&](bool is_stderr, std::string_view chunk) { got += is_stderr ? 0 : chunk.size(); });
    REQUIRE(r.ok());
    CHECK(got == 64 * 1024);
    CHECK(r->out_truncated);
    CHECK_FALSE(r->err_truncated);
    CHECK(r->exit_code == 0);
  }
  SECTION("a hung command times out as exec does") {
    std::string out;
    const auto start = Clock::now();
    auto r = s->exec_streaming("echo started; sleep 30", 1, [&](bool, std::string_view chunk) { out.append(chunk); });
    REQUIRE(r.ok());
    CHECK(r->timed_out);
    CHECK(r->exit_code == -1);
    CHECK(out == "started\n");
    CHECK(seconds_since(start) < 3);
  }
  CHECK(exec_ok(*s, "echo again").out == "again\n");
}

TEST_CASE("many short commands on one session keep every byte and status", "[ssh]") {
  const auto w = testbed_workers().front();
  auto s = connect_ok(target_for(w));
  // Output, EOF, exit status and close often arrive in one read: none may be lost.
  for (int i = 0; i < 100; ++i) {
    CAPTURE(i);
    const auto r = exec_ok(*s, "echo out" + std::to_string(i) + "; echo err >&2; exit " + std::to_string(i % 5));
    REQUIRE(r.out == "out" + std::to_string(i) + "\n");
    REQUIRE(r.err == "err\n");
    REQUIRE(r.exit_code == i % 5);
  }
}

TEST_CASE("exec timeout returns quickly and leaves the session usable", "[ssh]") {
  const auto w = testbed_workers().front();
  auto s = connect_ok(target_for(w));
  const auto start = Clock::now();
  const auto r = exec_ok(*s, "echo started; sleep 5", 1);
  const double took = seconds_since(start);
  CHECK(r.timed_out);
  CHECK(r.exit_code == -1);
  CHECK(r.out == "started\n");
  CHECK(took >= 0.9);
  CHECK(took < 2.5);
  CHECK(s->alive());
  const auto again = exec_ok(*s, "echo again");
  CHECK(again.out == "again\n");
  CHECK(again.exit_code == 0);
}

TEST_CASE("a timed-out command leaves none of its processes on the worker", "[ssh][guard]") {
  const auto w = testbed_workers().front();
  auto s = connect_ok(target_for(w));
  const std::string count = "pgrep -c -u \"$(id -u)\" -f '^sleep 43$' || true";
  REQUIRE(exec_ok(*s, count).out == "0\n");
  // A shell with a child that ignores SIGTERM (as a tool draining gracefully
  // might): sshd's signal to the session is not enough, the guard SIGKILLs.
  const auto r = exec_ok(*s, "sh -c \"trap '' TERM; sleep 43; echo done\"", 1);
  CHECK(r.timed_out);
  std::string left;
  for (int i = 0; i < 50 && left != "0\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = exec_ok(*s, count).out;
  }
  CHECK(left == "0\n");
  // Without stdin data the command reads /dev/null, not a stdin held open.
  const auto start = Clock::now();
  CHECK(exec_ok(*s, "cat; echo rc=$?", 10).out == "rc=0\n");
  CHECK(seconds_since(start) < 2);
}

TEST_CASE("an upload the worker stops taking fails as stalled after stall_timeout", "[ssh][stall]") {
  const auto w = testbed_workers().front();
  auto t = target_for(w);
  t.stall_timeout_s = 2;
  auto s = connect_ok(t);
  TempDir tmp;
  const fs::path local = tmp.path / "big.bin";
  write_file(local, std::string(20 * 1000 * 1000, 'x'));  // far beyond sshd's 2 MB window
  const auto start = Clock::now();
  // Reads nothing and stays: the window fills and nothing else comes back.
  auto r = s->exec_with_input_file("sleep 6", local, 60);
  const double took = seconds_since(start);
  INFO((r ? "" : r.error()));
  REQUIRE(r.ok());
  CHECK(r->timed_out);
  CHECK(r->stalled_s == 2);
  CHECK(took >= 1.9);
  CHECK(took < 4);
  CHECK_FALSE(s->alive());  // a hung worker's connection is dropped
  // A command that takes its input (a real upload) does not stall.
  auto s2 = connect_ok(t);
  auto ok = s2->exec_with_input_file("sleep 1; cat >/dev/null", local, 60);
  REQUIRE(ok.ok());
  CHECK_FALSE(ok->timed_out);
  CHECK(ok->exit_code == 0);
}

TEST_CASE("remote_home is the remote user's home directory", "[ssh]") {
  const auto w = testbed_workers().front();
  auto s = connect_ok(target_for(w));
  // The testbed runs on this machine, so the local passwd database knows the user.
  const passwd* pw = getpwnam(w.user.c_str());
  REQUIRE(pw != nullptr);
  CHECK(s->remote_home() == pw->pw_dir);
  CHECK(&s->remote_home() == &s->remote_home());
}

TEST_CASE("a 15 MB upload through exec_with_input_file arrives intact", "[ssh]") {
  const auto w = testbed_workers()[1];
  auto s = connect_ok(target_for(w));
  TempDir tmp;
  const fs::path local = tmp.path / "payload.bin";
  {
    std::string data(15 * 1000 * 1000, '\0');
    std::mt19937_64 rng(7);
    for (std::size_t i = 0; i + 8 <= data.size(); i += 8) {
      const auto v = rng();
      std::memcpy(&data[i], &v, 8);
    }
    write_file(local, data);
  }
  const auto expected = rch::sha256_file_hex(local);
  REQUIRE(expected.ok());

  const std::string remote = w.root + "/upload.bin";
  auto up = s->exec_with_input_file("cat > " + rch::shell_quote(remote), local, 60);
  INFO((up ? "" : up.error()));
  REQUIRE(up.ok());
  CHECK(up->exit_code == 0);
  CHECK(up->err.empty());

  const auto sum = exec_ok(*s, "sha256sum " + rch::shell_quote(remote) + " && rm -f " + rch::shell_quote(remote));
  REQUIRE(sum.exit_code == 0);
  CHECK(sum.out.substr(0, 64) == *expected);
}

TEST_CASE("exec_with_input_file of a missing local file is an error naming it", "[ssh]") {
  auto s = connect_ok(target_for(testbed_workers().front()));
  auto missing = s->exec_with_input_file("cat > /dev/null", "/nonexistent/rch-nope.bin", 10);
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error(), Catch::Contains("/nonexistent/rch-nope.bin"));
  CHECK(exec_ok(*s, "echo still").out == "still\n");
}

TEST_CASE("strict host key checking refuses an unknown host", "[ssh][hostkey]") {
  const auto workers = testbed_workers();
  const auto& w = workers[0];
  TempDir tmp;
  // Knows every worker but this one.
  std::string others;
  for (std::size_t i = 1; i < workers.size(); ++i) others += known_hosts_line(workers[i]) + "\n";
  const fs::path kh = tmp.path / "known_hosts";
  write_file(kh, others);

  auto t = target_for(w);
  t.known_hosts_file = kh.string();
  auto s = rch::SshSession::connect(t);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error(), Catch::Contains(host_port(w)));
  CHECK_THAT(s.error(), Catch::Contains("SHA256:"));
  CHECK_THAT(s.error(), Catch::Contains(kh.string()));
  CHECK_THAT(s.error(), Catch::Contains("ssh-keyscan -p " + std::to_string(w.port) + " " + w.host));
  CHECK(read_file(kh) == others);  // never written under strict

  SECTION("a missing known_hosts file is refused the same way") {
    t.known_hosts_file = (tmp.path / "absent").string();
    auto s2 = rch::SshSession::connect(t);
    REQUIRE_FALSE(s2.ok());
    CHECK_THAT(s2.error(), Catch::Contains(host_port(w)));
    CHECK_FALSE(fs::exists(tmp.path / "absent"));
  }
}

TEST_CASE("a changed host key is refused, also under accept_new", "[ssh][hostkey]") {
  const auto workers = testbed_workers();
  const auto& w = workers[0];
  // w's host:port with w2's key: what a man in the middle would look like.
  const std::string other = known_hosts_line(workers[1]);
  const std::string forged = "[" + w.host + "]:" + std::to_string(w.port) + other.substr(other.find(' '));
  TempDir tmp;
  const fs::path kh = tmp.path / "known_hosts";
  write_file(kh, forged + "\n");

  auto t = target_for(w);
  t.known_hosts_file = kh.string();
  const auto policy = GENERATE(rch::HostKeyPolicy::strict, rch::HostKeyPolicy::accept_new);
  t.host_key_policy = policy;
  auto s = rch::SshSession::connect(t);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error(), Catch::Contains(host_port(w)));
  CHECK_THAT(s.error(), Catch::Contains("CHANGED"));
  CHECK_THAT(s.error(), Catch::Contains("man-in-the-middle"));
  CHECK(read_file(kh) == forged + "\n");  // never "fixed" silently
}

TEST_CASE("a known_hosts entry of another key type is refused as a changed key", "[ssh][hostkey]") {
  const auto w = testbed_workers().front();
  TempDir tmp;
  const fs::path key = tmp.path / "ecdsa";
  const std::string keygen = "ssh-keygen -q -t ecdsa -N '' -f " + rch::shell_quote(key.string());
  REQUIRE(std::system(keygen.c_str()) == 0);
  std::string pub = read_file(key.string() + ".pub");
  pub = pub.substr(0, pub.find(' ', pub.find(' ') + 1));  // "ecdsa-sha2-nistp256 AAAA..."
  const fs::path kh = tmp.path / "known_hosts";
  write_file(kh, "[" + w.host + "]:" + std::to_string(w.port) + " " + pub + "\n");

  auto t = target_for(w);
  t.known_hosts_file = kh.string();
  t.host_key_policy = rch::HostKeyPolicy::accept_new;
  auto s = rch::SshSession::connect(t);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error(), Catch::Contains(host_port(w)));
  CHECK_THAT(s.error(), Catch::Contains("CHANGED"));
  CHECK_THAT(s.error(), Catch::Contains("man-in-the-middle"));
}

TEST_CASE("accept_new records an unknown host, then strict accepts it", "[ssh][hostkey]") {
  const auto w = testbed_workers()[2 % testbed_workers().size()];
  TempDir tmp;
  const fs::path kh = tmp.path / "known_hosts";
  write_file(kh, "");

  auto t = target_for(w);
  t.known_hosts_file = kh.string();
  t.host_key_policy = rch::HostKeyPolicy::accept_new;
  {
    auto s = connect_ok(t);
    CHECK(exec_ok(*s, "echo hi").out == "hi\n");
  }
  const std::string recorded = read_file(kh);
  CHECK_THAT(recorded, Catch::Contains("ssh-ed25519"));

  t.host_key_policy = rch::HostKeyPolicy::strict;
  auto again = connect_ok(t);
  CHECK(exec_ok(*again, "echo again").out == "again\n");
  CHECK(read_file(kh) == recorded);  // nothing added the second time
}

TEST_CASE("authentication failures are clear errors", "[ssh][auth]") {
  const auto w = testbed_workers().front();
  TempDir tmp;
  auto t = target_for(w);

  SECTION("a key the worker does not authorize") {
    const fs::path key = tmp.path / "id_wrong";
    const std::string keygen = "ssh-keygen -q -t ed25519 -N '' -f " + rch::shell_quote(key.string());
    REQUIRE(std::system(keygen.c_str()) == 0);
    t.identity_file = key.string();
    auto s = rch::SshSession::connect(t);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error(), Catch::Contains("authentication"));
    CHECK_THAT(s.error(), Catch::Contains(w.user + "@" + host_port(w)));
    CHECK_THAT(s.error(), Catch::Contains(key.string()));
  }
  SECTION("an identity file that does not exist") {
    t.identity_file = (tmp.path / "no_such_key").string();
    auto s = rch::SshSession::connect(t);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error(), Catch::Contains("no_such_key"));
    CHECK_THAT(s.error(), Catch::Contains(host_port(w)));
  }
  SECTION("no identity file, no agent, no authorized default key") {
    const char* agent = std::getenv("SSH_AUTH_SOCK");
    const std::string saved = agent != nullptr ? agent : "";
    unsetenv("SSH_AUTH_SOCK");
    t.identity_file.clear();
    auto s = rch::SshSession::connect(t);
    if (agent != nullptr) setenv("SSH_AUTH_SOCK", saved.c_str(), 1);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error(), Catch::Contains("authentication"));
    CHECK_THAT(s.error(), Catch::Contains("default keys"));
  }
  SECTION("an identity file that is not a key") {
    const fs::path junk = tmp.path / "junk_key";
    write_file(junk, "not a key\n");
    t.identity_file = junk.string();
    auto s = rch::SshSession::connect(t);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error(), Catch::Contains("junk_key"));
  }
}

TEST_CASE("without an identity file the key comes from ssh-agent", "[ssh][auth]") {
  const auto w = testbed_workers().front();
  TempDir tmp;
  const std::string sock = (tmp.path / "agent.sock").string();
  const pid_t agent = fork();
  REQUIRE(agent >= 0);
  if (agent == 0) {
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);  // it prints shell code to set its socket
    execlp("ssh-agent", "ssh-agent", "-D", "-a", sock.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Stops the agent (by its pid) and restores SSH_AUTH_SOCK however the test ends.
  struct AgentGuard {
    pid_t pid;
    std::string saved;
    bool had;
    ~AgentGuard() {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
      if (had)
        setenv("SSH_AUTH_SOCK", saved.c_str(), 1);
      else
        unsetenv("SSH_AUTH_SOCK");
    }
  } guard{agent, std::getenv("SSH_AUTH_SOCK") ? std::getenv("SSH_AUTH_SOCK") : "",
          std::getenv("SSH_AUTH_SOCK") != nullptr};
  for (int i = 0; i < 200 && !fs::exists(sock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(fs::exists(sock));
  setenv("SSH_AUTH_SOCK", sock.c_str(), 1);
  const std::string add = "ssh-add -q " + rch::shell_quote(w.identity_file) + " 2>/dev/null";
  REQUIRE(std::system(add.c_str()) == 0);

  auto t = target_for(w);
  t.identity_file.clear();
  auto s = connect_ok(t);
  CHECK(exec_ok(*s, "id -un").out == w.user + "\n");
}

TEST_CASE("connection failures come back within the connect timeout", "[ssh][connect]") {
  const auto w = testbed_workers().front();
  auto t = target_for(w);
  t.connect_timeout_s = 2;

  SECTION("a closed port") {
    t.port = closed_port();
    const auto start = Clock::now();
    auto s = rch::SshSession::connect(t);
    REQUIRE_FALSE(s.ok());
    CHECK(seconds_since(start) < 2.0);
    CHECK_THAT(s.error(), Catch::Contains("127.0.0.1:" + std::to_string(t.port)));
  }
  SECTION("a port that accepts TCP but never speaks SSH") {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd, 4) == 0);  // the kernel completes the handshake; nobody answers
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    t.port = ntohs(addr.sin_port);
    const auto start = Clock::now();
    auto s = rch::SshSession::connect(t);
    const double took = seconds_since(start);
    close(fd);
    REQUIRE_FALSE(s.ok());
    CHECK(took < 3.5);
    CHECK_THAT(s.error(), Catch::Contains("127.0.0.1:" + std::to_string(t.port)));
  }
}

TEST_CASE("the ssh config supplies HostName, User, Port and IdentityFile of an alias", "[ssh][config]") {
  const auto w = testbed_workers().front();
  TempDir tmp;
  const fs::path config = tmp.path / "ssh_config";
  write_file(config, "Host rch-testbed-alias\n  HostName " + w.host + "\n  User " + w.user + "\n  Port " +
                         std::to_string(w.port) + "\n  IdentityFile " + w.identity_file + "\n");
  rch::SshTarget t;
  t.host = "rch-testbed-alias";
  t.known_hosts_file = (testbed_dir() / "known_hosts").string();
  t.ssh_config_file = config.string();
  auto s = connect_ok(t);
  CHECK(s->where() == w.user + "@" + host_port(w));
  CHECK(exec_ok(*s, "id -un").out == w.user + "\n");
}

TEST_CASE("a worker that dies mid-exec is a lost connection, not a hang", "[ssh][fault]") {
  const auto workers = testbed_workers();
  const auto& w = workers.back();
  const std::string k = w.id.substr(1);  // testbed ids are wK
  const std::string dir = rch::shell_quote(testbed_dir().string());
  auto s = connect_ok(target_for(w));

  auto killer = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return run_testbed("stop " + k + " " + dir);
  });
  const auto start = Clock::now();
  auto r = s->exec("echo started; sleep 30", 60);
  const double took = seconds_since(start);
  const int stop_rc = killer.get();
  const int start_rc = run_testbed("start " + k + " " + dir);  // restore the testbed first
  CHECK(stop_rc == 0);
  CHECK(start_rc == 0);

  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error(), Catch::Contains("connection lost"));
  CHECK_THAT(r.error(), Catch::Contains(host_port(w)));
  CHECK(took < 10.0);
  CHECK_FALSE(s->alive());

  auto fresh = connect_ok(target_for(w));
  CHECK(exec_ok(*fresh, "echo back").out == "back\n");
}
