// SHA-256 via EVP (not the deprecated SHA256_* calls) so OpenSSL 3 may pick
// an accelerated provider implementation.
#include "core/crypto/sha256.hpp"

#include "core/util/unique_fd.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace rch {
namespace {

constexpr std::size_t kChunk = 1 << 20;

void check(int ok, const char* what) {
  // EVP fails only on allocation or provider breakage: a bug, not input.
  if (ok != 1) throw std::runtime_error(std::string("OpenSSL ") + what + " failed");
}

std::string to_hex(const unsigned char* bytes, std::size_t n) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(n * 2, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 0x0f];
  }
  return out;
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

// sha256sum escapes '\\' and '\n' in names and then starts the line with '\\'.
std::string unescape_name(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '\\' && i + 1 < name.size()) {
      const char next = name[++i];
      out += next == 'n' ? '\n' : next;
    } else {
      out += name[i];
    }
  }
  return out;
}

}  // namespace

void Sha256::CtxDeleter::operator()(evp_md_ctx_st* ctx) const noexcept { EVP_MD_CTX_free(ctx); }

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_) throw std::runtime_error("OpenSSL EVP_MD_CTX_new failed");
  check(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;
Sha256::~Sha256() = default;

void Sha256::update(const void* data, std::size_t size) {
  if (!ctx_) throw std::logic_error("Sha256 used after move");
  check(EVP_DigestUpdate(ctx_.get(), data, size), "EVP_DigestUpdate");
}

std::string Sha256::final_hex() {
  if (!ctx_) throw std::logic_error("Sha256 used after move");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  check(EVP_DigestFinal_ex(ctx_.get(), md, &len), "EVP_DigestFinal_ex");
  check(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
  return to_hex(md, len);
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.final_hex();
}

Result<std::string> sha256_file_hex(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return make_error("cannot open " + path.string() + ": " + std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(kChunk);
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error("cannot read " + path.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
  }
  return h.final_hex();
}

Result<void> verify_sha256(std::string_view data, std::string_view expected_hex) {
  bool well_formed = expected_hex.size() == 64;
  for (char c : expected_hex) well_formed = well_formed && is_hex(c);
  if (!well_formed) {
    return make_error("invalid expected sha256 '" + std::string(expected_hex) + "': need 64 hex digits");
  }
  const std::string actual = sha256_hex(data);
  if (actual != to_lower(expected_hex)) {
    return make_error("sha256 mismatch: expected " + to_lower(expected_hex) + ", got " + actual);
  }
  return {};
}

Result<std::map<std::string, std::string>> parse_checksums(std::string_view text) {
  std::map<std::string, std::string> out;
  std::map<std::string, int> line_of;
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    const bool escaped = !line.empty() && line.front() == '\\';
    if (escaped) line.remove_prefix(1);
    const std::size_t sep = line.find(' ');
    if (sep == 0 || sep == std::string_view::npos || sep + 2 > line.size()) continue;
    const std::string_view digest = line.substr(0, sep);
    bool hex = true;
    for (char c : digest) hex = hex && is_hex(c);
    if (!hex) continue;
    // Second column is the mode marker: ' ' (text) or '*' (binary).
    const char mode = line[sep + 1];
    if (mode != ' ' && mode != '*') continue;
    const std::string_view name = line.substr(sep + 2);
    if (name.empty()) continue;
    std::string key = escaped ? unescape_name(name) : std::string(name);
    if (const auto seen = line_of.find(key); seen != line_of.end()) {
      return make_error("lists " + key + " twice (lines " + std::to_string(seen->second) + " and " +
                        std::to_string(line_no) + "): refusing an ambiguous checksum list");
    }
    line_of.emplace(key, line_no);
    out.emplace(std::move(key), to_lower(digest));
  }
  return out;
}

}  // namespace rch
