// Paths::from_env: an empty variable counts as unset, and a relative XDG
// value is ignored, as the XDG base directory spec requires.
#include "core/config/paths.hpp"

#include <cstdlib>
#include <string>

namespace rch {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

std::filesystem::path pick(const char* rch_var, const char* xdg_var, const char* fallback) {
  if (const char* v = env(rch_var)) return expand_user(v);
  if (xdg_var != nullptr) {
    if (const char* v = env(xdg_var); v != nullptr && v[0] == '/') return std::filesystem::path(v) / "rch";
  }
  return home_dir() / fallback;
}

}  // namespace

Paths Paths::from_env() {
  Paths p;
  p.config_dir = pick("RCH_CONFIG_DIR", "XDG_CONFIG_HOME", ".config/rch");
  p.state_dir = pick("RCH_STATE_DIR", "XDG_STATE_HOME", ".local/state/rch");
  p.home = pick("RCH_HOME", nullptr, ".rch");
  p.cache_dir = pick("RCH_CACHE_DIR", "XDG_CACHE_HOME", ".cache/rch");
  p.data_dir = pick("RCH_DATA_DIR", "XDG_DATA_HOME", ".local/share/rch");
  return p;
}

}  // namespace rch
