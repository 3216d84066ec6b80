// Module rch.crypto: sha256 of strings (inline) and files (on the pool: a
// large file must not stall the loop).
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

}  // namespace

int luaopen_rch_crypto(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"sha256", guarded<l_crypto_sha256>},
      {"sha256_file", guarded<l_crypto_sha256_file>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
