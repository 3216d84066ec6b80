--- Hook points of the deploy pipeline. A hook file returns a function
-- `function(ctx, builtin)`; a user file of the same name (hooks/<point>.lua in
-- --script-dir or the config dir) replaces the built-in and receives it as
-- `builtin`, so it can extend rather than rewrite it.
local resolver = require "rch.resolver"

local M = {}

M.POINTS = {
  "pre_deploy", "pre_drain", "post_drain", "pre_install", "post_install", "post_verify", "on_failure",
  "preflight", "canary_health",
}

local loaded = {}

local function load_fn(chunk, origin, name)
  local value = chunk()
  if type(value) ~= "function" then
    error(("%s: hook '%s' must return a function(ctx, builtin), got %s"):format(origin, name, type(value)), 0)
  end
  return value
end

--- The callable for a hook point: fn(ctx) -> what the hook returns.
function M.get(name)
  if loaded[name] then return loaded[name] end
  local chunk, origin = resolver.load("hooks/" .. name .. ".lua")
  if not chunk then error(("hook '%s': %s"):format(name, origin), 0) end
  local fn = load_fn(chunk, origin, name)
  local builtin
  if origin ~= "builtin" then
    local bchunk = resolver.load_builtin("hooks/" .. name .. ".lua")
    if bchunk then builtin = load_fn(bchunk, "builtin", name) end
  end
  loaded[name] = {
    origin = origin,
    call = function(ctx) return fn(ctx, builtin) end,
  }
  return loaded[name]
end

--- Loads every hook point (user overrides and the built-ins they extend), so
-- that a broken one stops a run before any worker is touched.
-- @return true, or nil, err naming the file and line
function M.load_all()
  for _, name in ipairs(M.POINTS) do
    local ok, err = pcall(M.get, name)
    if not ok then return nil, tostring(err) end
  end
  return true
end

local function traceback(err)
  if type(err) ~= "string" then err = tostring(err) end
  if require("rch.log").enabled("debug") then return debug.traceback(err, 2) end
  return err
end

--- Runs a gate hook: true to go on, or false, message (a veto or an error
-- raised by the hook, naming its file:line).
function M.gate(name, ctx)
  local hook = M.get(name)
  local ok, verdict, message = xpcall(hook.call, traceback, ctx)
  if not ok then return false, ("hook %s raised: %s"):format(name, verdict) end
  if verdict == false then
    return false, ("hook %s vetoed: %s"):format(name, message or "no reason given")
  end
  return true
end

return M
