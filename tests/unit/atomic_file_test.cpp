// Unit tests of core/store/atomic_file: replacement, modes, and that failures
// (missing directory, target is a directory, write cut off by RLIMIT_FSIZE)
// leave the original untouched and no temp file behind.
#include "core/store/atomic_file.hpp"
#include "tests/unit/temp_dir.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

using rch::test::TempDir;

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("write_file_atomic creates and replaces", "[atomic_file]") {
  TempDir dir;
  const fs::path target = dir.path / "plan.json";

  REQUIRE(rch::write_file_atomic(target, "first").ok());
  auto r = rch::read_file(target);
  REQUIRE(r.ok());
  CHECK(*r == "first");
  CHECK(mode_of(target) == 0644);

  REQUIRE(rch::write_file_atomic(target, std::string("sec\0ond", 7), 0600).ok());
  r = rch::read_file(target);
  REQUIRE(r.ok());
  CHECK(*r == std::string("sec\0ond", 7));
  CHECK(mode_of(target) == 0600);

  REQUIRE(rch::write_file_atomic(target, "").ok());
  CHECK(rch::read_file(target).value().empty());

  // Mode is exact, not filtered by the umask.
  const mode_t old = ::umask(077);
  REQUIRE(rch::write_file_atomic(dir.path / "tool", "#!/bin/sh\n", 0755).ok());
  ::umask(old);
  CHECK(mode_of(dir.path / "tool") == 0755);

  CHECK(entries(dir.path) == std::vector<std::string>{"plan.json", "tool"});
}

TEST_CASE("write_file_atomic works with a bare file name", "[atomic_file]") {
  TempDir dir;
  const fs::path cwd = fs::current_path();
  fs::current_path(dir.path);
  const auto r = rch::write_file_atomic("bare.txt", "x");
  fs::current_path(cwd);
  REQUIRE(r.ok());
  CHECK(rch::read_file(dir.path / "bare.txt").value() == "x");
}

TEST_CASE("write_file_atomic failures leave nothing behind", "[atomic_file]") {
  TempDir dir;

  SECTION("nonexistent directory") {
    const fs::path target = dir.path / "missing" / "plan.json";
    auto r = rch::write_file_atomic(target, "data");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains(target.string()));
    CHECK_THAT(r.error(), Catch::Contains("No such file or directory"));
    CHECK(entries(dir.path).empty());
  }

  SECTION("target is a directory: rename fails, directory untouched") {
    fs::create_directory(dir.path / "d");
    std::ofstream(dir.path / "d" / "inner") << "keep";
    auto r = rch::write_file_atomic(dir.path / "d", "data");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains((dir.path / "d").string()));
    CHECK_THAT(r.error(), Catch::Contains("rename"));
    CHECK(entries(dir.path) == std::vector<std::string>{"d"});
    CHECK(rch::read_file(dir.path / "d" / "inner").value() == "keep");
  }

  SECTION("unwritable directory") {
    if (::geteuid() == 0)
      SUCCEED("root ignores directory permissions; covered by the other sections");
    else {
      fs::create_directory(dir.path / "ro");
      std::ofstream(dir.path / "ro" / "f") << "original";
      fs::permissions(dir.path / "ro", fs::perms::owner_read | fs::perms::owner_exec);
      auto r = rch::write_file_atomic(dir.path / "ro" / "f", "new");
      fs::permissions(dir.path / "ro", fs::perms::owner_all);
      REQUIRE_FALSE(r.ok());
      CHECK_THAT(r.error(), Catch::Contains("Permission denied"));
      CHECK(rch::read_file(dir.path / "ro" / "f").value() == "original");
      CHECK(entries(dir.path / "ro") == std::vector<std::string>{"f"});
    }
  }

  SECTION("write cut off mid-way (file size limit): original intact, temp removed") {
    const fs::path target = dir.path / "state.json";
    REQUIRE(rch::write_file_atomic(target, "original").ok());
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // In a child, so the limit and the ignored SIGXFSZ do not leak into the test run.
      ::signal(SIGXFSZ, SIG_IGN);
      rlimit lim{4096, 4096};
      ::setrlimit(RLIMIT_FSIZE, &lim);
      auto r = rch::write_file_atomic(target, std::string(1 << 20, 'x'));
      const bool named = r.error().find(target.string()) != std::string::npos;
      ::_exit(r.ok() ? 1 : named ? 0 : 2);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(rch::read_file(target).value() == "original");
    CHECK(entries(dir.path) == std::vector<std::string>{"state.json"});
  }

  SECTION("empty file name") {
    auto r = rch::write_file_atomic(dir.path / "", "x");
    REQUIRE_FALSE(r.ok());
    CHECK(entries(dir.path).empty());
  }
}

TEST_CASE("read_file errors name the file", "[atomic_file]") {
  TempDir dir;
  auto r = rch::read_file(dir.path / "absent");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error(), Catch::Contains((dir.path / "absent").string()));
  CHECK_THAT(r.error(), Catch::Contains("No such file or directory"));
}
