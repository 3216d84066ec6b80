--- The one loader of user-overridable scripts, hooks/<point>.lua and
-- strategies/<name>.lua, through rch.resolver (--script-dir, then the config
-- dir, then the built-in copy), each checked against its contract on load as
-- nmap's NSE checks a script's required fields.
local resolver = require "rch.resolver"

local M = {}

-- kind -> function(value) returning what breaks the contract, or nil.
local CONTRACTS = {
  hooks = function(value)
    if type(value) ~= "function" then return "must return a function(ctx, builtin), got " .. type(value) end
  end,
  strategies = function(value)
    if type(value) ~= "table" then return "must return a table {name=, describe=, run=}, got " .. type(value) end
    if type(value.run) ~= "function" then return "has no run(d) function" end
    if value.describe ~= nil and type(value.describe) ~= "function" then
      return "describe must be a function(options) returning a string"
    end
  end,
}

local SINGULAR = { hooks = "hook", strategies = "strategy" }

local cache = {}

-- Runs the chunk of `file` found by `find` and checks its value.
-- @return value, origin | nil, err ("unknown …" when no such file)
local function load_checked(kind, name, find)
  local file = kind .. "/" .. name .. ".lua"
  local found, chunk, origin = pcall(find, file)
  if not found then return nil, tostring(chunk) end -- a syntax error: "file:line: message"
  if not chunk then return nil, ("unknown %s '%s'"):format(SINGULAR[kind], name) end
  local ran, value = pcall(chunk, kind .. "." .. name)
  if not ran then return nil, tostring(value) end
  local broken = CONTRACTS[kind](value)
  if broken then return nil, ("%s: %s '%s' %s"):format(origin, SINGULAR[kind], name, broken) end
  return value, origin
end

--- Loads the script `kind/name.lua` along the search path.
-- @param kind "strategies" or "hooks"
-- @param name script name without ".lua"
-- @return value, origin ("builtin" or the file), or nil, err naming the file and line
function M.load(kind, name)
  if not CONTRACTS[kind] then error("rch.scripts: unknown kind " .. tostring(kind), 2) end
  if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
    return nil, ("invalid %s name '%s'"):format(kind, tostring(name))
  end
  local key = kind .. "/" .. name
  if not cache[key] then
    local value, origin = load_checked(kind, name, resolver.load)
    if value == nil then return nil, origin end
    cache[key] = { value = value, origin = origin }
  end
  return cache[key].value, cache[key].origin
end

--- The built-in copy of `kind/name.lua`, which a user override receives.
-- @return value, or nil when rch has no built-in of that name
function M.builtin(kind, name)
  local value = load_checked(kind, name, resolver.load_builtin)
  return value
end

return M
