-- Engine robustness: results that cannot be handed to a waiting task reach it
-- as `nil, message` instead of an unprotected Lua error (lua_atpanic ends the
-- process), and a huge error message is clipped before it is kept and joined.
local rch = require "rch"

local function eq(actual, expected, what)
  if actual ~= expected then
    error(("%s: expected %s, got %s"):format(what, tostring(expected), tostring(actual)), 2)
  end
end

-- 1. A task finishing with more values than a Lua stack may hold: the task
-- waiting in join() gets nil and the reason, and the engine goes on.
do
  local many = {}
  for i = 1, 7999 do many[i] = i end
  local id = rch.spawn(function()
    rch.sleep(0.01) -- so join() yields first and the results arrive through a resume
    return unpack(many)
  end)
  local ok, err = rch.join(id)
  eq(ok, nil, "join of 7999 results")
  assert(tostring(err):find("cannot pass the result of rch.sched.join to task", 1, true), err)
  assert(tostring(err):find("too many", 1, true), err)
  local id2 = rch.spawn(function() rch.sleep(0.001) return "still fine" end)
  local ok2, value = rch.join(id2)
  eq(ok2, true, "a later join")
  eq(value, "still fine", "a later task's result")
end

-- 2. A task raising a 4 MB message: kept and joined clipped, with the count of what was cut.
do
  local id = rch.spawn(function()
    rch.sleep(0.001)
    error(("x"):rep(4 * 1024 * 1024), 0)
  end)
  local ok, err = rch.join(id)
  eq(ok, false, "join of a failed task")
  assert(#err < 20 * 1024, "error of " .. #err .. " bytes was not clipped")
  assert(err:find("more bytes)", 1, true), err:sub(-100))
end
