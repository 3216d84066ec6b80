// Where rch keeps its files: config, state, install home, cache and data
// (locks), from RCH_* variables, then the XDG base directories, then ~.
#pragma once

#include <filesystem>
#include <string_view>

#include "core/util/user.hpp"  // home_dir, expand_user

namespace rch {

struct Paths {
  std::filesystem::path config_dir;  // RCH_CONFIG_DIR, $XDG_CONFIG_HOME/rch, ~/.config/rch
  std::filesystem::path state_dir;   // RCH_STATE_DIR,  $XDG_STATE_HOME/rch,  ~/.local/state/rch
  std::filesystem::path home;        // RCH_HOME,       ~/.rch
  std::filesystem::path cache_dir;   // RCH_CACHE_DIR,  $XDG_CACHE_HOME/rch,  ~/.cache/rch
  std::filesystem::path data_dir;    // RCH_DATA_DIR,   $XDG_DATA_HOME/rch,   ~/.local/share/rch

  static Paths from_env();
};

}  // namespace rch
