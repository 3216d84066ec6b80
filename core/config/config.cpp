// config.toml: each section is a list of fields (key → validator), checked in
// file order so the first problem reported is the first one in the file.
#include "core/config/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <functional>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

#include "core/config/paths.hpp"
#include "core/config/suggest.hpp"
#include "core/store/atomic_file.hpp"

namespace rch {
namespace {

template <class E>
using Choices = std::vector<std::pair<std::string_view, E>>;

const Choices<HostKeyPolicy> kHostKeyPolicies{{"strict", HostKeyPolicy::strict},
                                              {"accept-new", HostKeyPolicy::accept_new}};
const Choices<Requirement> kRequirements{
    {"required", Requirement::required}, {"optional", Requirement::optional}, {"ignore", Requirement::ignore}};
const Choices<bool> kAutoNever{{"auto", true}, {"never", false}};
const Choices<bool> kSources{{"push", false}, {"pull", true}};
const Choices<UpdateChannel> kChannels{
    {"stable", UpdateChannel::stable}, {"beta", UpdateChannel::beta}, {"nightly", UpdateChannel::nightly}};

template <class E>
std::string_view name_of(const Choices<E>& choices, E value) {
  for (const auto& [name, v] : choices) {
    if (v == value) return name;
  }
  return "?";
}

template <class E>
std::string choices_text(const Choices<E>& choices) {
  std::string listed;
  for (const auto& [name, v] : choices) listed += (listed.empty() ? "\"" : ", \"") + std::string(name) + "\"";
  return listed;
}

std::string toml_string(std::string_view s) { return "\"" + std::string(s) + "\""; }

// 64, 0.5: as a person writes it in config.toml.
std::string number_text(double v) {
  std::string t = std::to_string(v);
  t.erase(t.find_last_not_of('0') + 1);
  if (t.back() == '.') t.pop_back();
  return t;
}

constexpr std::int64_t kDay = 86400;

bool toolchain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool base64_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

// Plain http is allowed only to this machine (test servers); anything
// remote must be TLS, even though signatures are checked as well.
bool acceptable_url(std::string_view url) {
  if (std::any_of(url.begin(), url.end(), [](char c) { return static_cast<unsigned char>(c) <= ' '; })) {
    return false;
  }
  if (url.starts_with("https://")) return url.size() > 8;
  if (!url.starts_with("http://")) return false;
  std::string_view host = url.substr(7);
  host = host.substr(0, host.find_first_of("/?#"));
  if (host.find('@') != std::string_view::npos) return false;
  if (host.starts_with("[::1]")) return host.size() == 5 || host[5] == ':';
  host = host.substr(0, host.find(':'));
  return host == "localhost" || host == "127.0.0.1";
}

struct Field {
  std::string_view key;
  std::function<Result<void>(const toml::node&)> apply;
  std::string type;           // what the value may be, for rch-config(5)
  std::string default_value;  // as written in config.toml
};

struct Section {
  std::string_view name;
  std::vector<Field> fields;
};

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {
    const std::filesystem::path p(source);
    base_dir_ = p.has_parent_path() ? p.parent_path() : std::filesystem::path();
  }

  Result<Config> run(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, source_);
    } catch (const toml::parse_error& e) {
      return at(e.source(), std::string(e.description()));
    }
    Config c = default_config();
    std::vector<Field> tables;
    for (auto& s : sections(c)) {
      tables.push_back({s.name, [this, s](const toml::node& n) { return section(s.name, n, s.fields); }, {}, {}});
    }
    // [policy] is free-form: whatever the site's hooks read through ctx.settings.
    tables.push_back({"policy", [&](const toml::node& n) { return policy(n, c.policy_json); }, {}, {}});
    if (auto r = apply_fields(root, "", tables); !r) return Error{r.error()};
    c.origins = std::move(origins_);
    return c;
  }

  // Every section and its keys, storing into `c` (made once a field is built,
  // the fields' default_value is what `c` holds then).
  std::vector<Section> sections(Config& c) const {
    return {{"defaults", defaults_fields(c.defaults)},
            {"preflight", preflight_fields(c.preflight)},
            {"toolchain", toolchain_fields(c.toolchain)},
            {"deploy", deploy_fields(c.deploy)},
            {"canary", canary_fields(c.canary)},
            {"update", update_fields(c.update)},
            {"audit", audit_fields(c.audit)},
            {"state", state_fields(c.state)},
            {"http", http_fields(c.http)}};
  }

 private:
  Error at(const toml::source_region& where, const std::string& message) const {
    return make_error(std::string(source_) + ":" + std::to_string(where.begin.line) + ":" +
                      std::to_string(where.begin.column) + ": " + message);
  }

  static std::string where(std::string_view section) {
    return section.empty() ? std::string() : " in [" + std::string(section) + "]";
  }

  // Runs each entry of `t` through its field, in file order.
  Result<void> apply_fields(const toml::table& t, std::string_view section_name,
                            const std::vector<Field>& fields) const {
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (const auto& [k, v] : t) entries.emplace_back(&k, &v);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      const auto& x = a.first->source().begin;
      const auto& y = b.first->source().begin;
      return x.line != y.line ? x.line < y.line : x.column < y.column;
    });
    std::vector<std::string_view> names;
    for (const auto& f : fields) names.push_back(f.key);
    for (const auto& [k, v] : entries) {
      const auto f = std::find_if(fields.begin(), fields.end(), [&](const Field& x) { return x.key == k->str(); });
      if (f == fields.end()) {
        return at(k->source(),
                  "unknown key '" + std::string(k->str()) + "'" + where(section_name) + did_you_mean(k->str(), names));
      }
      if (auto r = f->apply(*v); !r) return r;
      if (!section_name.empty()) {
        origins_[std::string(section_name) + "." + std::string(k->str())] =
            std::string(source_) + ":" + std::to_string(k->source().begin.line);
      }
    }
    return {};
  }

  Result<void> section(std::string_view name, const toml::node& n, const std::vector<Field>& fields) const {
    const toml::table* t = n.as_table();
    if (t == nullptr)
      return at(n.source(), "'" + std::string(name) + "' must be a table ([" + std::string(name) + "])");
    return apply_fields(*t, name, fields);
  }

  // Field makers: each validates one value and stores it.

  Field integer(std::string_view section, std::string_view key, int& out, std::int64_t lo, std::int64_t hi) const {
    return {key,
            [=, this, &out](const toml::node& n) -> Result<void> {
              const auto* i = n.as_integer();
              if (i == nullptr || i->get() < lo || i->get() > hi) {
                return at(n.source(), std::string(key) + where(section) + " must be an integer between " +
                                          std::to_string(lo) + " and " + std::to_string(hi));
              }
              out = static_cast<int>(i->get());
              return {};
            },
            "integer, " + std::to_string(lo) + " to " + std::to_string(hi), std::to_string(out)};
  }

  Field seconds(std::string_view section, std::string_view key, std::chrono::seconds& out, std::int64_t lo,
                std::int64_t hi) const {
    return {key,
            [=, this, &out](const toml::node& n) -> Result<void> {
              const auto* i = n.as_integer();
              if (i == nullptr || i->get() < lo || i->get() > hi) {
                return at(n.source(), std::string(key) + where(section) +
                                          " must be an integer number of seconds between " + std::to_string(lo) +
                                          " and " + std::to_string(hi));
              }
              out = std::chrono::seconds(i->get());
              return {};
            },
            "seconds (integer), " + std::to_string(lo) + " to " + std::to_string(hi), std::to_string(out.count())};
  }

  // A size in MB, integer or fractional (0.5 = 512 KiB), above 0.
  Field megabytes(std::string_view section, std::string_view key, double& out) const {
    return {key,
            [=, this, &out](const toml::node& n) -> Result<void> {
              const auto v = n.value<double>();
              if (!v || !(*v > 0) || *v > 1e6) {
                return at(n.source(), std::string(key) + where(section) + " must be a number of MB above 0");
              }
              out = *v;
              return {};
            },
            "MB (a number above 0, fractions allowed)", number_text(out)};
  }

  // A delay in seconds, integer or fractional, 0 to one hour.
  Field delay_seconds(std::string_view section, std::string_view key, double& out) const {
    return {key,
            [=, this, &out](const toml::node& n) -> Result<void> {
              const auto v = n.value<double>();
              if (!v || !(*v >= 0) || *v > 3600) {
                return at(n.source(),
                          std::string(key) + where(section) + " must be a number of seconds between 0 and 3600");
              }
              out = *v;
              return {};
            },
            "seconds (a number, fractions allowed), 0 to 3600", number_text(out)};
  }

  Field boolean(std::string_view section, std::string_view key, bool& out) const {
    return {key,
            [=, this, &out](const toml::node& n) -> Result<void> {
              const auto* b = n.as_boolean();
              if (b == nullptr) return at(n.source(), std::string(key) + where(section) + " must be true or false");
              out = b->get();
              return {};
            },
            "true or false", out ? "true" : "false"};
  }

  // A string checked by `valid`, which returns an empty string or the complaint;
  // `type` says what it must be.
  Field string(std::string_view section, std::string_view key, std::string& out, std::string type,
               std::function<std::string(const std::string&)> valid) const {
    return {key,
            [=, this, &out](const toml::node& n) -> Result<void> {
              const auto* s = n.as_string();
              if (s == nullptr) return at(n.source(), std::string(key) + where(section) + " must be a string");
              if (const std::string why = valid(s->get()); !why.empty()) {
                return at(n.source(), std::string(key) + where(section) + " " + why);
              }
              out = s->get();
              return {};
            },
            std::move(type), toml_string(out)};
  }

  // Empty keeps `fallback` (`fallback_text` describes it); otherwise "~/"
  // expanded and relative to the file.
  Field path(std::string_view section, std::string_view key, std::filesystem::path& out, std::filesystem::path fallback,
             std::string_view fallback_text) const {
    return {key,
            [=, this, &out](const toml::node& n) -> Result<void> {
              const auto* s = n.as_string();
              if (s == nullptr) return at(n.source(), std::string(key) + where(section) + " must be a string (a path)");
              if (s->get().empty()) {
                out = fallback;
                return {};
              }
              std::filesystem::path p = expand_user(s->get());
              if (p.is_relative() && !base_dir_.empty()) p = base_dir_ / p;
              out = p.lexically_normal();
              return {};
            },
            "path (~/ expanded, relative to config.toml's directory)",
            "\"\"" + (fallback_text.empty() ? std::string() : " (" + std::string(fallback_text) + ")")};
  }

  template <class E>
  Field choice(std::string_view section, std::string_view key, E& out, const Choices<E>& choices) const {
    return {key,
            [=, this, &out, &choices](const toml::node& n) -> Result<void> {
              std::vector<std::string_view> names;
              for (const auto& [name, v] : choices) names.push_back(name);
              const auto* s = n.as_string();
              if (s != nullptr) {
                for (const auto& [name, v] : choices) {
                  if (name == s->get()) {
                    out = v;
                    return {};
                  }
                }
              }
              std::string msg = std::string(key) + where(section) + " must be one of " + choices_text(choices);
              if (s != nullptr) msg += " (got \"" + s->get() + "\")" + did_you_mean(s->get(), names);
              return at(n.source(), msg);
            },
            "one of " + choices_text(choices), toml_string(name_of(choices, out))};
  }

  std::vector<Field> defaults_fields(Config::Defaults& d) const {
    const std::string_view s = "defaults";
    return {integer(s, "parallel", d.parallel, 1, 10000),
            integer(s, "probe_parallel", d.probe_parallel, 1, 10000),
            seconds(s, "connect_timeout", d.connect_timeout, 1, kDay),
            seconds(s, "command_timeout", d.command_timeout, 1, 7 * kDay),
            choice(s, "host_key_policy", d.host_key_policy, kHostKeyPolicies),
            path(s, "known_hosts", d.known_hosts, d.known_hosts, "~/.ssh/known_hosts"),
            path(s, "ssh_config", d.ssh_config, d.ssh_config, "~/.ssh/config if it exists"),
            integer(s, "max_output_bytes", d.max_output_bytes, 1024, 1 << 30),
            integer(s, "min_transfer_mbps", d.min_transfer_mbps, 1, 1'000'000),
            seconds(s, "stall_timeout", d.stall_timeout, 1, kDay),
            integer(s, "connect_retries", d.connect_retries, 0, 100),
            delay_seconds(s, "connect_retry_delay", d.connect_retry_delay)};
  }

  std::vector<Field> preflight_fields(Config::Preflight& p) const {
    const std::string_view s = "preflight";
    return {integer(s, "min_disk_mb", p.min_disk_mb, 0, 1'000'000'000), choice(s, "rsync", p.rsync, kRequirements),
            choice(s, "zstd", p.zstd, kRequirements), choice(s, "rustup", p.rustup, kRequirements)};
  }

  std::vector<Field> toolchain_fields(Config::Toolchain& t) const {
    // The name reaches a remote `rustup` command line.
    return {
        string("toolchain", "rust", t.rust, "rustup toolchain name",
               [](const std::string& v) -> std::string {
                 if (v.empty() || v[0] == '-' || !std::all_of(v.begin(), v.end(), toolchain_char)) {
                   return "must be a rustup toolchain name (letters, digits, '.', '_' and '-', not starting with '-')";
                 }
                 return {};
               }),
        boolean("toolchain", "update", t.update)};
  }

  std::vector<Field> deploy_fields(Config::Deploy& d) const {
    // Below 2 the previous version (the rollback target) could not be kept.
    return {integer("deploy", "keep_versions", d.keep_versions, 2, 1000),
            choice("deploy", "compress", d.compress, kAutoNever), choice("deploy", "delta", d.delta, kAutoNever),
            choice("deploy", "source", d.pull, kSources)};
  }

  std::vector<Field> canary_fields(Config::Canary& c) const {
    const std::string_view s = "canary";
    return {integer(s, "percent", c.percent, 1, 100), seconds(s, "wait", c.wait, 0, kDay),
            seconds(s, "interval", c.interval, 0, kDay)};
  }

  std::vector<Field> update_fields(Config::Update& u) const {
    const std::string_view s = "update";
    return {string(s, "url", u.url, "https:// URL (http:// only to localhost)",
                   [](const std::string& v) -> std::string {
                     return acceptable_url(v) ? std::string() : "must be an https:// URL (http:// only to localhost)";
                   }),
            choice(s, "channel", u.channel, kChannels),
            string(s, "minisign_pubkey", u.minisign_pubkey,
                   "minisign public key line (RW…, 56 characters); empty: no signature required",
                   [](const std::string& v) -> std::string {
                     // Ed25519 public key: base64 of "Ed" + 8-byte key id + 32 bytes.
                     if (v.empty()) return {};
                     if (v.size() == 56 && v.starts_with("RW") && std::all_of(v.begin(), v.end(), base64_char)) {
                       return {};
                     }
                     return "must be the key line of a minisign public key (56 base64 characters "
                            "starting with 'RW'), not its comment line";
                   }),
            path(s, "ca_file", u.ca_file, {}, "the system CA store"),
            integer(s, "keep", u.keep, 1, 1000),
            seconds(s, "connect_timeout", u.connect_timeout, 1, kDay),
            seconds(s, "transfer_timeout", u.transfer_timeout, 1, 7 * kDay)};
  }

  std::vector<Field> audit_fields(Config::Audit& a) const {
    const std::string_view s = "audit";
    return {boolean(s, "syslog", a.syslog), path(s, "syslog_socket", a.syslog_socket, a.syslog_socket, "/dev/log"),
            megabytes(s, "rotate_mb", a.rotate_mb), integer(s, "keep_files", a.keep_files, 1, 1000)};
  }

  std::vector<Field> state_fields(Config::State& st) const {
    return {integer("state", "keep_deployments", st.keep_deployments, 1, 1'000'000)};
  }

  std::vector<Field> http_fields(Config::Http& h) const {
    return {seconds("http", "timeout", h.timeout, 1, kDay), megabytes("http", "max_body_mb", h.max_body_mb)};
  }

  // Any keys and values: hooks read them through ctx.settings.policy.
  Result<void> policy(const toml::node& n, std::string& out) const {
    const toml::table* t = n.as_table();
    if (t == nullptr) return at(n.source(), "'policy' must be a table ([policy])");
    std::ostringstream json;
    json << toml::json_formatter(*t);
    out = json.str();
    for (const auto& [k, v] : *t) {
      origins_["policy." + std::string(k.str())] = std::string(source_) + ":" + std::to_string(k.source().begin.line);
    }
    return {};
  }

  std::string_view source_;
  std::filesystem::path base_dir_;
  mutable std::map<std::string, std::string> origins_;  // "section.key" -> "file:line"
};

}  // namespace

std::string_view to_string(HostKeyPolicy policy) { return name_of(kHostKeyPolicies, policy); }
std::string_view to_string(Requirement requirement) { return name_of(kRequirements, requirement); }
std::string_view to_string(UpdateChannel channel) { return name_of(kChannels, channel); }

Config default_config() {
  Config c;
  c.defaults.known_hosts = expand_user("~/.ssh/known_hosts");
  return c;
}

std::vector<ConfigKeyDoc> config_key_docs() {
  Config c = default_config();
  std::vector<ConfigKeyDoc> docs;
  for (const auto& s : Parser("config.toml").sections(c)) {
    for (const auto& f : s.fields) docs.push_back({std::string(s.name), std::string(f.key), f.type, f.default_value});
  }
  return docs;
}

Result<Config> parse_config(std::string_view text, std::string_view source_name) {
  return Parser(source_name).run(text);
}

Result<Config> load_config(const std::filesystem::path& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (st.type() == std::filesystem::file_type::not_found) return default_config();
  auto text = read_file(path);
  if (!text) return Error{text.error()};
  return parse_config(*text, path.string());
}

}  // namespace rch
