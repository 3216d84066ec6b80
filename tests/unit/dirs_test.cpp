// Unit tests of core/store/dirs: exact modes whatever the umask, and the
// StrictModes-like check of every component down to a directory.
#include "core/store/dirs.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>

#include "tests/unit/temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

struct Umask {
  mode_t old;
  explicit Umask(mode_t m) : old(::umask(m)) {}
  ~Umask() { ::umask(old); }
};

}  // namespace

TEST_CASE("make_dirs gives every new directory exactly the mode asked, whatever the umask", "[dirs]") {
  rch::test::TempDir tmp;
  const Umask open_umask(0);
  REQUIRE(rch::make_dirs(tmp.path / "a/b/c", 0700).ok());
  CHECK(mode_of(tmp.path / "a") == 0700);
  CHECK(mode_of(tmp.path / "a/b/c") == 0700);
  const Umask strict_umask(077);
  REQUIRE(rch::make_dirs(tmp.path / "home/bin", 0755).ok());
  CHECK(mode_of(tmp.path / "home/bin") == 0755);
  SECTION("an existing directory keeps its mode") {
    REQUIRE(::chmod((tmp.path / "a").c_str(), 0750) == 0);
    REQUIRE(rch::make_dirs(tmp.path / "a", 0700).ok());
    CHECK(mode_of(tmp.path / "a") == 0750);
  }
  SECTION("a file in the way is named") {
    std::FILE* f = std::fopen((tmp.path / "file").c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
    auto r = rch::make_dirs(tmp.path / "file/sub", 0700);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains((tmp.path / "file").string() + " is not a directory"));
  }
}

TEST_CASE("check_trusted_dir accepts private paths and names the component that others can write", "[dirs]") {
  rch::test::TempDir tmp;
  const fs::path state = tmp.path / "shared/state";
  REQUIRE(rch::make_dirs(state, 0700).ok());
  REQUIRE(::chmod((tmp.path / "shared").c_str(), 0755) == 0);
  CHECK(rch::check_trusted_dir(state).ok());

  SECTION("a group-writable parent") {
    REQUIRE(::chmod((tmp.path / "shared").c_str(), 0775) == 0);
    auto r = rch::check_trusted_dir(state);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains((tmp.path / "shared").string() + " is writable by its group (mode 0775)"));
    CHECK_THAT(r.error(), Catch::Contains("chmod go-w " + (tmp.path / "shared").string()));
  }
  SECTION("a sticky world-writable parent (like /tmp) is fine when the next component is ours") {
    REQUIRE(::chmod((tmp.path / "shared").c_str(), 01777) == 0);
    CHECK(rch::check_trusted_dir(state).ok());
    SECTION("but not as the directory itself, where anyone can create names") {
      auto r = rch::check_trusted_dir(tmp.path / "shared");
      REQUIRE_FALSE(r.ok());
      CHECK_THAT(r.error(), Catch::Contains("is writable by others (mode 1777)"));
    }
  }
  SECTION("a world-writable parent without the sticky bit") {
    REQUIRE(::chmod((tmp.path / "shared").c_str(), 0777) == 0);
    CHECK_FALSE(rch::check_trusted_dir(state).ok());
  }
  SECTION("a component owned by another user") {
    if (::geteuid() != 0) {
      WARN("not root: cannot chown, section not run");
      return;
    }
    REQUIRE(::chown(state.c_str(), 65534, 65534) == 0);
    auto r = rch::check_trusted_dir(state);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains(state.string() + " is owned by"));
    CHECK_THAT(r.error(), Catch::Contains("fix: chown"));
  }
  SECTION("a symlink is judged by where it leads") {
    REQUIRE(::chmod((tmp.path / "shared").c_str(), 0777) == 0);
    fs::create_symlink(state, tmp.path / "link");
    auto r = rch::check_trusted_dir(tmp.path / "link");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error(), Catch::Contains("refusing to use " + (tmp.path / "link").string() + " (" + state.string()));
  }
  SECTION("make_trusted_dirs refuses a new directory under a writable parent") {
    REQUIRE(::chmod((tmp.path / "shared").c_str(), 0777) == 0);
    CHECK_FALSE(rch::make_trusted_dirs(tmp.path / "shared/cache", 0700).ok());
  }
}
