// Module rch.resolver: load a script by relative name along the search path
// (--script-dir, config dir, built-in), or the built-in copy alone so a user
// hook can wrap the one it replaces.
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

int push_chunk(lua_State* L, const Resolver::Script& script) {
  if (luaL_loadbuffer(L, script.source.data(), script.source.size(), script.chunkname.c_str()) != 0) {
    return lua_error(L);  // syntax error: "file:line: message"
  }
  lua_pushstring(L, script.origin.c_str());
  return 2;
}

// load(name) -> chunk function, origin | nil, "no script …"
int l_resolver_load(lua_State* L) {
  const std::string name = check_std_string(L, 1);
  const Resolver& resolver = engine_of(L).resolver();
  auto found = resolver.find(name);
  if (!found.ok()) return push_failure(L, found.error());
  if (!found.value()) return push_failure(L, "no script '" + name + "' in " + resolver.describe_search_path());
  return push_chunk(L, *found.value());
}

// load_builtin(name) -> chunk function, "builtin" | nil, err
int l_resolver_load_builtin(lua_State* L) {
  const std::string name = check_std_string(L, 1);
  auto found = Resolver({}, {}).find(name);
  if (!found.ok() || !found.value()) return push_failure(L, "no built-in script '" + name + "'");
  return push_chunk(L, *found.value());
}

// list() -> {{name=, origin=, overrides_builtin=}, …}: every script name and the file it resolves to
int l_resolver_list(lua_State* L) {
  const auto listing = engine_of(L).resolver().list();
  lua_createtable(L, static_cast<int>(listing.size()), 0);
  for (std::size_t i = 0; i < listing.size(); ++i) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, listing[i].name.c_str());
    lua_setfield(L, -2, "name");
    lua_pushstring(L, listing[i].origin.c_str());
    lua_setfield(L, -2, "origin");
    lua_pushboolean(L, listing[i].overrides_builtin);
    lua_setfield(L, -2, "overrides_builtin");
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

}  // namespace

int luaopen_rch_resolver(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"load", guarded<l_resolver_load>},
      {"load_builtin", guarded<l_resolver_load_builtin>},
      {"list", guarded<l_resolver_list>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
