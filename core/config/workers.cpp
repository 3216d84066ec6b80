// workers.toml validation. Values reach ssh command lines and remote shells,
// so anything that could turn into an option ('-') or break a line is
// refused here, with the file position, before any connection is made.
#include "core/config/workers.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "core/config/paths.hpp"
#include "core/config/suggest.hpp"
#include "core/store/atomic_file.hpp"

namespace rch {
namespace {

constexpr std::array<std::string_view, 1> kTopKeys{"workers"};

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {
    const std::filesystem::path p(source);
    base_dir_ = p.has_parent_path() ? p.parent_path() : std::filesystem::path();
  }

  Error at(const toml::source_region& where, const std::string& message) const {
    return make_error(std::string(source_) + ":" + std::to_string(where.begin.line) + ":" +
                      std::to_string(where.begin.column) + ": " + message);
  }

  Result<std::vector<WorkerConfig>> run(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, source_);
    } catch (const toml::parse_error& e) {
      return at(e.source(), std::string(e.description()));
    }
    for (const auto& [key, node] : root) {
      if (key.str() != "workers") {
        return at(key.source(), "unknown key '" + std::string(key.str()) + "'" + did_you_mean(key.str(), kTopKeys));
      }
    }
    std::vector<WorkerConfig> workers;
    const toml::node* node = root.get("workers");
    if (node == nullptr) return workers;
    const toml::array* arr = node->as_array();
    const bool tables =
        arr != nullptr && std::all_of(arr->begin(), arr->end(), [](const toml::node& n) { return n.is_table(); });
    if (!tables) return at(node->source(), "workers must be an array of tables ([[workers]])");

    std::map<std::string, std::uint32_t> first_line;  // id → line of its definition
    for (const toml::node& el : *arr) {
      auto w = worker(*el.as_table());
      if (!w) return Error{w.error()};
      const toml::node& id_node = *el.as_table()->get("id");
      const auto [it, fresh] = first_line.emplace(w->id, id_node.source().begin.line);
      if (!fresh) {
        return at(id_node.source(),
                  "duplicate worker id '" + w->id + "' (first defined at line " + std::to_string(it->second) + ")");
      }
      workers.push_back(std::move(*w));
    }
    return workers;
  }

 private:
  static bool safe_id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  }
  static bool has_space_or_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; });
  }
  static bool has_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < ' ' || c == 0x7f; });
  }

  Result<std::string> string_of(std::string_view key, const toml::node& v) const {
    if (const auto* s = v.as_string()) return s->get();
    return at(v.source(), std::string(key) + " must be a string");
  }

  // The setters of the [[workers]] keys: each checks its value's type and
  // what needs no other key; checks across keys come after all are read.
  using Apply = Result<void> (Parser::*)(std::string_view key, WorkerConfig& w, const toml::node& v) const;
  struct Field {
    std::string_view key;
    Apply apply;
  };

  template <std::string WorkerConfig::*member>
  Result<void> set_string(std::string_view key, WorkerConfig& w, const toml::node& v) const {
    auto s = string_of(key, v);
    if (!s) return Error{s.error()};
    w.*member = std::move(*s);
    return {};
  }

  // A local file: ~ expanded, relative to workers.toml's directory.
  template <std::string WorkerConfig::*member>
  Result<void> set_path(std::string_view key, WorkerConfig& w, const toml::node& v) const {
    auto s = string_of(key, v);
    if (!s) return Error{s.error()};
    if (s->empty()) return at(v.source(), std::string(key) + " must not be empty (omit it to use ssh's default)");
    std::filesystem::path p = expand_user(*s);
    if (p.is_relative() && !base_dir_.empty()) p = base_dir_ / p;
    w.*member = p.string();
    return {};
  }

  Result<void> set_port(std::string_view, WorkerConfig& w, const toml::node& v) const {
    const auto* i = v.as_integer();
    if (i == nullptr || i->get() < 1 || i->get() > 65535) {
      return at(v.source(), "port must be an integer between 1 and 65535");
    }
    w.port = static_cast<int>(i->get());
    return {};
  }

  Result<void> set_tags(std::string_view, WorkerConfig& w, const toml::node& v) const {
    const auto* a = v.as_array();
    if (a == nullptr) return at(v.source(), "tags must be an array of strings");
    for (const toml::node& tag : *a) {
      const auto* s = tag.as_string();
      if (s == nullptr) return at(tag.source(), "tags must be an array of strings");
      const std::string& name = s->get();
      if (name.empty() || name[0] == '-' || !std::all_of(name.begin(), name.end(), safe_id_char)) {
        return at(tag.source(),
                  "invalid tag '" + name + "': use only letters, digits, '.', '_' and '-', not starting with '-'");
      }
      w.tags.push_back(name);
    }
    return {};
  }

  static constexpr std::array<Field, 8> kFields{{
      {"id", &Parser::set_string<&WorkerConfig::id>},
      {"host", &Parser::set_string<&WorkerConfig::host>},
      {"user", &Parser::set_string<&WorkerConfig::user>},
      {"port", &Parser::set_port},
      {"identity_file", &Parser::set_path<&WorkerConfig::identity_file>},
      {"certificate_file", &Parser::set_path<&WorkerConfig::certificate_file>},
      {"root", &Parser::set_string<&WorkerConfig::root>},
      {"tags", &Parser::set_tags},
  }};

  static std::span<const std::string_view> worker_keys() {
    static const auto keys = [] {
      std::array<std::string_view, kFields.size()> k{};
      for (std::size_t i = 0; i < kFields.size(); ++i) k[i] = kFields[i].key;
      return k;
    }();
    return keys;
  }

  Result<WorkerConfig> worker(const toml::table& t) {
    WorkerConfig w;
    w.line = static_cast<int>(t.source().begin.line);

    // toml::table is ordered by key; report the first problem in file order.
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (const auto& [k, v] : t) entries.emplace_back(&k, &v);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      const auto& x = a.first->source().begin;
      const auto& y = b.first->source().begin;
      return x.line != y.line ? x.line < y.line : x.column < y.column;
    });

    // Each key once, through its field's setter; the nodes are kept for the checks below.
    std::map<std::string_view, const toml::node*> seen;
    for (const auto& [kp, vp] : entries) {
      const std::string_view key = kp->str();
      const auto* field = std::find_if(kFields.begin(), kFields.end(), [&](const Field& f) { return f.key == key; });
      if (field == kFields.end()) {
        return at(kp->source(),
                  "unknown key '" + std::string(key) + "' in [[workers]]" + did_you_mean(key, worker_keys()));
      }
      if (auto r = (this->*field->apply)(key, w, *vp); !r) return Error{r.error()};
      seen[key] = vp;
    }
    const auto node = [&](std::string_view key) {
      const auto it = seen.find(key);
      return it == seen.end() ? nullptr : it->second;
    };
    const toml::node* id_node = node("id");
    const toml::node* host_node = node("host");
    const toml::node* user_node = node("user");
    const toml::node* root_node = node("root");

    if (id_node == nullptr) return at(t.source(), "missing id in [[workers]]");
    if (w.id.empty()) return at(id_node->source(), "empty id in [[workers]]");
    if (!std::all_of(w.id.begin(), w.id.end(), safe_id_char)) {
      return at(id_node->source(), "invalid worker id '" + w.id + "': use only letters, digits, '.', '_' and '-'");
    }
    if (w.id[0] == '-') return at(id_node->source(), "invalid worker id '" + w.id + "': must not begin with '-'");

    const std::string for_worker = " for worker '" + w.id + "'";
    if (host_node == nullptr) return at(t.source(), "missing host" + for_worker);
    if (w.host.empty()) return at(host_node->source(), "empty host" + for_worker);
    if (w.host[0] == '-') {
      return at(host_node->source(), "invalid host '" + w.host + "'" + for_worker + ": must not begin with '-'");
    }
    if (has_space_or_control(w.host)) {
      return at(host_node->source(), "invalid host '" + w.host + "'" + for_worker + ": contains whitespace");
    }
    if (user_node != nullptr) {
      if (w.user.empty()) return at(user_node->source(), "empty user" + for_worker + " (omit it for ssh's default)");
      if (w.user[0] == '-') {
        return at(user_node->source(), "invalid user '" + w.user + "'" + for_worker + ": must not begin with '-'");
      }
      if (has_space_or_control(w.user) || w.user.find('@') != std::string::npos) {
        return at(user_node->source(), "invalid user '" + w.user + "'" + for_worker + ": contains whitespace or '@'");
      }
    }
    if (root_node != nullptr) {
      if (w.root.empty()) return at(root_node->source(), "empty root" + for_worker);
      if (w.root[0] == '-') {
        return at(root_node->source(), "invalid root '" + w.root + "'" + for_worker + ": must not begin with '-'");
      }
      if (has_control(w.root)) {
        return at(root_node->source(), "invalid root" + for_worker + ": contains control characters");
      }
    }
    return w;
  }

  std::string_view source_;
  std::filesystem::path base_dir_;
};

}  // namespace

Result<std::vector<WorkerConfig>> parse_workers(std::string_view text, std::string_view source_name) {
  return Parser(source_name).run(text);
}

Result<std::vector<WorkerConfig>> load_workers(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text) return Error{text.error()};
  return parse_workers(*text, path.string());
}

}  // namespace rch
