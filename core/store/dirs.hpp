// Local directories rch writes into: created with an exact mode (never the
// caller's umask), and checked the way OpenSSH's StrictModes checks ~/.ssh,
// so that no other local user can swap a file rch is about to trust.
#pragma once

#include <sys/types.h>

#include <filesystem>

#include "core/util/result.hpp"

namespace rch {

// Creates `dir` and its missing parents, each with exactly `mode`; existing
// directories keep their mode. The error names the directory.
Result<void> make_dirs(const std::filesystem::path& dir, mode_t mode);

// Every component from / down to `dir` (resolved) must be owned by the
// effective user or root and not be writable by group or others, except a
// sticky, world-writable parent (like /tmp) whose next component is owned by
// the effective user. The error names the component and the fix.
Result<void> check_trusted_dir(const std::filesystem::path& dir);

// make_dirs, then check_trusted_dir.
Result<void> make_trusted_dirs(const std::filesystem::path& dir, mode_t mode);

// Makes the names in `dir` (a rename, a new link or file) durable. A
// filesystem that cannot fsync a directory (EINVAL) passes: nothing more can
// be done there. The error names the directory.
Result<void> fsync_dir(const std::filesystem::path& dir);

}  // namespace rch
