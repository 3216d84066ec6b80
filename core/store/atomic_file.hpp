// Whole-file writes that are all-or-nothing across crashes (temp file, fsync,
// rename, fsync of the directory), and whole-file reads.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "core/util/result.hpp"

namespace rch {

// Replaces `path` with `contents`, mode exactly `mode` (umask does not apply).
// On failure the original file is untouched and no temp file is left; the
// error names `path`. The target directory must exist.
Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view contents, unsigned mode = 0644);

Result<std::string> read_file(const std::filesystem::path& path);

}  // namespace rch
