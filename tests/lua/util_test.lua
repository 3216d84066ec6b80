-- rch.util.iso_now: the clock as ISO 8601 UTC with milliseconds, formatted
-- once per millisecond (cached) yet always the current one.
local rch = require "rch"
local util = require "rch.util"
local sched = require "rch.sched"

local function expected()
  local ms = math.floor(sched.now() * 1000)
  local secs = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. (".%03dZ"):format(ms - secs * 1000)
end

-- (The stamps sort as text: each one lies between the clock read before and after it.)
local seen = {}
for _ = 1, 5 do
  local before = expected()
  local stamp = util.iso_now()
  local again = util.iso_now()
  local after = expected()
  assert(stamp:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), stamp)
  assert(before <= stamp and stamp <= again and again <= after,
    ("%s, %s not between %s and %s"):format(stamp, again, before, after))
  seen[stamp] = true
  rch.sleep(0.003)
end
local distinct = 0
for _ in pairs(seen) do distinct = distinct + 1 end
assert(distinct == 5, "a later millisecond got an earlier stamp: " .. distinct .. " distinct of 5")
print("util_test: ok")
