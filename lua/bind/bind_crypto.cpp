// Module rch.crypto: sha256 of strings (inline) and files (on the pool: a
// large file must not stall the loop), checksum lists, and minisign
// signature verification.
#include "core/crypto/minisign.hpp"
#include "core/crypto/sha256.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

// sha256(data) -> hex
int l_crypto_sha256(lua_State* L) {
  const std::string hex = sha256_hex(check_std_string(L, 1));
  lua_pushstring(L, hex.c_str());
  return 1;
}

// sha256_file(path) -> hex | nil, err   (yields)
int l_crypto_sha256_file(lua_State* L) {
  const std::string path = check_std_string(L, 1);
  return yield_blocking<Result<std::string>>(
      L, "rch.crypto.sha256_file", [path] { return sha256_file_hex(path); },
      [](lua_State* co, Result<std::string>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_pushstring(co, r.value().c_str());
        return 1;
      });
}

// parse_checksums(text) -> {name = lowercase hex} (sha256sum format) | nil, err
int l_crypto_parse_checksums(lua_State* L) {
  const auto parsed = parse_checksums(check_std_string(L, 1));
  if (!parsed) return push_failure(L, parsed.error());
  const auto& sums = parsed.value();
  lua_createtable(L, 0, static_cast<int>(sums.size()));
  for (const auto& [name, hex] : sums) {
    lua_pushlstring(L, hex.data(), hex.size());
    lua_setfield(L, -2, name.c_str());
  }
  return 1;
}

// minisign_key_id(public_key) -> key id as minisign prints it | nil, err
int l_crypto_minisign_key_id(lua_State* L) {
  auto key = parse_minisign_public_key(check_std_string(L, 1));
  if (!key.ok()) return push_failure(L, key.error());
  lua_pushstring(L, minisign_key_id_hex(key->key_id).c_str());
  return 1;
}

// minisign_verify_file(public_key, file, signature_text) ->
//   {trusted_comment=, prehashed=, key_id=} | nil, err   (yields)
// public_key is the "RW…" line or a whole .pub file.
int l_crypto_minisign_verify_file(lua_State* L) {
  auto key = parse_minisign_public_key(check_std_string(L, 1));
  if (!key.ok()) return push_failure(L, "minisign public key: " + key.error());
  const std::string file = check_std_string(L, 2);
  const std::string signature = check_std_string(L, 3);
  const MinisignPublicKey k = key.value();
  return yield_blocking<Result<MinisignVerified>>(
      L, "rch.crypto.minisign_verify_file", [k, file, signature] { return minisign_verify_file(k, file, signature); },
      [k](lua_State* co, Result<MinisignVerified>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_createtable(co, 0, 3);
        lua_pushlstring(co, r->trusted_comment.data(), r->trusted_comment.size());
        lua_setfield(co, -2, "trusted_comment");
        lua_pushboolean(co, r->prehashed);
        lua_setfield(co, -2, "prehashed");
        lua_pushstring(co, minisign_key_id_hex(k.key_id).c_str());
        lua_setfield(co, -2, "key_id");
        return 1;
      });
}

}  // namespace

int luaopen_rch_crypto(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"sha256", guarded<l_crypto_sha256>},
      {"sha256_file", guarded<l_crypto_sha256_file>},
      {"parse_checksums", guarded<l_crypto_parse_checksums>},
      {"minisign_key_id", guarded<l_crypto_minisign_key_id>},
      {"minisign_verify_file", guarded<l_crypto_minisign_verify_file>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
