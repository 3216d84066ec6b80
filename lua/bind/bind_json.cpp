// Module rch.json (encode/decode) and the JSON <-> Lua conversion and small
// argument helpers every binding uses.
//
// Strings are bytes in Lua. A string that is not valid UTF-8 is written as
// {"$b64": "<base64 of the bytes>"} (the default, for durable records: decode
// gives back the exact bytes) or with each bad byte as U+FFFD (invalid_utf8 =
// "replace", for documents printed to people); either way the JSON is valid
// UTF-8. A table that is neither an array (keys 1..n) nor an object (string
// keys) is an error naming its path, never silently cut.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <string_view>

#include "core/util/text.hpp"
#include "lua/bind/bind_util.hpp"

namespace rch::lua {

namespace {
const char kArrayMeta[] = "rch.json.array";
// rch.json.null: a value that encodes as JSON null (a Lua nil cannot sit in a table).
const char kNullSentinel = 0;
// The one key of the object that stands for a byte string that is not UTF-8.
constexpr std::string_view kBytesKey = "$b64";

// Where a value sits in the document, for error messages ("workers[3].steps").
struct Path {
  const Path* parent;
  std::string_view key;  // object member, unless is_index
  std::size_t index;     // array item, 1-based as in Lua
  bool is_index;
};

std::string describe(const Path* path) {
  if (path == nullptr) return "the top level";
  std::vector<const Path*> chain;
  for (; path != nullptr; path = path->parent) chain.push_back(path);
  std::string out;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    if ((*it)->is_index) {
      out += "[" + std::to_string((*it)->index) + "]";
    } else {
      if (!out.empty()) out += '.';
      out += (*it)->key;
    }
  }
  return out;
}

[[noreturn]] void fail_at(const Path* path, const std::string& what) {
  throw Misuse("rch.json: " + what + " at " + describe(path));
}

bool marked_array(lua_State* L, int idx) {
  if (lua_getmetatable(L, idx) == 0) return false;
  luaL_getmetatable(L, kArrayMeta);
  const bool marked = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 2);
  return marked;
}

// What a Lua table is in JSON. Keys point into the table's own strings.
struct TableShape {
  bool array = false;
  std::size_t length = 0;              // array items 1..length
  std::vector<std::string_view> keys;  // object members, sorted (stable output)
};

// The one classification of tables, for encode and to_json: keys 1..n are an
// array, string keys an object; an empty table is {} unless marked with
// rch.json.array(). Holes, other numeric keys and mixed tables would lose
// data, so they are errors.
TableShape classify_table(lua_State* L, int idx, const Path* path) {
  luaL_checkstack(L, 4, "json nesting too deep");
  TableShape shape;
  std::size_t numeric = 0;
  lua_Number max_index = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const int key_type = lua_type(L, -2);
    if (key_type == LUA_TSTRING) {
      std::size_t len = 0;
      const char* key = lua_tolstring(L, -2, &len);
      shape.keys.emplace_back(key, len);
    } else if (key_type == LUA_TNUMBER) {
      const lua_Number key = lua_tonumber(L, -2);
      if (!(key >= 1 && std::floor(key) == key)) {
        lua_pop(L, 2);
        char buf[32];
        const auto end = std::to_chars(buf, buf + sizeof buf, key).ptr;
        fail_at(path, "table key " + std::string(buf, end) + " is not an array index");
      }
      ++numeric;
      max_index = std::max(max_index, key);
    } else {
      lua_pop(L, 2);
      fail_at(path,
              std::string("table key of type ") + lua_typename(L, key_type) + " (keys must be strings or numbers)");
    }
    lua_pop(L, 1);
  }
  if (numeric > 0 && !shape.keys.empty()) fail_at(path, "table mixes array items and string keys");
  if (numeric > 0) {
    if (max_index != static_cast<lua_Number>(numeric)) fail_at(path, "sparse array");
    shape.array = true;
    shape.length = numeric;
    return shape;
  }
  if (shape.keys.empty()) {
    shape.array = marked_array(L, idx);
    return shape;
  }
  if (shape.keys.size() == 1 && shape.keys[0] == kBytesKey) {
    fail_at(path, "an object whose only key is \"$b64\" (reserved for byte strings)");
  }
  std::sort(shape.keys.begin(), shape.keys.end());
  return shape;
}

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
      if (value.size() == 1 && value.begin().key() == kBytesKey && value.begin()->is_string()) {
        auto bytes = base64_decode(value.begin()->get_ref<const std::string&>());
        if (!bytes) throw std::runtime_error("rch.json.decode: {\"$b64\": …} does not hold base64");
        lua_pushlstring(L, bytes->data(), bytes->size());
        break;
      }
      lua_createtable(L, 0, static_cast<int>(value.size()));
      for (const auto& [key, item] : value.items()) {
        lua_pushlstring(L, key.data(), key.size());
        push_json(L, item);
        lua_rawset(L, -3);
      }
      break;
    }
  }
}

namespace {

nlohmann::json to_json_at(lua_State* L, int idx, const Path* path) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return nullptr;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == &kNullSentinel) return nullptr;
      fail_at(path, "cannot encode a light userdata");
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) != 0;
    case LUA_TNUMBER: {
      const double n = lua_tonumber(L, idx);
      if (std::floor(n) == n && std::fabs(n) < 9.007199254740992e15) return static_cast<std::int64_t>(n);
      if (!std::isfinite(n)) fail_at(path, "cannot encode a non-finite number");
      return n;
    }
    case LUA_TSTRING: {
      std::size_t len = 0;
      const char* s = lua_tolstring(L, idx, &len);
      const std::string_view bytes(s, len);
      if (valid_utf8(bytes)) return std::string(bytes);
      return nlohmann::json{{std::string(kBytesKey), base64_encode(bytes)}};
    }
    case LUA_TTABLE: {
      const TableShape shape = classify_table(L, idx, path);
      if (shape.array) {
        nlohmann::json array = nlohmann::json::array();
        for (std::size_t i = 1; i <= shape.length; ++i) {
          const Path item{path, {}, i, true};
          lua_rawgeti(L, idx, static_cast<int>(i));
          array.push_back(to_json_at(L, lua_gettop(L), &item));
          lua_pop(L, 1);
        }
        return array;
      }
      nlohmann::json object = nlohmann::json::object();
      for (const std::string_view key : shape.keys) {
        const Path member{path, key, 0, false};
        if (!valid_utf8(key)) fail_at(&member, "a key that is not valid UTF-8");
        lua_pushlstring(L, key.data(), key.size());
        lua_rawget(L, idx);
        object[std::string(key)] = to_json_at(L, lua_gettop(L), &member);
        lua_pop(L, 1);
      }
      return object;
    }
    default:
      fail_at(path, std::string("cannot encode a ") + luaL_typename(L, idx));
  }
}

}  // namespace

nlohmann::json to_json(lua_State* L, int idx) {
  return to_json_at(L, idx < 0 ? lua_gettop(L) + idx + 1 : idx, nullptr);
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

void register_type(lua_State* L, const char* name, lua_CFunction gc, const luaL_Reg* methods) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  set_functions(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

namespace {

constexpr char kHex[] = "0123456789abcdef";

// Appends s as a JSON string: '"', '\\' and every control character (C0,
// DEL, C1) escaped, so the text is also safe to print. Invalid UTF-8 becomes
// U+FFFD with `replace`; otherwise nothing is appended and it returns false.
bool append_json_string(std::string& out, std::string_view s, bool replace) {
  const std::size_t start = out.size();
  out += '"';
  std::size_t plain = 0;  // start of the run of bytes copied as they are
  std::size_t i = 0;
  const auto escape_u = [&](unsigned char c) {
    out += "\\u00";
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  };
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    out.append(s.data() + plain, i - plain);
    if (c < 0x80) {
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
          escape_u(c);
      }
      ++i;
    } else if (const std::size_t n = utf8_sequence_length(s, i); n == 0) {
      if (!replace) {
        out.resize(start);
        return false;
      }
      out += "\xEF\xBF\xBD";
      ++i;
    } else if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) {
      escape_u(static_cast<unsigned char>(s[i + 1]));  // C1 control
      i += 2;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
    plain = i;
  }
  out.append(s.data() + plain, i - plain);
  out += '"';
  return true;
}

void newline(std::string& out, int indent, int depth) {
  if (indent <= 0) return;
  out += '\n';
  out.append(static_cast<std::size_t>(indent * depth), ' ');
}

struct EncodeOptions {
  int indent = 0;
  bool replace_invalid_utf8 = false;
};

// Straight from the Lua stack to text (the journal and audit hot path: no
// intermediate tree). Tables as classify_table says; object keys sorted so
// output is stable; numbers in the shortest form that reads back the same.
void encode(lua_State* L, int idx, std::string& out, const EncodeOptions& options, int depth, const Path* path) {
  if (depth > 64) fail_at(path, "nesting deeper than 64");
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
      fail_at(path, "cannot encode a light userdata");
    case LUA_TNUMBER: {
      const double n = lua_tonumber(L, idx);
      if (!std::isfinite(n)) fail_at(path, "cannot encode a non-finite number");
      char buf[32];
      const auto end = std::floor(n) == n && std::fabs(n) < 9.007199254740992e15
                           ? std::to_chars(buf, buf + sizeof buf, static_cast<long long>(n)).ptr
                           : std::to_chars(buf, buf + sizeof buf, n).ptr;
      out.append(buf, end);
      return;
    }
    case LUA_TSTRING: {
      std::size_t len = 0;
      const char* str = lua_tolstring(L, idx, &len);
      const std::string_view bytes(str, len);
      if (!append_json_string(out, bytes, options.replace_invalid_utf8)) {
        out += "{\"$b64\":\"";
        out += base64_encode(bytes);
        out += "\"}";
      }
      return;
    }
    case LUA_TTABLE:
      break;
    default:
      fail_at(path, std::string("cannot encode a ") + luaL_typename(L, idx));
  }
  const TableShape shape = classify_table(L, idx, path);
  if (shape.array) {
    out += '[';
    for (std::size_t i = 1; i <= shape.length; ++i) {
      if (i > 1) out += ',';
      newline(out, options.indent, depth + 1);
      const Path item{path, {}, i, true};
      lua_rawgeti(L, idx, static_cast<int>(i));
      encode(L, lua_gettop(L), out, options, depth + 1, &item);
      lua_pop(L, 1);
    }
    if (shape.length > 0) newline(out, options.indent, depth);
    out += ']';
    return;
  }
  out += '{';
  bool first = true;
  for (const std::string_view key : shape.keys) {
    const Path member{path, key, 0, false};
    if (!first) out += ',';
    first = false;
    newline(out, options.indent, depth + 1);
    if (!append_json_string(out, key, options.replace_invalid_utf8)) {
      fail_at(&member, "a key that is not valid UTF-8");
    }
    out += options.indent > 0 ? ": " : ":";
    lua_pushlstring(L, key.data(), key.size());
    lua_rawget(L, idx);
    encode(L, lua_gettop(L), out, options, depth + 1, &member);
    lua_pop(L, 1);
  }
  if (!first) newline(out, options.indent, depth);
  out += '}';
}

}  // namespace

std::string encode_json(lua_State* L, int idx, bool pretty) {
  EncodeOptions options;
  options.indent = pretty ? 2 : 0;
  std::string out;
  out.reserve(256);
  encode(L, idx, out, options, 0, nullptr);
  return out;
}

namespace {

// encode(value [, {pretty = true, invalid_utf8 = "b64" | "replace"}]) -> string
int l_json_encode(lua_State* L) {
  luaL_checkany(L, 1);
  EncodeOptions options;
  options.indent = opt_bool_field(L, 2, "pretty", false) ? 2 : 0;
  const std::string invalid = opt_string_field(L, 2, "invalid_utf8", "b64");
  if (invalid != "b64" && invalid != "replace") {
    throw Misuse("rch.json.encode: invalid_utf8 must be \"b64\" or \"replace\", not \"" + invalid + "\"");
  }
  options.replace_invalid_utf8 = invalid == "replace";
  std::string out;
  out.reserve(256);
  encode(L, 1, out, options, 0, nullptr);
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// Builds the Lua value straight from the parser's events (no DOM in
// between: decoding a journal or result.json allocates only the Lua
// tables). The same values as push_json: null is nil, arrays are marked,
// {"$b64": "…"} gives back its bytes.
class LuaSax {
 public:
  explicit LuaSax(lua_State* L) : L_(L) {}

  bool null() {
    lua_pushnil(L_);
    return done(false);
  }
  bool boolean(bool b) {
    lua_pushboolean(L_, b ? 1 : 0);
    return done(false);
  }
  bool number_integer(std::int64_t n) { return number(static_cast<lua_Number>(n)); }
  bool number_unsigned(std::uint64_t n) { return number(static_cast<lua_Number>(n)); }
  bool number_float(double n, const std::string&) { return number(n); }
  bool string(std::string& s) {
    push(s);
    return done(true);
  }
  bool binary(nlohmann::json::binary_t&) {
    lua_pushnil(L_);
    return done(false);
  }
  bool start_object(std::size_t) {
    luaL_checkstack(L_, 4, "json nesting too deep");
    lua_newtable(L_);
    frames_.push_back({false, 0, 0, false});
    return true;
  }
  bool key(std::string& k) {
    push(k);
    frames_.back().bytes_key = k == kBytesKey;
    return true;
  }
  bool end_object() {
    const Frame f = frames_.back();
    frames_.pop_back();
    if (f.count == 1 && f.bytes_string) {
      lua_getfield(L_, -1, kBytesKey.data());
      std::size_t len = 0;
      const char* text = lua_tolstring(L_, -1, &len);
      auto bytes = base64_decode({text, len});
      if (!bytes) throw std::runtime_error("rch.json.decode: {\"$b64\": …} does not hold base64");
      lua_pop(L_, 2);
      lua_pushlstring(L_, bytes->data(), bytes->size());
    }
    return done(false);
  }
  bool start_array(std::size_t) {
    luaL_checkstack(L_, 4, "json nesting too deep");
    lua_newtable(L_);
    luaL_getmetatable(L_, kArrayMeta);
    lua_setmetatable(L_, -2);
    frames_.push_back({true, 0, 0, false});
    return true;
  }
  bool end_array() {
    frames_.pop_back();
    return done(false);
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

 private:
  struct Frame {
    bool array;
    int count;          // items (array index) or members so far
    bool bytes_key;     // object: the member being read is "$b64"
    bool bytes_string;  // object: its "$b64" member is a string
  };

  void push(const std::string& s) {
    luaL_checkstack(L_, 2, "json nesting too deep");
    lua_pushlstring(L_, s.data(), s.size());
  }
  bool number(lua_Number n) {
    lua_pushnumber(L_, n);
    return done(false);
  }
  // The value on top of the stack goes into its container (a top-level value stays).
  bool done(bool is_string) {
    if (frames_.empty()) return true;
    Frame& f = frames_.back();
    ++f.count;
    if (f.array) {
      lua_rawseti(L_, -2, f.count);
    } else {
      if (f.bytes_key) f.bytes_string = is_string;
      lua_rawset(L_, -3);
    }
    return true;
  }

  lua_State* L_;
  std::vector<Frame> frames_;
};

// The common case, fast: a document of ASCII strings without \u escapes
// (journals, audit logs, result.json). It reads what the parser reads, to
// the same values, or gives up (false, the stack as it was) on anything else
// (other bytes, \u, "$b64", deep nesting, invalid JSON): the parser then decides.
// With `only`, a top-level object gets just those keys: the others are read
// (and must be valid) but make no Lua value.
class FastJson {
 public:
  FastJson(lua_State* L, std::string_view text, const std::vector<std::string>* only = nullptr)
      : L_(L), p_(text.data()), end_(text.data() + text.size()), only_(only) {}

  bool parse() {
    const int top = lua_gettop(L_);
    if (value(0)) {
      space();
      if (p_ == end_) return true;
    }
    lua_settop(L_, top);
    return false;
  }

 private:
  static constexpr int kMaxDepth = 200;

  void space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }
  // A string without \u and with printable ASCII only, pushed when emitting.
  bool string() {
    std::string_view text;
    if (!string(text)) return false;
    if (emit_) lua_pushlstring(L_, text.data(), text.size());
    return true;
  }
  // The same, into `out` (valid until the next string is read).
  bool string(std::string_view& out) {
    ++p_;  // the opening quote
    const char* start = p_;
    while (p_ != end_ && *p_ != '"' && *p_ != '\\') {
      const auto c = static_cast<unsigned char>(*p_);
      if (c < 0x20 || c >= 0x80) return false;
      ++p_;
    }
    if (p_ == end_) return false;
    if (*p_ == '"') {
      out = std::string_view(start, static_cast<std::size_t>(p_ - start));
      ++p_;
      return true;
    }
    buffer_.assign(start, p_);
    while (p_ != end_ && *p_ != '"') {
      auto c = static_cast<unsigned char>(*p_++);
      if (c == '\\') {
        if (p_ == end_) return false;
        switch (*p_++) {
          case '"':
            c = '"';
            break;
          case '\\':
            c = '\\';
            break;
          case '/':
            c = '/';
            break;
          case 'b':
            c = '\b';
            break;
          case 'f':
            c = '\f';
            break;
          case 'n':
            c = '\n';
            break;
          case 'r':
            c = '\r';
            break;
          case 't':
            c = '\t';
            break;
          default:
            return false;  // \u and invalid escapes: the parser's call
        }
      } else if (c < 0x20 || c >= 0x80) {
        return false;
      }
      buffer_ += static_cast<char>(c);
    }
    if (p_ == end_) return false;
    ++p_;
    out = buffer_;
    return true;
  }
  // JSON's number grammar; the value as the parser gives it (an integer -0 is 0).
  bool number() {
    const char* start = p_;
    bool integer = true;
    if (*p_ == '-') ++p_;
    if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ != end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    double value = 0;
    const auto [ptr, ec] = std::from_chars(start, p_, value);
    if (ec != std::errc() || ptr != p_) return false;  // out of range: the parser's call
    if (emit_) lua_pushnumber(L_, integer && value == 0 ? 0.0 : value);
    return true;
  }
  bool value(int depth) {
    space();
    if (p_ == end_) return false;
    switch (*p_) {
      case '"':
        return string();
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case 't':
        if (!literal("true")) return false;
        if (emit_) lua_pushboolean(L_, 1);
        return true;
      case 'f':
        if (!literal("false")) return false;
        if (emit_) lua_pushboolean(L_, 0);
        return true;
      case 'n':
        if (!literal("null")) return false;
        if (emit_) lua_pushnil(L_);
        return true;
      default:
        return number();
    }
  }
  bool object(int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    if (emit_) {
      luaL_checkstack(L_, 4, "json nesting too deep");
      lua_newtable(L_);
    }
    space();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    const bool outer = emit_;
    for (;;) {
      space();
      std::string_view key;
      if (p_ == end_ || *p_ != '"' || !string(key)) return false;
      if (key == kBytesKey) return false;  // bytes: the parser's call
      emit_ = outer && (depth > 1 || only_ == nullptr || std::find(only_->begin(), only_->end(), key) != only_->end());
      if (emit_) lua_pushlstring(L_, key.data(), key.size());
      space();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      if (!value(depth)) return false;
      if (emit_) lua_rawset(L_, -3);
      emit_ = outer;
      bool closed = false;
      if (!after_item('}', closed)) return false;
      if (closed) return true;
    }
  }
  bool array(int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    if (emit_) {
      luaL_checkstack(L_, 4, "json nesting too deep");
      lua_newtable(L_);
      luaL_getmetatable(L_, kArrayMeta);
      lua_setmetatable(L_, -2);
    }
    space();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (int i = 1;; ++i) {
      if (!value(depth)) return false;
      if (emit_) lua_rawseti(L_, -2, i);
      bool closed = false;
      if (!after_item(']', closed)) return false;
      if (closed) return true;
    }
  }
  // After an object member or array element: the closing bracket (closed) or a ','; anything else fails.
  bool after_item(char close, bool& closed) {
    space();
    if (p_ == end_) return false;
    closed = *p_ == close;
    if (!closed && *p_ != ',') return false;
    ++p_;
    return true;
  }

  lua_State* L_;
  const char* p_;
  const char* end_;
  const std::vector<std::string>* only_;
  bool emit_ = true;  // false inside a top-level value that `only_` leaves out
  std::string buffer_;
};

// Pushes the value of `text`; false (nothing pushed) when it is not valid JSON.
bool push_parsed(lua_State* L, std::string_view text) {
  if (FastJson(L, text).parse()) return true;
  const int top = lua_gettop(L);
  LuaSax sax(L);
  if (nlohmann::json::sax_parse(text, &sax, nlohmann::json::input_format_t::json, true, false)) return true;
  lua_settop(L, top);
  return false;
}

}  // namespace

bool push_json_text(lua_State* L, std::string_view text) {
  if (push_parsed(L, text)) return true;
  // A record written before {"$b64"} existed holds the raw bytes: read it
  // with those bytes as U+FFFD rather than lose the whole record.
  return !valid_utf8(text) && push_parsed(L, replace_invalid_utf8(text));
}

bool push_json_fields(lua_State* L, std::string_view text, const std::vector<std::string>& fields) {
  return FastJson(L, text, &fields).parse() || push_json_text(L, text);
}

namespace {

// decode(string) -> value | nil, error. {"$b64": "…"} gives back its bytes.
int l_json_decode(lua_State* L) {
  std::size_t len = 0;
  const char* s = luaL_checklstring(L, 1, &len);
  if (!push_json_text(L, {s, len})) return push_failure(L, "rch.json.decode: invalid JSON");
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
