// TempDir: a private (0700) directory under $TMPDIR for one test, removed
// with everything in it when the test ends.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <system_error>

namespace rch::test {

struct TempDir {
  std::filesystem::path path;
  // `base`: somewhere else than $TMPDIR, e.g. /tmp for a short Unix socket path.
  explicit TempDir(const std::string& prefix = "rch-test-",
                   const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
    std::string tmpl = (base / (prefix + "XXXXXX")).string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    // A test may have taken the write bit off a directory (extracted trees, read-only cases).
    for (const auto& e : std::filesystem::recursive_directory_iterator(path, ec)) {
      if (e.is_directory(ec) && !e.is_symlink(ec)) {
        std::filesystem::permissions(e.path(), std::filesystem::perms::owner_all, std::filesystem::perm_options::add,
                                     ec);
      }
    }
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace rch::test
