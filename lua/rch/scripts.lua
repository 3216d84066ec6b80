--- Strategy and hook lookup through the same resolver as require:
-- --script-dir, then the config dir, then the built-in copy.
local M = {}

local cache = {}

--- Loads the script `kind/name.lua` and returns what it returns.
-- @param kind "strategies" or "hooks"
-- @param name script name without ".lua"
-- @return the module value, or nil, err when no such script exists
function M.load(kind, name)
  if not name:match("^[%w_%-]+$") then
    return nil, ("invalid %s name '%s'"):format(kind, name)
  end
  local key = kind .. "." .. name
  if cache[key] == nil then
    local ok, value = pcall(require, key)
    if not ok then
      if tostring(value):find("no rch script", 1, true) then
        local singular = kind == "strategies" and "strategy" or "hook"
        return nil, ("unknown %s '%s'"):format(singular, name)
      end
      error(value, 0)
    end
    cache[key] = value
  end
  return cache[key]
end

return M
