// rch-lua-test FILE [ARGS…]: runs a Lua test file as the main task of a real
// engine (the same `rch` module the commands use). Exit 0 when it returns
// without raising. RCH_SCRIPT_DIR adds a --script-dir.
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/config/paths.hpp"
#include "core/log/log.hpp"
#include "lua/bind/engine.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: rch-lua-test FILE [ARGS...]\n";
    return 2;
  }
  (void)rch::log::init(0);
  rch::lua::EngineOptions options;
  if (const char* dir = std::getenv("RCH_SCRIPT_DIR")) options.script_dirs.emplace_back(dir);
  options.config_dir = rch::Paths::from_env().config_dir;
  options.verbosity = 1;
  rch::lua::Engine engine(options);
  std::vector<std::string> args(argv + 2, argv + argc);
  auto result = engine.run_file(argv[1], args);
  if (!result.ok()) {
    std::cerr << result.error() << "\n";
    return 1;
  }
  return 0;
}
