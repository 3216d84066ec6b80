// Module rch.http: HTTP(S) requests for hooks, strategies and `rch run`
// scripts (a metrics query, a webhook) over core/net/http. Each call runs on
// the pool and yields the task. Timeout and body cap default to [http] in
// config.toml; TLS verification cannot be turned off.
#include <cctype>
#include <cmath>
#include <string_view>

#include "core/config/config.hpp"
#include "core/config/paths.hpp"
#include "core/net/http.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {
namespace {

constexpr std::string_view kOptions[] = {"method", "url", "headers", "body", "timeout", "ca_file", "max_body"};

// [http] timeout and max_body_mb (config.toml is read per request: policy
// scripts make a handful of them, and an edit between runs takes effect).
HttpRequest defaults(const char* api) {
  auto config = load_config(Paths::from_env().config_dir / "config.toml");
  if (!config.ok()) throw std::runtime_error(std::string(api) + ": " + config.error());
  HttpRequest r;
  r.timeout_s = static_cast<double>(config->http.timeout.count());
  r.max_body_bytes = static_cast<std::uint64_t>(std::llround(config->http.max_body_mb * 1048576.0));
  return r;
}

// The options table at idx (may be absent) over the defaults; `url` set by the caller wins.
HttpRequest check_request(lua_State* L, int idx, const char* api) {
  HttpRequest r = defaults(api);
  if (lua_isnoneornil(L, idx)) return r;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    bool known = false;
    if (lua_type(L, -2) == LUA_TSTRING) {
      for (std::string_view k : kOptions) known = known || k == lua_tostring(L, -2);
    }
    if (!known) {
      const std::string key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2);
      throw Misuse(std::string(api) + ": unknown option '" + key +
                   "' (method, url, headers, body, timeout, ca_file, max_body)");
    }
    lua_pop(L, 1);
  }
  r.method = opt_string_field(L, idx, "method", r.method);
  r.url = opt_string_field(L, idx, "url", r.url);
  r.body = opt_string_field(L, idx, "body", r.body);
  r.ca_file = opt_string_field(L, idx, "ca_file", r.ca_file);
  r.timeout_s = opt_number_field(L, idx, "timeout", r.timeout_s);
  if (!(r.timeout_s > 0)) throw Misuse(std::string(api) + ": timeout must be a number of seconds above 0");
  const lua_Number cap = opt_number_field(L, idx, "max_body", static_cast<lua_Number>(r.max_body_bytes));
  if (!(cap >= 1)) throw Misuse(std::string(api) + ": max_body must be a number of bytes >= 1");
  r.max_body_bytes = static_cast<std::uint64_t>(cap);
  lua_getfield(L, idx, "headers");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) throw Misuse(std::string(api) + ": headers must be a table of name = value");
    const int headers = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, headers) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
        throw Misuse(std::string(api) + ": headers must be a table of name = value (strings)");
      std::size_t nlen = 0, vlen = 0;
      const char* name = lua_tolstring(L, -2, &nlen);
      lua_pushvalue(L, -1);  // lua_tolstring on a number key would confuse lua_next; copy the value instead
      const char* value = lua_tolstring(L, -1, &vlen);
      r.headers.emplace_back(std::string(name, nlen), std::string(value, vlen));
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
  return r;
}

bool has_header(const HttpRequest& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < n.size(); ++i) same = same && std::tolower(n[i]) == std::tolower(name[i]);
    if (same) return true;
  }
  return false;
}

int perform(lua_State* L, const char* api, HttpRequest request) {
  if (request.url.empty()) throw Misuse(std::string(api) + ": url is required");
  return yield_blocking<Result<HttpResponse>>(
      L, api, [request = std::move(request)] { return http_request(request); },
      [](lua_State* co, Result<HttpResponse>& r) {
        if (!r.ok()) return push_failure(co, r.error());
        lua_createtable(co, 0, 3);
        lua_pushnumber(co, static_cast<lua_Number>(r->status));
        lua_setfield(co, -2, "status");
        lua_createtable(co, 0, static_cast<int>(r->headers.size()));
        for (const auto& [name, value] : r->headers) {
          lua_pushlstring(co, value.data(), value.size());
          lua_setfield(co, -2, name.c_str());
        }
        lua_setfield(co, -2, "headers");
        lua_pushlstring(co, r->body.data(), r->body.size());
        lua_setfield(co, -2, "body");
        return 1;
      });
}

// request{method=, url=, headers=, body=, timeout=, ca_file=, max_body=}
//   -> {status, headers, body} | nil, err   (yields)
int l_http_request(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  return perform(L, "rch.http.request", check_request(L, 1, "rch.http.request"));
}

// get(url [, opts]) -> as request
int l_http_get(lua_State* L) {
  const std::string url = check_std_string(L, 1);
  HttpRequest r = check_request(L, 2, "rch.http.get");
  r.url = url;
  r.method = "GET";
  return perform(L, "rch.http.get", std::move(r));
}

// post_json(url, value [, opts]) -> as request; value encoded as JSON
// (invalid UTF-8 as U+FFFD), Content-Type application/json unless opts.headers say otherwise.
int l_http_post_json(lua_State* L) {
  const std::string url = check_std_string(L, 1);
  luaL_checkany(L, 2);
  HttpRequest r = check_request(L, 3, "rch.http.post_json");
  r.url = url;
  r.method = "POST";
  r.body = to_json(L, 2).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!has_header(r, "content-type")) r.headers.emplace_back("Content-Type", "application/json");
  return perform(L, "rch.http.post_json", std::move(r));
}

// escape(s) -> s percent-encoded for a URL query or path segment (RFC 3986:
// everything but letters, digits and -._~)
int l_http_escape(lua_State* L) {
  const std::string in = check_std_string(L, 1);
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

}  // namespace

int luaopen_rch_http(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"request", guarded<l_http_request>}, {"get", guarded<l_http_get>}, {"post_json", guarded<l_http_post_json>},
      {"escape", guarded<l_http_escape>},   {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  return 1;
}

}  // namespace rch::lua
