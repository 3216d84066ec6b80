// Module rch.net: HTTP(S) for the update pipeline over core/net (libcurl, TLS
// always verified). Both calls run on the pool and yield. Progress crosses
// threads as plain numbers: the transfer writes atomics in a progress object
// that a Lua task reads on its own schedule (no Lua runs on the pool).
#include <memory>

#include "core/net/download.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

// opts: {ca_file, connect_timeout, transfer_timeout, max_bytes, progress}
DownloadOptions check_options(lua_State* L, int idx) {
  DownloadOptions o;
  if (lua_isnoneornil(L, idx)) return o;
  luaL_checktype(L, idx, LUA_TTABLE);
  o.ca_file = opt_string_field(L, idx, "ca_file", "");
  o.connect_timeout_s = static_cast<int>(opt_number_field(L, idx, "connect_timeout", o.connect_timeout_s));
  o.transfer_timeout_s = static_cast<int>(opt_number_field(L, idx, "transfer_timeout", o.transfer_timeout_s));
  const lua_Number cap = opt_number_field(L, idx, "max_bytes", 0);
  if (cap < 0) throw Misuse("rch.net: max_bytes must be >= 0");
  o.max_bytes = static_cast<std::uint64_t>(cap);
  if (o.connect_timeout_s <= 0 || o.transfer_timeout_s <= 0) throw Misuse("rch.net: timeouts must be > 0");
  if (ProgressBox box = opt_progress_field(L, idx)) {
    o.progress = [box](std::uint64_t done, std::uint64_t total) {
      box->done.store(done, std::memory_order_relaxed);
      box->total.store(total, std::memory_order_relaxed);
    };
  }
  return o;
}

// get(url [, opts]) -> body | nil, err   (yields)
int l_net_get(lua_State* L) {
  const std::string url = check_std_string(L, 1);
  DownloadOptions options = check_options(L, 2);
  return yield_blocking<Result<std::string>>(
      L, "rch.net.get", [url, options] { return http_get(url, options); },
      [](lua_State* co, Result<std::string>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_pushlstring(co, r->data(), r->size());
        return 1;
      });
}

// download(url, dest [, opts]) -> true | nil, err   (yields; resumes dest..".part")
int l_net_download(lua_State* L) {
  const std::string url = check_std_string(L, 1);
  const std::string dest = check_std_string(L, 2);
  DownloadOptions options = check_options(L, 3);
  return yield_blocking<Result<void>>(
      L, "rch.net.download", [url, dest, options] { return download_file(url, dest, options); },
      [](lua_State* co, Result<void>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_pushboolean(co, 1);
        return 1;
      });
}

}  // namespace

int luaopen_rch_net(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"get", guarded<l_net_get>},
      {"download", guarded<l_net_download>},
      {"progress", guarded<l_progress_new>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
