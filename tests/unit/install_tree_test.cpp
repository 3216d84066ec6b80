// The install tree's primitives (core/store/install_tree), which rch update
// switches versions with: each checked for what it promises and for the error
// that names the path.
#include "core/store/install_tree.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/unit/temp_dir.hpp"

namespace fs = std::filesystem;
using rch::test::TempDir;

namespace {
void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST_CASE("make_private_temp_dir makes a 0700 dir under a trusted parent it creates", "[install_tree]") {
  TempDir tmp;
  auto dir = rch::make_private_temp_dir(tmp.path / "staging", ".update-");
  REQUIRE(dir.ok());
  CHECK(dir->parent_path() == tmp.path / "staging");
  CHECK(dir->filename().string().rfind(".update-", 0) == 0);
  CHECK((fs::status(*dir).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK_FALSE(rch::make_private_temp_dir(tmp.path, "a/b").ok());
  ::chmod(tmp.path.c_str(), 0777);  // others may write: not a place to stage binaries
  auto refused = rch::make_private_temp_dir(tmp.path / "other", "x");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().find(tmp.path.string()) != std::string::npos);
  ::chmod(tmp.path.c_str(), 0700);
}

TEST_CASE("rename_durable and exchange_paths move names, errors name both paths", "[install_tree]") {
  TempDir tmp;
  write(tmp.path / "a", "A");
  write(tmp.path / "b", "B");
  REQUIRE(rch::rename_durable(tmp.path / "a", tmp.path / "c").ok());
  CHECK_FALSE(fs::exists(tmp.path / "a"));
  CHECK(read(tmp.path / "c") == "A");
  auto missing = rch::rename_durable(tmp.path / "nope", tmp.path / "d");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().find((tmp.path / "nope").string()) != std::string::npos);

  bool unsupported = true;
  REQUIRE(rch::exchange_paths(tmp.path / "b", tmp.path / "c", &unsupported).ok());
  CHECK_FALSE(unsupported);
  CHECK(read(tmp.path / "b") == "A");
  CHECK(read(tmp.path / "c") == "B");
  auto gone = rch::exchange_paths(tmp.path / "b", tmp.path / "nope", &unsupported);
  CHECK_FALSE(gone.ok());
  CHECK_FALSE(unsupported);  // ENOENT is not "the filesystem cannot"
}

TEST_CASE("replace_symlink swaps a link in one rename and leaves no staging link", "[install_tree]") {
  TempDir tmp;
  const fs::path link = tmp.path / "current";
  REQUIRE(rch::replace_symlink("versions/v1", link).ok());
  CHECK(*rch::read_link(link) == "versions/v1");
  REQUIRE(rch::replace_symlink("versions/v2", link).ok());
  CHECK(*rch::read_link(link) == "versions/v2");
  for (const auto& e : fs::directory_iterator(tmp.path)) CHECK(e.path().filename() == "current");
  auto bad = rch::replace_symlink("x", tmp.path / "no-such-dir" / "current");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().find("no-such-dir") != std::string::npos);
  CHECK_FALSE(rch::read_link(tmp.path / "absent").ok());
}

TEST_CASE("path_kind does not follow links; remove_file and remove_tree accept absent paths", "[install_tree]") {
  TempDir tmp;
  write(tmp.path / "f", "x");
  fs::create_directory(tmp.path / "d");
  fs::create_symlink(tmp.path / "d", tmp.path / "l");
  CHECK(*rch::path_kind(tmp.path / "f") == rch::PathKind::file);
  CHECK(*rch::path_kind(tmp.path / "d") == rch::PathKind::dir);
  CHECK(*rch::path_kind(tmp.path / "l") == rch::PathKind::link);
  CHECK_FALSE(rch::path_kind(tmp.path / "absent")->has_value());
  CHECK_FALSE(rch::path_kind(tmp.path / "f" / "under-a-file")->has_value());
  CHECK(std::string(rch::to_string(rch::PathKind::link)) == "link");

  CHECK_FALSE(rch::is_executable(tmp.path / "f"));
  REQUIRE(rch::change_mode(tmp.path / "f", 0755).ok());
  CHECK(rch::is_executable(tmp.path / "f"));
  CHECK_FALSE(rch::is_executable(tmp.path / "d"));
  CHECK_FALSE(rch::change_mode(tmp.path / "absent", 0644).ok());

  // Removing the link leaves its target; the tree under a link is not followed.
  write(tmp.path / "d" / "keep", "k");
  REQUIRE(rch::remove_file(tmp.path / "l").ok());
  CHECK(fs::exists(tmp.path / "d" / "keep"));
  CHECK(rch::remove_file(tmp.path / "absent").ok());
  fs::create_directories(tmp.path / "t" / "sub");
  fs::create_symlink(tmp.path / "d", tmp.path / "t" / "sub" / "to-d");
  REQUIRE(rch::remove_tree(tmp.path / "t").ok());
  CHECK_FALSE(fs::exists(tmp.path / "t"));
  CHECK(fs::exists(tmp.path / "d" / "keep"));
  CHECK(rch::remove_tree(tmp.path / "t").ok());
}
