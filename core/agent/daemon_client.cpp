// The flat JSON reader of the rchd protocol and the client side of the
// daemon's Unix socket (connect, one request line, one reply line, with a
// deadline over the whole exchange so a wedged daemon cannot hang rch update).
#include "core/agent/daemon_client.hpp"

#include "core/util/unique_fd.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <thread>
#include <utility>

namespace rch {
namespace fs = std::filesystem;

namespace {

using steady = std::chrono::steady_clock;

// ---- reader ----------------------------------------------------------------

class FlatParser {
 public:
  explicit FlatParser(std::string_view text) : s_(text) {}

  Result<FlatJsonObject> parse_object() {
    FlatJsonObject obj;
    skip_ws();
    if (!eat('{')) return fail("expected '{'");
    skip_ws();
    if (!eat('}')) {
      while (true) {
        skip_ws();
        if (peek() != '"') return fail("expected a string key");
        std::string key;
        if (auto r = parse_string(key); !r) return Error{r.error()};
        skip_ws();
        if (!eat(':')) return fail("expected ':' after key \"" + key + "\"");
        JsonValue value;
        if (auto r = parse_value(value); !r) return Error{r.error()};
        if (!obj.fields.emplace(key, std::move(value)).second) return fail("duplicate key \"" + key + "\"");
        skip_ws();
        if (eat('}')) break;
        if (!eat(',')) return fail("expected ',' or '}'");
      }
    }
    skip_ws();
    if (pos_ != s_.size()) return fail("unexpected text after the object");
    return obj;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool eat_word(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }
  Error fail(const std::string& what) const {
    return make_error("invalid JSON at offset " + std::to_string(pos_) + ": " + what);
  }

  Result<void> parse_value(JsonValue& v) {
    skip_ws();
    const char c = peek();
    if (c == '"') {
      v.kind = JsonValue::Kind::string;
      return parse_string(v.string);
    }
    if (c == '[') return parse_string_array(v);
    if (c == '{') return fail("nested objects are not part of the protocol");
    if (eat_word("true")) {
      v.kind = JsonValue::Kind::boolean;
      v.boolean = true;
      return {};
    }
    if (eat_word("false")) {
      v.kind = JsonValue::Kind::boolean;
      return {};
    }
    if (eat_word("null")) {
      v.kind = JsonValue::Kind::null;
      return {};
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(v);
    return fail("expected a value");
  }

  Result<void> parse_string_array(JsonValue& v) {
    v.kind = JsonValue::Kind::string_array;
    eat('[');
    skip_ws();
    if (eat(']')) return {};
    while (true) {
      skip_ws();
      if (peek() != '"') return fail("arrays may only hold strings");
      std::string item;
      if (auto r = parse_string(item); !r) return r;
      v.strings.push_back(std::move(item));
      skip_ws();
      if (eat(']')) return {};
      if (!eat(',')) return fail("expected ',' or ']'");
    }
  }

  // The JSON number grammar, checked by hand because from_chars alone would
  // also take "01", "1." or "inf".
  Result<void> parse_number(JsonValue& v) {
    const size_t start = pos_;
    eat('-');
    if (eat('0')) {
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      return fail("expected a digit");
    }
    if (eat('.')) {
      if (!(peek() >= '0' && peek() <= '9')) return fail("expected a digit after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) return fail("expected a digit in the exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    // from_chars, unlike strtod, does not depend on the locale.
    double d = 0;
    auto [end, ec] = std::from_chars(s_.data() + start, s_.data() + pos_, d);
    if (ec != std::errc() || end != s_.data() + pos_ || !std::isfinite(d)) return fail("number out of range");
    v.kind = JsonValue::Kind::number;
    v.number = d;
    return {};
  }

  Result<unsigned> parse_hex4() {
    if (pos_ + 4 > s_.size()) return fail("truncated \\u escape");
    unsigned cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') {
        cp |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        cp |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        cp |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        return fail("invalid \\u escape");
      }
    }
    return cp;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  Result<void> parse_string(std::string& out) {
    eat('"');
    while (true) {
      if (pos_ >= s_.size()) return fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return {};
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) return fail("unterminated escape");
      switch (const char e = s_[pos_++]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          auto hi = parse_hex4();
          if (!hi) return Error{hi.error()};
          unsigned cp = *hi;
          if (cp >= 0xdc00 && cp <= 0xdfff) return fail("unpaired low surrogate");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (!eat_word("\\u")) return fail("unpaired high surrogate");
            auto lo = parse_hex4();
            if (!lo) return Error{lo.error()};
            if (*lo < 0xdc00 || *lo > 0xdfff) return fail("unpaired high surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (*lo - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          return fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

Error wrong_type(std::string_view key, std::string_view want) {
  return make_error("field \"" + std::string(key) + "\" must be " + std::string(want));
}

// ---- socket client -----------------------------------------------------------

int remaining_ms(steady::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 60'000));
}

// Why a request failed: `absent` means no daemon is there at all (no socket
// file, or a socket file nobody listens on), which status reports as "not
// running" rather than as an error.
struct RequestFailure {
  bool absent = false;
};

Result<UniqueFd> connect_daemon(const fs::path& socket, steady::time_point deadline, RequestFailure& why) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = socket.string();
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error("rchd socket path " + path + " is empty or longer than " +
                      std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  while (true) {
    // Non-blocking, so a daemon whose backlog is full (it is not accepting)
    // gives EAGAIN and the deadline applies instead of a hang in connect().
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) return make_error(std::string("cannot create a Unix socket: ") + std::strerror(errno));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
      why.absent = true;
      return make_error("rchd is not running (nothing listens on " + path + ": " + std::strerror(err) + ")");
    }
    if (err != EAGAIN && err != EINTR) {
      return make_error("cannot connect to rchd at " + path + ": " + std::strerror(err));
    }
    if (steady::now() >= deadline) return make_error("rchd at " + path + " is not accepting connections (timed out)");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<std::string> request(const fs::path& socket, const std::string& json_line, std::chrono::milliseconds timeout,
                            RequestFailure& why) {
  if (json_line.find('\n') != std::string::npos) return make_error("a request must be one line");
  const auto deadline = steady::now() + timeout;
  auto fd = connect_daemon(socket, deadline, why);
  if (!fd) return Error{fd.error()};

  const std::string out = json_line + "\n";
  size_t sent = 0;
  while (sent < out.size()) {
    // MSG_NOSIGNAL: a daemon that hangs up must give an error, not SIGPIPE.
    ssize_t n = ::send(fd->get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return make_error(std::string("cannot send to rchd: ") + std::strerror(errno));
    pollfd p{fd->get(), POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0 && steady::now() >= deadline) {
      return make_error("timed out sending to rchd at " + socket.string());
    }
  }

  constexpr size_t k_max_reply = 1 << 20;
  std::string in;
  char buf[4096];
  while (true) {
    if (const auto nl = in.find('\n'); nl != std::string::npos) return in.substr(0, nl);
    if (in.size() > k_max_reply) return make_error("reply of rchd is longer than 1 MiB");
    ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return make_error("rchd closed the connection without a reply");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return make_error(std::string("cannot read from rchd: ") + std::strerror(errno));
    pollfd p{fd->get(), POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0 && steady::now() >= deadline) {
      return make_error("no reply from rchd at " + socket.string() + " within " + std::to_string(timeout.count()) +
                        " ms");
    }
  }
}

// The reply as an object whose "ok" is true; a refusal becomes an error
// carrying the daemon's own message.
Result<FlatJsonObject> ok_reply(const std::string& line) {
  auto obj = parse_flat_json(line);
  if (!obj) return make_error("bad reply from rchd (" + obj.error() + "): " + line);
  auto ok = obj->get_bool("ok");
  if (!ok || !ok->has_value()) return make_error("bad reply from rchd (no \"ok\"): " + line);
  if (!**ok) {
    auto err = obj->get_string("error");
    return make_error("rchd: " + (err && err->has_value() ? **err : std::string("request refused")));
  }
  return obj;
}

constexpr std::chrono::milliseconds k_request_timeout{5000};

Result<void> simple_command(const fs::path& socket, const std::string& line) {
  RequestFailure why;
  auto reply = request(socket, line, k_request_timeout, why);
  if (!reply) return Error{reply.error()};
  if (auto obj = ok_reply(*reply); !obj) return Error{obj.error()};
  return {};
}

// True once pid has exited. A zombie counts as gone: the daemon's parent
// (a test, a supervisor) may not have reaped it yet, but it has exited.
bool process_gone(int pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const auto paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return false;
  const char state = text[paren + 2];
  return state == 'Z' || state == 'X';
}

}  // namespace

const JsonValue* FlatJsonObject::find(std::string_view key) const {
  auto it = fields.find(key);
  return it == fields.end() ? nullptr : &it->second;
}

Result<std::optional<bool>> FlatJsonObject::get_bool(std::string_view key) const {
  const JsonValue* v = find(key);
  if (!v) return std::optional<bool>();
  if (v->kind != JsonValue::Kind::boolean) return wrong_type(key, "true or false");
  return std::optional<bool>(v->boolean);
}

Result<std::optional<double>> FlatJsonObject::get_number(std::string_view key) const {
  const JsonValue* v = find(key);
  if (!v) return std::optional<double>();
  if (v->kind != JsonValue::Kind::number) return wrong_type(key, "a number");
  return std::optional<double>(v->number);
}

Result<std::optional<long long>> FlatJsonObject::get_integer(std::string_view key, long long min, long long max) const {
  const JsonValue* v = find(key);
  if (!v) return std::optional<long long>();
  const std::string want = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  if (v->kind != JsonValue::Kind::number || v->number != std::floor(v->number) ||
      v->number < static_cast<double>(min) || v->number > static_cast<double>(max)) {
    return wrong_type(key, want);
  }
  return std::optional<long long>(static_cast<long long>(v->number));
}

Result<std::optional<std::string>> FlatJsonObject::get_string(std::string_view key) const {
  const JsonValue* v = find(key);
  if (!v) return std::optional<std::string>();
  if (v->kind != JsonValue::Kind::string) return wrong_type(key, "a string");
  return std::optional<std::string>(v->string);
}

Result<std::optional<std::vector<std::string>>> FlatJsonObject::get_strings(std::string_view key) const {
  const JsonValue* v = find(key);
  if (!v) return std::optional<std::vector<std::string>>();
  if (v->kind != JsonValue::Kind::string_array) return wrong_type(key, "an array of strings");
  return std::optional<std::vector<std::string>>(v->strings);
}

Result<FlatJsonObject> parse_flat_json(std::string_view text) { return FlatParser(text).parse_object(); }

fs::path daemon_socket_path(const fs::path& rch_home) { return rch_home / "rchd.sock"; }

Result<std::string> daemon_request(const fs::path& socket, const std::string& json_line,
                                   std::chrono::milliseconds timeout) {
  RequestFailure why;
  return request(socket, json_line, timeout, why);
}

Result<DaemonStatus> daemon_status(const fs::path& socket) {
  RequestFailure why;
  auto reply = request(socket, "{\"cmd\":\"status\"}", k_request_timeout, why);
  if (!reply) {
    if (why.absent) return DaemonStatus{};
    return Error{reply.error()};
  }
  auto obj = ok_reply(*reply);
  if (!obj) return Error{obj.error()};
  auto pid = obj->get_integer("pid", 1, 0x7fffffff);
  auto version = obj->get_string("version");
  auto draining = obj->get_bool("draining");
  auto active = obj->get_integer("active_builds", 0, 0x7fffffff);
  if (!pid || !version || !draining || !active || !pid->has_value() || !version->has_value() ||
      !draining->has_value() || !active->has_value()) {
    return make_error("bad status reply from rchd: " + *reply);
  }
  DaemonStatus st;
  st.running = true;
  st.pid = static_cast<int>(**pid);
  st.version = **version;
  st.draining = **draining;
  st.active_builds = static_cast<int>(**active);
  return st;
}

Result<void> daemon_drain(const fs::path& socket) { return simple_command(socket, "{\"cmd\":\"drain\"}"); }

Result<void> daemon_undrain(const fs::path& socket) { return simple_command(socket, "{\"cmd\":\"undrain\"}"); }

Result<void> daemon_shutdown(const fs::path& socket, bool force, std::chrono::seconds wait) {
  RequestFailure why;
  const std::string line = std::string("{\"cmd\":\"shutdown\",\"force\":") + (force ? "true" : "false") + "}";
  auto reply = request(socket, line, k_request_timeout, why);
  if (!reply) {
    if (why.absent) return {};  // nothing to stop
    return Error{reply.error()};
  }
  auto obj = ok_reply(*reply);
  if (!obj) return Error{obj.error()};
  auto pid = obj->get_integer("pid", 1, 0x7fffffff);
  if (!pid || !pid->has_value()) return make_error("bad shutdown reply from rchd (no pid): " + *reply);
  const int daemon_pid = static_cast<int>(**pid);
  const auto deadline = steady::now() + wait;
  while (!process_gone(daemon_pid)) {
    if (steady::now() >= deadline) {
      return make_error("rchd (pid " + std::to_string(daemon_pid) + ") accepted shutdown but is still running after " +
                        std::to_string(wait.count()) + "s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {};
}

}  // namespace rch
