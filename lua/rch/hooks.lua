--- Hook points of the deploy pipeline. A hook file returns a function
-- `function(ctx, builtin)`; a user file of the same name (hooks/<point>.lua in
-- --script-dir or the config dir) replaces the built-in and receives it as
-- `builtin`, so it can extend rather than rewrite it. Every hook is called
-- through M.call: protected, and an error is one line (the traceback at -v).
local rch = require "rch"
local scripts = require "rch.scripts"

local M = {}

M.POINTS = {
  "pre_deploy", "pre_drain", "post_drain", "pre_install", "post_install", "post_verify", "on_failure",
  "preflight", "canary_health",
}

local loaded = {}

-- The gates whose built-in hook only returns true (hooks/<point>.lua; tests/lua/hooks_test.lua
-- holds each to it): with no user file they pass without a call or a context to build for
-- it (four such gates per worker cost about 5 % of a 10k-worker deployment's CPU).
M.PASSING_BUILTINS = {
  pre_deploy = true, pre_drain = true, post_drain = true, pre_install = true, post_install = true, post_verify = true,
}

--- The hook of a point: {origin=, call=fn(ctx)}, or nil, err naming file:line.
function M.get(name)
  if loaded[name] then return loaded[name] end
  local fn, origin = scripts.load("hooks", name)
  if not fn then return nil, ("hook '%s': %s"):format(name, origin) end
  local builtin = origin ~= "builtin" and scripts.builtin("hooks", name) or nil
  loaded[name] = { origin = origin, call = function(ctx) return fn(ctx, builtin) end }
  return loaded[name]
end

--- Loads every hook point (user overrides and the built-ins they extend), so
-- that a broken one stops a run before any worker is touched.
-- @return true, or nil, err naming the file and line
function M.load_all()
  for _, name in ipairs(M.POINTS) do
    local hook, err = M.get(name)
    if not hook then return nil, err end
  end
  return true
end

--- Calls the hook of a point with `ctx`.
-- @return true, the hook's return values… or false, "hook NAME raised: …"
function M.call(name, ctx)
  local hook, err = M.get(name)
  if not hook then return false, err end
  local results = { rch.pcall(hook.call, ctx) }
  if not results[1] then return false, ("hook %s (%s) raised: %s"):format(name, hook.origin, tostring(results[2])) end
  return unpack(results, 1, table.maxn(results))
end

--- Whether the gate `name` passes whatever its context: no user file
-- replaces a built-in that only returns true.
function M.passes(name)
  if not M.PASSING_BUILTINS[name] then return false end
  local hook = M.get(name)
  return hook ~= nil and hook.origin == "builtin"
end

--- Runs a gate hook: true to go on, or false, message (a veto or an error
-- raised by the hook, naming its file:line).
function M.gate(name, ctx)
  local ok, verdict, message = M.call(name, ctx)
  if not ok then return false, verdict end
  if verdict == false then
    return false, ("hook %s vetoed: %s"):format(name, message or "no reason given")
  end
  return true
end

return M
