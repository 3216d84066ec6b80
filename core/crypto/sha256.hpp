// SHA-256 over OpenSSL EVP: one-shot, streaming and file digests, checksum
// verification, and parsing of sha256sum-style checksum lists (checksums.txt).
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/util/result.hpp"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace rch {

// Incremental digest. final_hex() returns the digest and resets the object,
// so it can hash the next input.
class Sha256 {
 public:
  Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  ~Sha256();

  void update(const void* data, std::size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  std::string final_hex();  // 64 lowercase hex digits

 private:
  struct CtxDeleter {
    void operator()(evp_md_ctx_st* ctx) const noexcept;
  };
  std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx_;
};

std::string sha256_hex(std::string_view data);

// Streams the file in 1 MiB chunks; the error names the file and the errno text.
Result<std::string> sha256_file_hex(const std::filesystem::path& path);

// Case-insensitive compare against a 64-digit hex digest; the error gives
// expected and actual digests (or says the expected one is malformed).
Result<void> verify_sha256(std::string_view data, std::string_view expected_hex);

// Parses "<hex>  <name>" and "<hex> *<name>" lines (sha256sum text and binary
// mode, including its backslash-escaped names); blank lines are skipped and so
// are lines that are not of that form, so a lookup of their name finds nothing.
// Digests are returned lowercase. A name listed twice is an error naming both
// lines: with two digests for one file, which one "counts" would be a guess
// an attacker could steer.
Result<std::map<std::string, std::string>> parse_checksums(std::string_view text);

}  // namespace rch
