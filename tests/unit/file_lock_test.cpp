// Unit tests of core/store/file_lock: holder info, contention from another
// process and from a second descriptor in this one, release on exit and kill.
#include "core/store/file_lock.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "core/store/atomic_file.hpp"
#include "tests/unit/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

using rch::test::TempDir;

// A child process that takes the lock, reports through a pipe, and holds it
// until told to exit (or is killed).
class Holder {
 public:
  Holder(const fs::path& path, const std::string& purpose) {
    int ready[2], go[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(go) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      auto lock = rch::FileLock::try_acquire(path, purpose);
      const char status = lock.ok() ? 'L' : 'F';
      (void)!::write(ready[1], &status, 1);
      char c;
      (void)!::read(go[0], &c, 1);  // returns when the parent writes or dies
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(go[0]);
    go_ = go[1];
    char status = 0;
    REQUIRE(::read(ready[0], &status, 1) == 1);
    ::close(ready[0]);
    REQUIRE(status == 'L');
  }
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;
  ~Holder() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    if (go_ >= 0) ::close(go_);
  }
  pid_t pid() const { return pid_; }
  void release() {
    (void)!::write(go_, "x", 1);
    wait();
  }
  void kill9() {
    ::kill(pid_, SIGKILL);
    wait();
  }

 private:
  void wait() {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  pid_t pid_ = -1;
  int go_ = -1;
};

}  // namespace

TEST_CASE("FileLock records its holder and creates parent directories", "[file_lock]") {
  TempDir dir;
  const fs::path path = dir.path / "data" / "rch" / "update.lock";
  auto lock = rch::FileLock::try_acquire(path, "rch update");
  REQUIRE(lock.ok());
  CHECK(lock->path() == path);
  const std::string info = rch::read_file(path).value();
  const std::regex line(
      R"(pid=(\d+) user=\S+ host=\S+ since=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z purpose=rch update\n)");
  std::smatch m;
  REQUIRE(std::regex_match(info, m, line));
  CHECK(m[1] == std::to_string(::getpid()));
}

TEST_CASE("FileLock is refused while another process holds it", "[file_lock]") {
  TempDir dir;
  const fs::path path = dir.path / "fleet.lock";
  Holder holder(path, "rch fleet deploy");

  auto r = rch::FileLock::try_acquire(path, "second");
  REQUIRE_FALSE(r.ok());
  const std::regex msg(std::regex_replace(path.string(), std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                       R"( is held by pid )" + std::to_string(holder.pid()) +
                       R"( \(\S+@\S+, since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z, rch fleet deploy\))");
  CHECK(std::regex_match(r.error(), msg));
  INFO(r.error());

  SECTION("acquire with a timeout gives up and says so") {
    const auto start = std::chrono::steady_clock::now();
    auto t = rch::FileLock::acquire(path, "second", 150ms);
    const auto waited = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(t.ok());
    CHECK_THAT(t.error(), Catch::Contains("is held by pid " + std::to_string(holder.pid())));
    CHECK_THAT(t.error(), Catch::Contains("gave up after 150 ms"));
    CHECK(waited >= 150ms);
    CHECK(waited < 2s);
  }
  SECTION("the lock frees when the holder exits") {
    holder.release();
    auto again = rch::FileLock::try_acquire(path, "after exit");
    REQUIRE(again.ok());
    CHECK_THAT(rch::read_file(path).value(), Catch::Contains("purpose=after exit\n"));
  }
  SECTION("the lock frees when the holder is killed") {
    holder.kill9();
    CHECK(rch::FileLock::try_acquire(path, "after kill").ok());
  }
}

TEST_CASE("acquire waits for a holder that lets go", "[file_lock]") {
  TempDir dir;
  const fs::path path = dir.path / "update.lock";
  Holder holder(path, "slow");
  const pid_t killer = ::fork();
  REQUIRE(killer >= 0);
  if (killer == 0) {
    ::usleep(150'000);
    ::kill(holder.pid(), SIGKILL);
    ::_exit(0);
  }
  auto r = rch::FileLock::acquire(path, "waiter", 5s);
  int st = 0;
  ::waitpid(killer, &st, 0);
  REQUIRE(r.ok());
}

TEST_CASE("a second descriptor in the same process is refused", "[file_lock]") {
  TempDir dir;
  const fs::path path = dir.path / "fleet.lock";
  auto first = rch::FileLock::try_acquire(path, "first");
  REQUIRE(first.ok());
  auto second = rch::FileLock::try_acquire(path, "second");
  REQUIRE_FALSE(second.ok());
  CHECK_THAT(second.error(), Catch::Contains("is held by pid " + std::to_string(::getpid())));
  CHECK_THAT(second.error(), Catch::Contains(", first)"));

  SECTION("moving keeps the lock; destroying releases it, the file stays") {
    rch::FileLock moved = std::move(first).value();
    CHECK_FALSE(rch::FileLock::try_acquire(path, "third").ok());
    { rch::FileLock gone = std::move(moved); }
    CHECK(fs::exists(path));
    CHECK(rch::FileLock::try_acquire(path, "fourth").ok());
  }
  SECTION("move-assigning over a held lock releases the old one") {
    auto other = rch::FileLock::try_acquire(dir.path / "other.lock", "other");
    REQUIRE(other.ok());
    rch::FileLock a = std::move(first).value();
    a = std::move(other).value();
    CHECK(rch::FileLock::try_acquire(path, "fifth").ok());
    CHECK_FALSE(rch::FileLock::try_acquire(dir.path / "other.lock", "x").ok());
  }
}

TEST_CASE("a lock file whose holder wrote nothing still reports contention", "[file_lock]") {
  TempDir dir;
  const fs::path path = dir.path / "x.lock";
  auto first = rch::FileLock::try_acquire(path, "p");
  REQUIRE(first.ok());
  fs::resize_file(path, 0);
  auto second = rch::FileLock::try_acquire(path, "q");
  REQUIRE_FALSE(second.ok());
  CHECK(second.error() == path.string() + " is held by another process");
}

TEST_CASE("FileLock errors that are not contention are not waited out", "[file_lock]") {
  TempDir dir;
  std::ofstream(dir.path / "plain") << "x";
  const auto start = std::chrono::steady_clock::now();
  auto r = rch::FileLock::acquire(dir.path / "plain" / "sub" / "a.lock", "p", 5s);
  REQUIRE_FALSE(r.ok());
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  CHECK_THAT(r.error(), Catch::Contains("cannot lock"));
}

TEST_CASE("purpose with a newline stays on one line", "[file_lock]") {
  TempDir dir;
  const fs::path path = dir.path / "n.lock";
  auto lock = rch::FileLock::try_acquire(path, "two\nlines");
  REQUIRE(lock.ok());
  auto other = rch::FileLock::try_acquire(path, "x");
  REQUIRE_FALSE(other.ok());
  CHECK_THAT(other.error(), Catch::EndsWith(", two lines)"));
}
