// minisign verification over OpenSSL 3 EVP: Ed25519 raw public keys and the
// "BLAKE2B-512" digest, so rch needs no libsodium. Formats follow minisign 0.11.
#include "core/crypto/minisign.hpp"

#include "core/util/unique_fd.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

namespace rch {
namespace {

constexpr std::size_t kChunk = 1 << 20;
constexpr std::size_t kSignatureSize = 64;
constexpr std::size_t kPublicKeySize = 2 + 8 + 32;
constexpr std::size_t kSignatureLineSize = 2 + 8 + kSignatureSize;
constexpr std::string_view kUntrustedPrefix = "untrusted comment: ";
constexpr std::string_view kTrustedPrefix = "trusted comment: ";

struct PkeyFree {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct MdFree {
  void operator()(EVP_MD* p) const noexcept { EVP_MD_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using MdPtr = std::unique_ptr<EVP_MD, MdFree>;

void check(int ok, const char* what) {
  // These EVP calls fail only on allocation or provider breakage: a bug, not input.
  if (ok != 1) throw std::runtime_error(std::string("OpenSSL ") + what + " failed");
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict standard base64: padded, no whitespace, unused bits zero, so one
// byte string has exactly one accepted text.
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  if (text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    std::uint32_t group = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      int v = 0;
      if (last && j >= 4 - pad) {
        if (c != '=') return std::nullopt;
      } else if ((v = base64_value(c)) < 0) {
        return std::nullopt;
      }
      group = (group << 6) | static_cast<std::uint32_t>(v);
    }
    const std::size_t bytes = last ? 3 - pad : 3;
    if (bytes < 3 && (group & ((1u << (8 * (3 - bytes))) - 1)) != 0) return std::nullopt;
    for (std::size_t k = 0; k < bytes; ++k) out.push_back(static_cast<std::uint8_t>(group >> (16 - 8 * k)));
  }
  return out;
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Lines without their '\n' and a trailing '\r'.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
  }
  return lines;
}

std::string printable_alg(const std::uint8_t* alg) {
  std::string out;
  for (int i = 0; i < 2; ++i) {
    const char c = static_cast<char>(alg[i]);
    if (c >= 0x21 && c <= 0x7e) {
      out += c;
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[alg[i] >> 4];
      out += hex[alg[i] & 0x0f];
    }
  }
  return out;
}

struct SignatureFile {
  bool prehashed = false;
  std::array<std::uint8_t, 8> key_id{};
  std::array<std::uint8_t, kSignatureSize> signature{};
  std::string trusted_comment;
  std::array<std::uint8_t, kSignatureSize> global_signature{};
};

Error malformed(const std::string& what) { return make_error("malformed signature file: " + what); }

Result<SignatureFile> parse_signature_file(std::string_view text) {
  std::vector<std::string_view> lines = split_lines(text);
  while (!lines.empty() && trim(lines.back()).empty()) lines.pop_back();
  if (lines.empty()) return malformed("empty");
  if (!lines[0].starts_with(kUntrustedPrefix)) return malformed("line 1 must start with 'untrusted comment: '");
  if (lines.size() < 2) return malformed("missing the signature line");
  if (lines.size() < 3) return malformed("missing the trusted comment line");
  if (lines.size() < 4) return malformed("missing the global signature line");
  if (lines.size() > 4) return malformed("unexpected text after the global signature line");

  const auto sig = base64_decode(trim(lines[1]));
  if (!sig) return malformed("the signature line is not valid base64");
  if (sig->size() != kSignatureLineSize) {
    return malformed("the signature line holds " + std::to_string(sig->size()) + " bytes, expected " +
                     std::to_string(kSignatureLineSize));
  }
  SignatureFile out;
  const std::uint8_t* p = sig->data();
  if (p[0] == 'E' && p[1] == 'd') {
    out.prehashed = false;
  } else if (p[0] == 'E' && p[1] == 'D') {
    out.prehashed = true;
  } else {
    return make_error("unsupported algorithm '" + printable_alg(p) + "' (known: Ed, ED)");
  }
  std::memcpy(out.key_id.data(), p + 2, out.key_id.size());
  std::memcpy(out.signature.data(), p + 10, out.signature.size());

  if (!lines[2].starts_with(kTrustedPrefix)) return malformed("line 3 must start with 'trusted comment: '");
  out.trusted_comment = std::string(lines[2].substr(kTrustedPrefix.size()));

  const auto global = base64_decode(trim(lines[3]));
  if (!global) return malformed("the global signature line is not valid base64");
  if (global->size() != kSignatureSize) {
    return malformed("the global signature holds " + std::to_string(global->size()) + " bytes, expected " +
                     std::to_string(kSignatureSize));
  }
  std::memcpy(out.global_signature.data(), global->data(), out.global_signature.size());
  return out;
}

// Null when OpenSSL refuses the 32 bytes as an Ed25519 public key.
PkeyPtr make_ed25519_key(const MinisignPublicKey& key) {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key_ex(nullptr, "ED25519", nullptr, key.key.data(), key.key.size()));
  if (!pkey) ERR_clear_error();
  return pkey;
}

Error bad_key() { return make_error("minisign public key is not a valid Ed25519 key"); }

// Pure Ed25519 (no digest parameter): minisign signs the bytes themselves.
bool ed25519_verify(EVP_PKEY* pkey, const std::uint8_t* sig, const void* data, std::size_t size) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) throw std::runtime_error("OpenSSL EVP_MD_CTX_new failed");
  check(EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, pkey, nullptr),
        "EVP_DigestVerifyInit_ex");
  const int rc = EVP_DigestVerify(ctx.get(), sig, kSignatureSize, static_cast<const unsigned char*>(data), size);
  // A bad signature leaves an entry on the thread's error queue; it is an answer, not an error.
  ERR_clear_error();
  return rc == 1;
}

class Blake2b512 {
 public:
  Blake2b512() : md_(EVP_MD_fetch(nullptr, "BLAKE2B-512", nullptr)), ctx_(EVP_MD_CTX_new()) {
    if (!md_) throw std::runtime_error("OpenSSL has no BLAKE2B-512 digest");
    if (!ctx_) throw std::runtime_error("OpenSSL EVP_MD_CTX_new failed");
    check(EVP_DigestInit_ex2(ctx_.get(), md_.get(), nullptr), "EVP_DigestInit_ex2");
  }
  void update(const void* data, std::size_t size) {
    check(EVP_DigestUpdate(ctx_.get(), data, size), "EVP_DigestUpdate");
  }
  std::array<std::uint8_t, 64> final() {
    std::array<std::uint8_t, 64> out{};
    unsigned int len = 0;
    check(EVP_DigestFinal_ex(ctx_.get(), out.data(), &len), "EVP_DigestFinal_ex");
    if (len != out.size()) throw std::runtime_error("BLAKE2B-512 returned " + std::to_string(len) + " bytes");
    return out;
  }

 private:
  MdPtr md_;
  MdCtxPtr ctx_;
};

// What follows the message check, common to buffers and files.
Result<MinisignVerified> finish(EVP_PKEY* pkey, bool message_ok, SignatureFile sig) {
  if (!message_ok) return make_error("signature does not verify: the data is not what the key signed");
  std::string signed_comment(reinterpret_cast<const char*>(sig.signature.data()), sig.signature.size());
  signed_comment += sig.trusted_comment;
  if (!ed25519_verify(pkey, sig.global_signature.data(), signed_comment.data(), signed_comment.size())) {
    return make_error("trusted comment was altered: the global signature does not verify");
  }
  return MinisignVerified{std::move(sig.trusted_comment), sig.prehashed};
}

Result<SignatureFile> parse_for_key(const MinisignPublicKey& key, std::string_view signature_file_text) {
  auto sig = parse_signature_file(signature_file_text);
  if (!sig) return sig;
  if (sig->key_id != key.key_id) {
    return make_error("signed by key ID " + minisign_key_id_hex(sig->key_id) + ", configured key is " +
                      minisign_key_id_hex(key.key_id));
  }
  return sig;
}

}  // namespace

std::string minisign_key_id_hex(const std::array<std::uint8_t, 8>& key_id) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (auto it = key_id.rbegin(); it != key_id.rend(); ++it) {
    out += hex[*it >> 4];
    out += hex[*it & 0x0f];
  }
  // As minisign prints it (%PRIX64): no leading zeros, so the IDs compare by eye.
  const auto first = out.find_first_not_of('0');
  return first == std::string::npos ? "0" : out.substr(first);
}

Result<MinisignPublicKey> parse_minisign_public_key(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::string_view line : split_lines(text)) {
    if (!trim(line).empty()) lines.push_back(line);
  }
  if (lines.empty()) return make_error("minisign public key: empty");
  if (lines.size() > 2) return make_error("minisign public key: expected at most 2 lines (comment, key)");
  if (lines.size() == 2 && !lines[0].starts_with(kUntrustedPrefix)) {
    return make_error("minisign public key: first of 2 lines must start with 'untrusted comment: '");
  }
  const auto raw = base64_decode(trim(lines.back()));
  if (!raw) return make_error("minisign public key: not valid base64");
  if (raw->size() != kPublicKeySize) {
    return make_error("minisign public key: " + std::to_string(raw->size()) + " bytes, expected " +
                      std::to_string(kPublicKeySize));
  }
  if ((*raw)[0] != 'E' || (*raw)[1] != 'd') {
    return make_error("minisign public key: unsupported algorithm '" + printable_alg(raw->data()) + "'");
  }
  MinisignPublicKey key{};
  std::memcpy(key.key_id.data(), raw->data() + 2, key.key_id.size());
  std::memcpy(key.key.data(), raw->data() + 10, key.key.size());
  return key;
}

Result<MinisignVerified> minisign_verify(const MinisignPublicKey& key, std::string_view message,
                                         std::string_view signature_file_text) {
  auto sig = parse_for_key(key, signature_file_text);
  if (!sig) return Error{sig.error()};
  const PkeyPtr pkey = make_ed25519_key(key);
  if (!pkey) return bad_key();
  bool ok;
  if (sig->prehashed) {
    Blake2b512 h;
    h.update(message.data(), message.size());
    const auto digest = h.final();
    ok = ed25519_verify(pkey.get(), sig->signature.data(), digest.data(), digest.size());
  } else {
    ok = ed25519_verify(pkey.get(), sig->signature.data(), message.data(), message.size());
  }
  return finish(pkey.get(), ok, std::move(*sig));
}

Result<MinisignVerified> minisign_verify_file(const MinisignPublicKey& key, const std::filesystem::path& file,
                                              std::string_view signature_file_text) {
  auto sig = parse_for_key(key, signature_file_text);
  if (!sig) return Error{sig.error()};
  const PkeyPtr pkey = make_ed25519_key(key);
  if (!pkey) return bad_key();
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return make_error("cannot open " + file.string() + ": " + std::strerror(errno));

  // Legacy "Ed" signs the bytes themselves, so the whole file must be in memory.
  std::optional<Blake2b512> hash;
  std::string whole;
  if (sig->prehashed) hash.emplace();
  std::vector<char> buf(kChunk);
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error("cannot read " + file.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    if (hash) {
      hash->update(buf.data(), static_cast<std::size_t>(n));
    } else {
      whole.append(buf.data(), static_cast<std::size_t>(n));
    }
  }

  bool ok;
  if (hash) {
    const auto digest = hash->final();
    ok = ed25519_verify(pkey.get(), sig->signature.data(), digest.data(), digest.size());
  } else {
    ok = ed25519_verify(pkey.get(), sig->signature.data(), whole.data(), whole.size());
  }
  auto verified = finish(pkey.get(), ok, std::move(*sig));
  if (!verified) return make_error(file.string() + ": " + verified.error());
  return verified;
}

}  // namespace rch
