// Module rch.json (encode/decode) and the JSON <-> Lua conversion and small
// argument helpers every binding uses.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "lua/bind/bind_util.hpp"

namespace rch::lua {

namespace {
const char kArrayMeta[] = "rch.json.array";
// rch.json.null: a value that encodes as JSON null (a Lua nil cannot sit in a table).
const char kNullSentinel = 0;
}  // namespace

void push_json(lua_State* L, const nlohmann::json& value) {
  luaL_checkstack(L, 4, "json nesting too deep");
  switch (value.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      lua_pushnil(L);
      break;
    case nlohmann::json::value_t::boolean:
      lua_pushboolean(L, value.get<bool>());
      break;
    case nlohmann::json::value_t::number_integer:
      lua_pushnumber(L, static_cast<lua_Number>(value.get<std::int64_t>()));
      break;
    case nlohmann::json::value_t::number_unsigned:
      lua_pushnumber(L, static_cast<lua_Number>(value.get<std::uint64_t>()));
      break;
    case nlohmann::json::value_t::number_float:
      lua_pushnumber(L, value.get<double>());
      break;
    case nlohmann::json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      break;
    }
    case nlohmann::json::value_t::binary:
      lua_pushnil(L);
      break;
    case nlohmann::json::value_t::array: {
      lua_createtable(L, static_cast<int>(value.size()), 0);
      int i = 1;
      for (const auto& item : value) {
        push_json(L, item);
        lua_rawseti(L, -2, i++);
      }
      // Marked so that an empty array encodes back as [] rather than {}.
      luaL_getmetatable(L, kArrayMeta);
      lua_setmetatable(L, -2);
      break;
    }
    case nlohmann::json::value_t::object: {
      lua_createtable(L, 0, static_cast<int>(value.size()));
      for (const auto& [key, item] : value.items()) {
        push_json(L, item);
        lua_setfield(L, -2, key.c_str());
      }
      break;
    }
  }
}

nlohmann::json to_json(lua_State* L, int idx) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return nullptr;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == &kNullSentinel) return nullptr;
      throw Misuse("rch.json: cannot encode a light userdata");
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) != 0;
    case LUA_TNUMBER: {
      const double n = lua_tonumber(L, idx);
      if (std::floor(n) == n && std::fabs(n) < 9.007199254740992e15) return static_cast<std::int64_t>(n);
      if (!std::isfinite(n)) throw Misuse("rch.json: cannot encode a non-finite number");
      return n;
    }
    case LUA_TSTRING: {
      std::size_t len = 0;
      const char* s = lua_tolstring(L, idx, &len);
      return std::string(s, len);
    }
    case LUA_TTABLE: {
      luaL_checkstack(L, 4, "json nesting too deep");
      const std::size_t n = lua_objlen(L, idx);
      std::size_t count = 0;
      bool has_string_key = false;
      lua_pushnil(L);
      while (lua_next(L, idx) != 0) {
        ++count;
        if (lua_type(L, -2) == LUA_TSTRING) has_string_key = true;
        lua_pop(L, 1);
      }
      bool marked_array = false;
      if (lua_getmetatable(L, idx) != 0) {
        luaL_getmetatable(L, kArrayMeta);
        marked_array = lua_rawequal(L, -1, -2) != 0;
        lua_pop(L, 2);
      }
      if (!has_string_key && count == n && (n > 0 || marked_array)) {
        nlohmann::json array = nlohmann::json::array();
        for (std::size_t i = 1; i <= n; ++i) {
          lua_rawgeti(L, idx, static_cast<int>(i));
          array.push_back(to_json(L, -1));
          lua_pop(L, 1);
        }
        return array;
      }
      nlohmann::json object = nlohmann::json::object();
      lua_pushnil(L);
      while (lua_next(L, idx) != 0) {
        std::string key;
        if (lua_type(L, -2) == LUA_TSTRING) {
          key = lua_tostring(L, -2);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
          lua_pushvalue(L, -2);
          key = lua_tostring(L, -1);
          lua_pop(L, 1);
        } else {
          lua_pop(L, 2);
          throw Misuse("rch.json: table keys must be strings or numbers");
        }
        object[key] = to_json(L, -1);
        lua_pop(L, 1);
      }
      return object;
    }
    default:
      throw Misuse(std::string("rch.json: cannot encode a ") + luaL_typename(L, idx));
  }
}

std::string check_std_string(lua_State* L, int idx) {
  std::size_t len = 0;
  const char* s = luaL_checklstring(L, idx, &len);
  return std::string(s, len);
}

std::vector<std::string> check_string_list(lua_State* L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  std::vector<std::string> out;
  const int n = static_cast<int>(lua_objlen(L, idx));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      throw Misuse("expected a list of strings (item " + std::to_string(i) + " is not a string)");
    }
    std::size_t len = 0;
    const char* s = lua_tolstring(L, -1, &len);
    out.emplace_back(s, len);
    lua_pop(L, 1);
  }
  return out;
}

std::string opt_string_field(lua_State* L, int idx, const char* key, const std::string& fallback) {
  if (lua_type(L, idx) != LUA_TTABLE) return fallback;
  lua_getfield(L, idx, key);
  std::string out = fallback;
  if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
    std::size_t len = 0;
    const char* s = lua_tolstring(L, -1, &len);
    out.assign(s, len);
  } else if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    throw Misuse(std::string("field '") + key + "' must be a string");
  }
  lua_pop(L, 1);
  return out;
}

lua_Number opt_number_field(lua_State* L, int idx, const char* key, lua_Number fallback) {
  if (lua_type(L, idx) != LUA_TTABLE) return fallback;
  lua_getfield(L, idx, key);
  lua_Number out = fallback;
  if (lua_type(L, -1) == LUA_TNUMBER) {
    out = lua_tonumber(L, -1);
  } else if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    throw Misuse(std::string("field '") + key + "' must be a number");
  }
  lua_pop(L, 1);
  return out;
}

bool opt_bool_field(lua_State* L, int idx, const char* key, bool fallback) {
  if (lua_type(L, idx) != LUA_TTABLE) return fallback;
  lua_getfield(L, idx, key);
  const bool out = lua_isnil(L, -1) ? fallback : lua_toboolean(L, -1) != 0;
  lua_pop(L, 1);
  return out;
}

void set_functions(lua_State* L, const luaL_Reg* functions) {
  for (const luaL_Reg* f = functions; f->name != nullptr; ++f) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}

namespace {

void append_escaped(std::string& out, const char* s, std::size_t len) {
  out += '"';
  for (std::size_t i = 0; i < len; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void newline(std::string& out, int indent, int depth) {
  if (indent <= 0) return;
  out += '\n';
  out.append(static_cast<std::size_t>(indent * depth), ' ');
}

// Straight from the Lua stack to text (the journal and audit hot path: no
// intermediate tree). Same array/object rules as to_json; object keys sorted
// so output is stable. Strings are written as bytes (callers pass UTF-8).
void encode(lua_State* L, int idx, std::string& out, int indent, int depth) {
  if (depth > 64) throw Misuse("rch.json: nesting deeper than 64");
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      out += "null";
      return;
    case LUA_TBOOLEAN:
      out += lua_toboolean(L, idx) ? "true" : "false";
      return;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == &kNullSentinel) {
        out += "null";
        return;
      }
      throw Misuse("rch.json: cannot encode a light userdata");
    case LUA_TNUMBER: {
      const double n = lua_tonumber(L, idx);
      if (!std::isfinite(n)) throw Misuse("rch.json: cannot encode a non-finite number");
      char buf[32];
      if (std::floor(n) == n && std::fabs(n) < 9.007199254740992e15) {
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
      } else {
        std::snprintf(buf, sizeof buf, "%.17g", n);
      }
      out += buf;
      return;
    }
    case LUA_TSTRING: {
      std::size_t len = 0;
      const char* str = lua_tolstring(L, idx, &len);
      append_escaped(out, str, len);
      return;
    }
    case LUA_TTABLE:
      break;
    default:
      throw Misuse(std::string("rch.json: cannot encode a ") + luaL_typename(L, idx));
  }
  luaL_checkstack(L, 4, "json nesting too deep");
  const std::size_t n = lua_objlen(L, idx);
  std::vector<std::string> keys;
  bool other_keys = false;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      std::size_t len = 0;
      const char* k = lua_tolstring(L, -2, &len);
      keys.emplace_back(k, len);
    } else if (lua_type(L, -2) != LUA_TNUMBER) {
      lua_pop(L, 2);
      throw Misuse("rch.json: table keys must be strings or numbers");
    } else if (n == 0) {
      other_keys = true;
    }
    lua_pop(L, 1);
  }
  bool marked_array = false;
  if (lua_getmetatable(L, idx) != 0) {
    luaL_getmetatable(L, kArrayMeta);
    marked_array = lua_rawequal(L, -1, -2) != 0;
    lua_pop(L, 2);
  }
  if (keys.empty() && !other_keys && (n > 0 || marked_array)) {
    out += '[';
    for (std::size_t i = 1; i <= n; ++i) {
      if (i > 1) out += ',';
      newline(out, indent, depth + 1);
      lua_rawgeti(L, idx, static_cast<int>(i));
      encode(L, -1, out, indent, depth + 1);
      lua_pop(L, 1);
    }
    if (n > 0) newline(out, indent, depth);
    out += ']';
    return;
  }
  if (!keys.empty() && (n > 0 || other_keys)) {
    // Mixed tables go through the general path (numeric keys become strings).
    out += to_json(L, idx).dump(indent > 0 ? indent : -1);
    return;
  }
  std::sort(keys.begin(), keys.end());
  out += '{';
  bool first = true;
  for (const auto& key : keys) {
    if (!first) out += ',';
    first = false;
    newline(out, indent, depth + 1);
    append_escaped(out, key.data(), key.size());
    out += indent > 0 ? ": " : ":";
    lua_pushlstring(L, key.data(), key.size());
    lua_rawget(L, idx);
    encode(L, -1, out, indent, depth + 1);
    lua_pop(L, 1);
  }
  if (!first) newline(out, indent, depth);
  out += '}';
}

// encode(value [, {pretty = true}]) -> string
int l_json_encode(lua_State* L) {
  luaL_checkany(L, 1);
  const bool pretty = opt_bool_field(L, 2, "pretty", false);
  std::string out;
  out.reserve(256);
  encode(L, 1, out, pretty ? 2 : 0, 0);
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// decode(string) -> value | nil, error
int l_json_decode(lua_State* L) {
  const std::string text = check_std_string(L, 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded()) return push_failure(L, "rch.json.decode: invalid JSON");
  push_json(L, value);
  return 1;
}

// array([t]) -> t marked to encode as a JSON array even when empty
int l_json_array(lua_State* L) {
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_getmetatable(L, kArrayMeta);
  lua_setmetatable(L, 1);
  return 1;
}

}  // namespace

int luaopen_rch_json(lua_State* L) {
  luaL_newmetatable(L, kArrayMeta);
  lua_pop(L, 1);
  static const luaL_Reg functions[] = {
      {"encode", guarded<l_json_encode>},
      {"decode", guarded<l_json_decode>},
      {"array", guarded<l_json_array>},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  set_functions(L, functions);
  lua_pushlightuserdata(L, const_cast<char*>(&kNullSentinel));
  lua_setfield(L, -2, "null");
  return 1;
}

}  // namespace rch::lua
