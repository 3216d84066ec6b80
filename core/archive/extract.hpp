// Safe extraction of release tarballs (.tar.gz) with libarchive: only regular
// files and directories, nothing outside the destination, bounded size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

struct ExtractLimits {
  std::uint64_t max_total_bytes = 512ull << 20;  // sum of regular file sizes
  std::size_t max_entries = 64;
};

// Extracts a .tar.gz into `dest_dir` (must exist, should be empty).
//
// Refuses, before writing anything of that entry, absolute paths, any ".."
// component, symlinks, hardlinks, device/fifo/socket entries, empty names,
// duplicate entries, files that already exist in `dest_dir` (existing
// directories are merged into), and archives beyond the limits. libarchive
// hands names over as C strings, so a name with a NUL arrives cut at the NUL
// and is checked as such. Files are created with O_EXCL|O_NOFOLLOW below
// directories opened one component at a time without following symlinks, so
// a symlink planted in `dest_dir` is never followed. Modes keep only the 0755
// bits (never setuid/setgid/sticky); owners, times and extended attributes
// are not restored. "./" entries (from `tar -C dir .`) stand for `dest_dir`
// itself and are skipped.
//
// On any error everything this call created is removed again, so `dest_dir`
// is left as it was. The error names the archive file and the entry.
// Returns the regular files extracted, as relative paths in archive order.
Result<std::vector<std::string>> extract_tar_gz_safely(const std::filesystem::path& archive,
                                                       const std::filesystem::path& dest_dir,
                                                       const ExtractLimits& limits = {});

}  // namespace rch
