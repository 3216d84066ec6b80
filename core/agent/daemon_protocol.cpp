// The rchd protocol's JSON, read and written with nlohmann only here. Requests
// are checked strictly (a daemon must not guess): duplicate keys, a field of
// the wrong type and out-of-range numbers are refused with what was expected.
#include "core/agent/daemon_protocol.hpp"

#include <cmath>
#include <set>

#include "core/util/json.hpp"

namespace rch::daemon_protocol {
namespace {

constexpr const char* k_commands = "status, drain, undrain, shutdown, build";

struct DuplicateKey {
  std::string key;
};

// Parses one JSON object; duplicate keys (at any depth) are refused.
Result<Json> parse_object(std::string_view text) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  const auto check = [&](int, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) keys.emplace_back();
    if (event == Json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == Json::parse_event_t::key && !keys.back().insert(parsed.get<std::string>()).second) {
      throw DuplicateKey{parsed.get<std::string>()};
    }
    return true;
  };
  try {
    Json value = Json::parse(text.begin(), text.end(), check);
    if (!value.is_object()) return make_error("expected a JSON object");
    return value;
  } catch (const DuplicateKey& d) {
    return make_error("duplicate key \"" + d.key + "\"");
  } catch (const Json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 6: …"
    const std::string what = e.what();
    const auto at = what.find("] ");
    return make_error("invalid JSON at offset " + std::to_string(e.byte) + ": " +
                      (at == std::string::npos ? what : what.substr(at + 2)));
  }
}

Error wrong_type(std::string_view key, std::string_view want) {
  return make_error("field \"" + std::string(key) + "\" must be " + std::string(want));
}

// Typed access to the fields of a message: nullopt when absent, an error when
// present with another type, so "timeout":"x" is refused, not defaulted.
class Fields {
 public:
  explicit Fields(const Json& object) : object_(object) {}

  Result<std::optional<bool>> boolean(const char* key) const {
    const Json* v = find(key);
    if (!v) return std::optional<bool>();
    if (!v->is_boolean()) return wrong_type(key, "true or false");
    return std::optional<bool>(v->get<bool>());
  }

  Result<std::optional<long long>> integer(const char* key, long long min, long long max) const {
    const Json* v = find(key);
    if (!v) return std::optional<long long>();
    const std::string want = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
    if (!v->is_number()) return wrong_type(key, want);
    const double d = v->get<double>();
    if (d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
      return wrong_type(key, want);
    }
    return std::optional<long long>(static_cast<long long>(d));
  }

  Result<std::optional<std::string>> string(const char* key) const {
    const Json* v = find(key);
    if (!v) return std::optional<std::string>();
    if (!v->is_string()) return wrong_type(key, "a string");
    return std::optional<std::string>(v->get<std::string>());
  }

  Result<std::optional<std::vector<std::string>>> strings(const char* key) const {
    const Json* v = find(key);
    if (!v) return std::optional<std::vector<std::string>>();
    if (!v->is_array()) return wrong_type(key, "an array of strings");
    std::vector<std::string> out;
    for (const Json& item : *v) {
      if (!item.is_string()) return wrong_type(key, "an array of strings");
      out.push_back(item.get<std::string>());
    }
    return std::optional<std::vector<std::string>>(std::move(out));
  }

 private:
  const Json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  const Json& object_;
};

Result<Request> parse_build(const Fields& f) {
  auto argv = f.strings("argv");
  if (!argv) return Error{argv.error()};
  if (!argv->has_value() || (*argv)->empty() || (*argv)->front().empty()) {
    return make_error("build needs \"argv\": a non-empty array of strings");
  }
  auto cwd = f.string("cwd");
  if (!cwd) return Error{cwd.error()};
  Build build{std::move(**argv), cwd->value_or("")};
  if (!build.cwd.empty() && build.cwd.front() != '/') return make_error("\"cwd\" must be an absolute path");
  return Request{std::move(build)};
}

// A reply object whose "ok" is true; a refusal is the daemon's own message.
Result<Json> ok_object(std::string_view line) {
  auto reply = parse_object(line);
  if (!reply) return make_error("bad reply from rchd (" + reply.error() + "): " + std::string(line));
  auto ok = Fields(*reply).boolean("ok");
  if (!ok || !ok->has_value()) return make_error("bad reply from rchd (no \"ok\"): " + std::string(line));
  if (!**ok) {
    auto err = Fields(*reply).string("error");
    return make_error("rchd: " + (err && err->has_value() ? **err : std::string("request refused")));
  }
  return reply;
}

Error bad_reply(std::string_view what, std::string_view line) {
  return make_error("bad " + std::string(what) + " reply from rchd: " + std::string(line));
}

}  // namespace

Result<Request> parse_request(std::string_view line) {
  auto object = parse_object(line);
  if (!object) return Error{object.error()};
  const Fields f(*object);
  auto cmd = f.string("cmd");
  if (!cmd) return Error{cmd.error()};
  if (!cmd->has_value()) return make_error(std::string("missing \"cmd\" (") + k_commands + ")");
  const std::string& name = **cmd;
  if (name == "status") return Request{Status{}};
  if (name == "undrain") return Request{Undrain{}};
  if (name == "drain") {
    auto timeout = f.integer("timeout", 0, 365LL * 24 * 3600);
    if (!timeout) return Error{timeout.error()};
    return Request{Drain{*timeout}};
  }
  if (name == "shutdown") {
    auto force = f.boolean("force");
    if (!force) return Error{force.error()};
    return Request{Shutdown{force->value_or(false)}};
  }
  if (name == "build") return parse_build(f);
  return make_error("unknown cmd \"" + name + "\" (" + k_commands + ")");
}

std::string encode(const Request& request) {
  struct Encoder {
    Json operator()(const Status&) const { return {{"cmd", "status"}}; }
    Json operator()(const Drain& d) const {
      Json j{{"cmd", "drain"}};
      if (d.timeout) j["timeout"] = *d.timeout;
      return j;
    }
    Json operator()(const Undrain&) const { return {{"cmd", "undrain"}}; }
    Json operator()(const Shutdown& s) const { return {{"cmd", "shutdown"}, {"force", s.force}}; }
    Json operator()(const Build& b) const {
      Json j{{"cmd", "build"}, {"argv", b.argv}};
      if (!b.cwd.empty()) j["cwd"] = b.cwd;
      return j;
    }
  };
  return dump_json(std::visit(Encoder{}, request));
}

std::string encode(const StatusReply& r) {
  Json j{{"ok", true},
         {"pid", r.pid},
         {"version", r.version},
         {"draining", r.draining},
         {"active_builds", r.active_builds},
         {"root", r.root},
         {"agent_root", r.agent_root},
         {"disk_free_mb", r.disk_free_mb}};
  if (r.agent_error) j["agent_error"] = *r.agent_error;
  return dump_json(j);
}

std::string encode(const DrainReply& r) {
  return dump_json({{"ok", true}, {"draining", r.draining}, {"active_builds", r.active_builds}});
}

std::string encode(const ShutdownReply& r) {
  return dump_json({{"ok", true}, {"pid", r.pid}, {"active_builds", r.active_builds}});
}

std::string encode(const BuildReply& r) { return dump_json({{"ok", true}, {"job", r.job}}); }

std::string encode(const Refusal& r) {
  Json j{{"ok", false}, {"error", r.error}};
  if (r.active_builds) j["active_builds"] = *r.active_builds;
  return dump_json(j);
}

Result<StatusReply> parse_status_reply(std::string_view line) {
  auto object = ok_object(line);
  if (!object) return Error{object.error()};
  const Fields f(*object);
  auto pid = f.integer("pid", 1, 0x7fffffff);
  auto version = f.string("version");
  auto draining = f.boolean("draining");
  auto active = f.integer("active_builds", 0, 0x7fffffff);
  if (!pid || !version || !draining || !active || !pid->has_value() || !version->has_value() ||
      !draining->has_value() || !active->has_value()) {
    return bad_reply("status", line);
  }
  StatusReply r;
  r.pid = static_cast<int>(**pid);
  r.version = **version;
  r.draining = **draining;
  r.active_builds = static_cast<int>(**active);
  if (auto root = f.string("root"); root && root->has_value()) r.root = **root;
  if (auto agent_root = f.string("agent_root"); agent_root && agent_root->has_value()) r.agent_root = **agent_root;
  if (auto free = f.integer("disk_free_mb", 0, 1LL << 53); free && free->has_value()) r.disk_free_mb = **free;
  if (auto agent_error = f.string("agent_error"); agent_error && agent_error->has_value())
    r.agent_error = **agent_error;
  return r;
}

Result<ShutdownReply> parse_shutdown_reply(std::string_view line) {
  auto object = ok_object(line);
  if (!object) return Error{object.error()};
  const Fields f(*object);
  auto pid = f.integer("pid", 1, 0x7fffffff);
  if (!pid || !pid->has_value()) return make_error("bad shutdown reply from rchd (no pid): " + std::string(line));
  auto active = f.integer("active_builds", 0, 0x7fffffff);
  return ShutdownReply{static_cast<int>(**pid), active && active->has_value() ? static_cast<int>(**active) : 0};
}

Result<BuildReply> parse_build_reply(std::string_view line) {
  auto object = ok_object(line);
  if (!object) return Error{object.error()};
  auto job = Fields(*object).integer("job", 0, 1LL << 53);
  if (!job || !job->has_value()) return bad_reply("build", line);
  return BuildReply{static_cast<uint64_t>(**job)};
}

Result<void> parse_ok_reply(std::string_view line) {
  auto object = ok_object(line);
  if (!object) return Error{object.error()};
  return {};
}

}  // namespace rch::daemon_protocol
