--- Lua line coverage for scripts/coverage.sh. Under RCH_LUA_COVERAGE=DIR the
-- engine calls start() once its state is ready and stop(DIR) before it
-- closes: every line run is recorded by a line hook (with the JIT off, since
-- compiled traces fire no hook) and written to DIR/lua-<uuid>.cov, one
-- "chunkname:line" per line.
local M = {}

local seen = {}

function M.start()
  require("jit").off()
  local getinfo = debug.getinfo
  debug.sethook(function(_, line)
    local source = getinfo(2, "S").source
    local lines = seen[source]
    if not lines then
      lines = {}
      seen[source] = lines
    end
    lines[line] = true
  end, "l")
end

function M.stop(dir)
  debug.sethook()
  local out = {}
  for source, lines in pairs(seen) do
    for line in pairs(lines) do out[#out + 1] = source .. ":" .. line end
  end
  local file = io.open(dir .. "/lua-" .. require("rch.sys").uuid() .. ".cov", "w")
  if file then
    file:write(table.concat(out, "\n"), "\n")
    file:close()
  end
end

return M
