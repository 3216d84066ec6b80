// The bundled Lua scripts, compiled into the binary by cmake/embed_lua.cmake.
#pragma once

#include <cstddef>

namespace rch {

struct EmbeddedScript {
  const char* name;  // relative name: "rch/ui.lua", "hooks/preflight.lua"
  const unsigned char* data;
  std::size_t size;
};

extern const EmbeddedScript kEmbeddedScripts[];
extern const std::size_t kEmbeddedScriptCount;

}  // namespace rch
