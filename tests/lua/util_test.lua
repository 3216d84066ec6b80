-- rch.util.iso_now: the loop's clock as ISO 8601 UTC with milliseconds,
-- formatted once per millisecond (cached) yet always the current one.
local rch = require "rch"
local util = require "rch.util"
local sched = require "rch.sched"

local function expected()
  local ms = math.floor(sched.now() * 1000)
  local secs = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. (".%03dZ"):format(ms - secs * 1000)
end

local seen = {}
for _ = 1, 5 do
  local stamp = util.iso_now()
  assert(stamp:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), stamp)
  assert(stamp == expected(), stamp .. " is not " .. expected())
  assert(util.iso_now() == stamp, "two stamps in the same millisecond differ")
  seen[stamp] = true
  rch.sleep(0.003)
end
local distinct = 0
for _ in pairs(seen) do distinct = distinct + 1 end
assert(distinct == 5, "a later millisecond got an earlier stamp: " .. distinct .. " distinct of 5")
print("util_test: ok")
