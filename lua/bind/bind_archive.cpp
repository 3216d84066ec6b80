// Module rch.archive: safe extraction of release tarballs (core/archive over
// libarchive) on the pool: regular files and directories only, nothing
// outside the destination, bounded size.
#include "core/archive/extract.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

// extract(archive, dest_dir [, {max_total_bytes=, max_entries=}]) -> list of
// extracted files (relative paths) | nil, err naming the archive and entry  (yields)
int l_archive_extract(lua_State* L) {
  const std::string archive = check_std_string(L, 1);
  const std::string dest = check_std_string(L, 2);
  ExtractLimits limits;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    const lua_Number bytes = opt_number_field(L, 3, "max_total_bytes", static_cast<lua_Number>(limits.max_total_bytes));
    const lua_Number entries = opt_number_field(L, 3, "max_entries", static_cast<lua_Number>(limits.max_entries));
    if (bytes <= 0 || entries <= 0) throw Misuse("rch.archive.extract: limits must be > 0");
    limits.max_total_bytes = static_cast<std::uint64_t>(bytes);
    limits.max_entries = static_cast<std::size_t>(entries);
  }
  return yield_blocking<Result<std::vector<std::string>>>(
      L, "rch.archive.extract", [archive, dest, limits] { return extract_tar_gz_safely(archive, dest, limits); },
      [](lua_State* co, Result<std::vector<std::string>>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_createtable(co, static_cast<int>(r->size()), 0);
        for (std::size_t i = 0; i < r->size(); ++i) {
          lua_pushlstring(co, (*r)[i].data(), (*r)[i].size());
          lua_rawseti(co, -2, static_cast<int>(i + 1));
        }
        return 1;
      });
}

}  // namespace

int luaopen_rch_archive(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"extract", guarded<l_archive_extract>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
