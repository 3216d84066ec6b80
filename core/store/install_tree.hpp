// The filesystem primitives of the local install tree ($RCH_HOME: versions/,
// current, bin/) that `rch update` needs: private temp dirs, renames (plain
// and exchanging), links replaced by one rename, lstat, readlink and tree
// removal. Every change that must survive a crash is followed by an fsync of
// the directory it changed. Errors name the path.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

#include "core/util/result.hpp"

namespace rch {

// A new private (0700) directory dir/<prefix>XXXXXX; `dir` is created (0755)
// if missing and must be trusted (check_trusted_dir). No '/' in prefix.
Result<std::filesystem::path> make_private_temp_dir(const std::filesystem::path& dir, const std::string& prefix);

// One rename(2); the parent directories of both names fsync'd.
Result<void> rename_durable(const std::filesystem::path& from, const std::filesystem::path& to);

// Swaps two existing paths atomically (renameat2 RENAME_EXCHANGE), both
// parents fsync'd. When the filesystem cannot, `*unsupported` is set so the
// caller can fall back to two renames.
Result<void> exchange_paths(const std::filesystem::path& a, const std::filesystem::path& b, bool* unsupported);

// Makes `link` a symlink to `target` by one rename of a new link over it: at
// every moment `link` is either the old entry or the new link, never missing.
Result<void> replace_symlink(const std::string& target, const std::filesystem::path& link);

Result<std::string> read_link(const std::filesystem::path& link);

enum class PathKind { file, dir, link, other };
// What `path` is (lstat: a link is not followed); nullopt when it does not exist.
Result<std::optional<PathKind>> path_kind(const std::filesystem::path& path);
const char* to_string(PathKind kind);

// A regular file (links followed) this user may run.
bool is_executable(const std::filesystem::path& path);

Result<void> change_mode(const std::filesystem::path& path, mode_t mode);

// A file or link (not followed); absent is success.
Result<void> remove_file(const std::filesystem::path& path);

// A whole tree; links inside are removed, not followed; absent is success.
Result<void> remove_tree(const std::filesystem::path& path);

}  // namespace rch
