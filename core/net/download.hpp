// HTTP(S) downloads for the update pipeline over libcurl: small bodies into
// memory (release JSON, .sha256, checksums.txt, .minisig) and large assets to
// disk, resumable through a `.part` file. TLS verification is always on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "core/util/result.hpp"

namespace rch {

struct DownloadOptions {
  // Extra CA bundle (PEM), trusted in addition to the system store; empty =
  // system store only. TLS verification can NOT be turned off.
  std::string ca_file;
  int connect_timeout_s = 15;
  int transfer_timeout_s = 600;  // whole transfer
  // 0 = no cap; else refuse when the announced size is larger (before any
  // byte is written) and abort a streamed body once it grows past it.
  std::uint64_t max_bytes = 0;
  // Called as bytes arrive; `done` counts bytes of the whole file (including
  // a resumed .part), `total` is 0 when the server does not say.
  std::function<void(std::uint64_t done, std::uint64_t total)> progress;
  std::string user_agent = "rch";
};

// GET into memory. Only http:// and https://; redirects are followed (at
// most 5, never from https to http). A final status that is not 2xx is an
// error naming the URL and the status.
Result<std::string> http_get(const std::string& url, const DownloadOptions& options);

// Downloads to `dest` via `dest + ".part"`: an existing .part is resumed with
// a Range request (if the server answers 200 instead of 206, or cannot satisfy
// the range, it restarts from zero), fsynced, then renamed to `dest`. A failed
// or aborted download leaves the .part for the next attempt and never a
// partial `dest`. The caller verifies the content: a .part left by an older
// file of the same name resumes into wrong bytes, so delete it on mismatch.
Result<void> download_file(const std::string& url, const std::filesystem::path& dest, const DownloadOptions& options);

}  // namespace rch
