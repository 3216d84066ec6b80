// Unit tests of core/config/paths and core/config/suggest.
#include "core/config/paths.hpp"

#include <array>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "core/config/suggest.hpp"

namespace fs = std::filesystem;

namespace {

// Sets environment variables for one test and restores them afterwards.
class EnvGuard {
 public:
  ~EnvGuard() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }
  void set(const std::string& name, const char* value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value)
      ::setenv(name.c_str(), value, 1);
    else
      ::unsetenv(name.c_str());
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

constexpr const char* kVars[] = {"RCH_CONFIG_DIR",  "RCH_STATE_DIR",  "RCH_HOME",       "RCH_CACHE_DIR", "RCH_DATA_DIR",
                                 "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"};

}  // namespace

TEST_CASE("Paths defaults under HOME", "[paths]") {
  EnvGuard env;
  for (const char* v : kVars) env.set(v, nullptr);
  env.set("HOME", "/home/alice");
  const auto p = rch::Paths::from_env();
  CHECK(p.config_dir == "/home/alice/.config/rch");
  CHECK(p.state_dir == "/home/alice/.local/state/rch");
  CHECK(p.home == "/home/alice/.rch");
  CHECK(p.cache_dir == "/home/alice/.cache/rch");
  CHECK(p.data_dir == "/home/alice/.local/share/rch");
}

TEST_CASE("Paths follow XDG variables, ignoring empty and relative ones", "[paths]") {
  EnvGuard env;
  for (const char* v : kVars) env.set(v, nullptr);
  env.set("HOME", "/home/alice");
  env.set("XDG_CONFIG_HOME", "/xdg/config");
  env.set("XDG_STATE_HOME", "/xdg/state");
  env.set("XDG_CACHE_HOME", "");
  env.set("XDG_DATA_HOME", "relative/data");
  const auto p = rch::Paths::from_env();
  CHECK(p.config_dir == "/xdg/config/rch");
  CHECK(p.state_dir == "/xdg/state/rch");
  CHECK(p.cache_dir == "/home/alice/.cache/rch");
  CHECK(p.data_dir == "/home/alice/.local/share/rch");
  CHECK(p.home == "/home/alice/.rch");
}

TEST_CASE("RCH_* variables win over XDG, with ~ expanded", "[paths]") {
  EnvGuard env;
  env.set("HOME", "/home/bob");
  env.set("XDG_CONFIG_HOME", "/xdg/config");
  env.set("XDG_DATA_HOME", "/xdg/data");
  env.set("RCH_CONFIG_DIR", "/etc/rch");
  env.set("RCH_STATE_DIR", "~/state");
  env.set("RCH_HOME", "/opt/rch");
  env.set("RCH_CACHE_DIR", "/var/cache/rch");
  env.set("RCH_DATA_DIR", "/var/lib/rch");
  const auto p = rch::Paths::from_env();
  CHECK(p.config_dir == "/etc/rch");
  CHECK(p.state_dir == "/home/bob/state");
  CHECK(p.home == "/opt/rch");
  CHECK(p.cache_dir == "/var/cache/rch");
  CHECK(p.data_dir == "/var/lib/rch");
}

TEST_CASE("expand_user", "[paths]") {
  EnvGuard env;
  env.set("HOME", "/home/carol");
  CHECK(rch::expand_user("~") == "/home/carol");
  CHECK(rch::expand_user("~/") == "/home/carol/");
  CHECK(rch::expand_user("~/.ssh/id_ed25519") == "/home/carol/.ssh/id_ed25519");
  CHECK(rch::expand_user("/abs/~/x") == "/abs/~/x");
  CHECK(rch::expand_user("rel/x") == "rel/x");
  CHECK(rch::expand_user("~dave/x") == "~dave/x");
  CHECK(rch::expand_user("") == "");
  env.set("HOME", nullptr);
  CHECK_FALSE(rch::expand_user("~/x").string().starts_with("~"));  // falls back to the passwd entry
}

TEST_CASE("levenshtein and nearest", "[suggest]") {
  CHECK(rch::levenshtein("", "") == 0);
  CHECK(rch::levenshtein("host", "host") == 0);
  CHECK(rch::levenshtein("hots", "host") == 2);
  CHECK(rch::levenshtein("kitten", "sitting") == 3);
  CHECK(rch::levenshtein("", "abc") == 3);
  CHECK(rch::levenshtein("abc", "") == 3);
  CHECK(rch::levenshtein("prt", "port") == 1);

  constexpr std::array<std::string_view, 7> keys{"id", "host", "user", "port", "identity_file", "root", "tags"};
  CHECK(rch::nearest("hots", keys) == "host");
  CHECK(rch::nearest("prot", keys) == "port");
  CHECK(rch::nearest("identityfile", keys) == "identity_file");
  CHECK(rch::nearest("usr", keys) == "user");
  CHECK(rch::nearest("zzzzzz", keys) == "");
  CHECK(rch::nearest("xy", keys) == "");  // two edits would rewrite all of "id"
  CHECK(rch::did_you_mean("tag", keys) == " (did you mean 'tags'?)");
  CHECK(rch::did_you_mean("completely_else", keys) == "");
}
