// SSH public keys in their wire form (RFC 4253 6.6), OpenSSH certificates
// (PROTOCOL.certkeys) and SSH signatures checked with OpenSSL: Ed25519,
// ECDSA (nistp256/384/521) and RSA with SHA-2. libssh 0.10 cannot negotiate
// certificate host keys, so rch checks host certificates itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/util/result.hpp"

namespace rch {

struct SshPublicKey {
  std::string type;  // "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", "…-cert-v01@openssh.com"
  std::string blob;  // the wire encoding; its first field repeats `type`
};

// A key from its known_hosts/.pub text fields; nullopt when the base64 is bad
// or its blob names another type.
std::optional<SshPublicKey> parse_public_key(std::string_view type, std::string_view base64);
// The type a key blob names in its first field ("" when malformed).
std::string ssh_key_type_of(std::string_view blob);
// "SHA256:…" as ssh-keygen -l prints it.
std::string ssh_fingerprint(std::string_view blob);

struct SshCertificate {
  static constexpr std::uint32_t kUser = 1, kHost = 2;
  std::string type;      // "ssh-ed25519-cert-v01@openssh.com"
  std::string key_blob;  // the certified key as a plain public key blob
  std::uint64_t serial = 0;
  std::uint32_t cert_type = 0;
  std::string key_id;
  std::vector<std::string> principals;
  std::uint64_t valid_after = 0, valid_before = 0;  // seconds since the epoch; [after, before)
  std::vector<std::string> critical_options;        // their names
  std::string ca_blob;                              // the signature key
  std::string signed_data;                          // everything the CA's signature covers
  std::string signature;                            // the signature blob
};

// Parses a certificate blob (Ed25519, ECDSA and RSA certificates).
Result<SshCertificate> parse_certificate(std::string_view blob);

// Checks `signature` (an SSH signature blob) over `data` with the public key
// `key_blob`. RSA must use rsa-sha2-256/512 (ssh-rsa's SHA-1 is refused, as
// OpenSSH does for CA signatures).
Result<void> verify_ssh_signature(std::string_view key_blob, std::string_view signature, std::string_view data);

// OpenSSH's checks of a host certificate (sshkey_cert_check_authority) except
// the CA's trust, which the caller decides: a host (not user) certificate,
// valid at `now`, naming `host` among its principals, with no critical
// option (none is defined for host certificates), signed by its CA. The
// error names the rule that failed.
Result<void> check_host_certificate(const SshCertificate& cert, std::string_view host, std::uint64_t now);

}  // namespace rch
