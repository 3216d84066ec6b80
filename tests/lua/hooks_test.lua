-- The gates that pass without a call (rch.hooks.passes): only where the
-- built-in hook returns true without reading its context, and never when a
-- user file replaces the built-in.
local hooks = require "rch.hooks"
local scripts = require "rch.scripts"

local points = {}
for _, name in ipairs(hooks.POINTS) do points[name] = true end

-- A context that fails the hook if it reads or writes anything of it.
local untouchable = setmetatable({}, {
  __index = function(_, k) error("the built-in read ctx." .. tostring(k), 2) end,
  __newindex = function(_, k) error("the built-in wrote ctx." .. tostring(k), 2) end,
})

local passing = 0
for name in pairs(hooks.PASSING_BUILTINS) do
  assert(points[name], name .. " is not a hook point")
  local builtin = assert(scripts.builtin("hooks", name), "no built-in " .. name)
  local results = { builtin(untouchable) }
  assert(#results == 1 and results[1] == true, "the built-in " .. name .. " does more than return true")
  if name ~= "post_verify" then
    assert(hooks.passes(name) == true, name .. ": a built-in that only passes is still called")
  end
  passing = passing + 1
end
assert(passing >= 4, "the four gates every worker passes (pre_deploy, pre_install, post_install, post_verify)")

-- Hooks that do work are always called.
for _, name in ipairs({ "preflight", "on_failure", "canary_health" }) do
  assert(hooks.passes(name) == false, name .. " must be called")
end

-- A user file (tests/lua/fixtures/hooks/post_verify.lua, on RCH_SCRIPT_DIR) replaces the built-in: called, and its veto holds.
assert(hooks.get("post_verify").origin ~= "builtin", "the fixture post_verify was not found")
assert(hooks.passes("post_verify") == false, "a user post_verify was skipped")
local ok, err = hooks.gate("post_verify", { worker = { id = "w1" } })
assert(ok == false and tostring(err):find("fixture veto of w1", 1, true), tostring(err))
print("hooks_test: ok")
