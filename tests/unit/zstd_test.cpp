// Unit tests of core/archive/zstd: round trips, patches that the zstd CLI's
// `-d --patch-from` decodes (what a worker runs), and refusals of corrupt
// frames and wrong bases.
#include "core/archive/zstd.hpp"
#include "core/store/atomic_file.hpp"
#include "tests/unit/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <random>
#include <string>

namespace {

using rch::test::TempDir;

// Looks like code: repetitive enough to compress, varied enough not to vanish.
std::string binary_like(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(size);
  while (out.size() < size) {
    const auto op = static_cast<char>(rng() % 16);
    out += op;
    out += "\x48\x89\xe5\x41\x57";
    out += static_cast<char>(rng() % 256);
  }
  out.resize(size);
  return out;
}

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

}  // namespace

TEST_CASE("zstd_compress round-trips and shrinks compressible data") {
  const std::string data = binary_like(3 << 20, 1);
  auto frame = rch::zstd_compress(data, 3);
  REQUIRE(frame.ok());
  CHECK(frame->size() < data.size() / 2);
  auto back = rch::zstd_decompress(*frame, {}, data.size());
  REQUIRE(back.ok());
  CHECK(*back == data);
}

TEST_CASE("zstd_compress leaves random data about its size (the caller then sends it plain)") {
  const std::string data = random_bytes(1 << 20, 2);
  auto frame = rch::zstd_compress(data, 1);
  REQUIRE(frame.ok());
  CHECK(frame->size() > data.size() * 9 / 10);
}

TEST_CASE("zstd_patch of a small change is tiny and rebuilds the target from the base") {
  const std::string base = binary_like(2 << 20, 3);
  std::string target = base;
  target.replace(1000, 5, "1.3.0");  // a version bump
  target.replace(1500000, 4, "abcd");
  auto patch = rch::zstd_patch(base, target, 9);
  REQUIRE(patch.ok());
  CHECK(patch->size() < 1024);
  auto back = rch::zstd_decompress(*patch, base, target.size());
  REQUIRE(back.ok());
  CHECK(*back == target);
}

TEST_CASE("a patch applied to another base, or corrupted, is refused") {
  const std::string base = binary_like(1 << 20, 4);
  std::string target = base;
  target[4242] ^= 1;
  auto patch = rch::zstd_patch(base, target, 9);
  REQUIRE(patch.ok());
  std::string other = base;
  other[4000] ^= 1;
  CHECK_FALSE(rch::zstd_decompress(*patch, other, target.size()).ok());
  std::string corrupt = *patch;
  corrupt[corrupt.size() / 2] ^= 0x40;
  CHECK_FALSE(rch::zstd_decompress(corrupt, base, target.size()).ok());
  CHECK_FALSE(rch::zstd_decompress(patch->substr(0, patch->size() - 3), base, target.size()).ok());
  CHECK_FALSE(rch::zstd_decompress("not zstd", {}, 100).ok());
  CHECK_FALSE(rch::zstd_decompress(*patch, base, target.size() - 1).ok());  // beyond the bound
}

TEST_CASE("the zstd CLI decodes our frames and patches as a worker does") {
  REQUIRE(std::system("zstd --version >/dev/null 2>&1") == 0);
  TempDir dir;
  const std::string base = binary_like(6 << 20, 5);  // a window (base + target) above the 4 MiB default of level 9
  std::string target = base;
  target.replace(5 << 20, 3, "xyz");
  auto patch = rch::zstd_patch(base, target, 9);
  auto frame = rch::zstd_compress(target, 9);
  REQUIRE(patch.ok());
  REQUIRE(frame.ok());
  const auto p = dir.path;
  REQUIRE(rch::write_file_atomic(p / "base", base).ok());
  REQUIRE(rch::write_file_atomic(p / "patch.zst", *patch).ok());
  REQUIRE(rch::write_file_atomic(p / "full.zst", *frame).ok());
  const std::string d = "'" + p.string() + "'";
  REQUIRE(std::system(("zstd -d -q -f --patch-from=" + d + "/base -o " + d + "/out1 < " + d + "/patch.zst").c_str()) ==
          0);
  REQUIRE(std::system(("zstd -d -q -f -o " + d + "/out2 < " + d + "/full.zst").c_str()) == 0);
  auto out1 = rch::read_file(p / "out1");
  auto out2 = rch::read_file(p / "out2");
  REQUIRE(out1.ok());
  REQUIRE(out2.ok());
  CHECK(*out1 == target);
  CHECK(*out2 == target);
}
