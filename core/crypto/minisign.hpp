// Verification of minisign signatures (Ed25519, legacy "Ed" and prehashed
// "ED" over BLAKE2b-512) with OpenSSL 3 alone: public key parsing, checks of
// the key id, the signature and the global signature over the trusted comment.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/util/result.hpp"

namespace rch {

struct MinisignPublicKey {
  std::array<std::uint8_t, 8> key_id;
  std::array<std::uint8_t, 32> key;
};

// Accepts the base64 line ("RW…") alone or a whole .pub file (an
// "untrusted comment: " line, then the base64 line).
Result<MinisignPublicKey> parse_minisign_public_key(std::string_view text);

// The key id as minisign prints it ("43989508F9858851": little-endian, upper hex,
// no leading zeros).
std::string minisign_key_id_hex(const std::array<std::uint8_t, 8>& key_id);

struct MinisignVerified {
  std::string trusted_comment;  // text after "trusted comment: "
  bool prehashed;               // "ED" (BLAKE2b-512 of the message) rather than legacy "Ed"
};

// Checks a .minisig file's text against `message`: known algorithm, key id
// equal to the key's, the signature over the message and the global
// signature over signature ‖ trusted comment (so an edited comment fails).
Result<MinisignVerified> minisign_verify(const MinisignPublicKey& key, std::string_view message,
                                         std::string_view signature_file_text);

// Same for a file: streamed through BLAKE2b-512 for "ED", read whole for "Ed".
Result<MinisignVerified> minisign_verify_file(const MinisignPublicKey& key, const std::filesystem::path& file,
                                              std::string_view signature_file_text);

}  // namespace rch
