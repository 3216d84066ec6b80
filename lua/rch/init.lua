--- The `rch` module: what strategies, hooks, commands and user scripts use.
-- C++ primitives come from the rch.* binding modules; this file adds the
-- scheduling helpers written in Lua on top of them.
local sched = require "rch.sched"

local M = {
  sched = sched,
  json = require "rch.json",
  log = require "rch.log",
  fs = require "rch.fs",
  crypto = require "rch.crypto",
  version = require "rch.version",
  config = require "rch.config",
  ssh = require "rch.ssh",
  sys = require "rch.sys",
  store = require "rch.store",
  http = require "rch.http",
}

M.sleep = sched.sleep
M.spawn = sched.spawn
M.join = sched.join
M.now = sched.now
M.monotonic = sched.monotonic

--- The one error policy of rch: the message (file:line), with the full
-- traceback only at -v (debug).
function M.traceback(err)
  if type(err) ~= "string" then err = tostring(err) end
  if M.log.enabled("debug") then return debug.traceback(err, 2) end
  return err
end

--- pcall with that policy: a hook, strategy or worker pipeline that raises.
function M.pcall(fn, ...)
  return xpcall(fn, M.traceback, ...)
end

--- Runs fn(item, index) for every item, never more than n at once.
-- Each call runs in its own task, so a call that waits on I/O lets the
-- others proceed. A call that raises does not stop the rest.
-- @param items list of values
-- @param n maximum number of calls in flight (>= 1)
-- @param fn function(item, index) -> value
-- @return results (results[i] = fn's first value), errors (errors[i] = message
--   when call i raised), or nil when every call succeeded
function M.parallel(items, n, fn)
  assert(type(items) == "table", "rch.parallel: items must be a list")
  assert(type(fn) == "function", "rch.parallel: fn must be a function")
  n = math.floor(tonumber(n) or 1)
  if n < 1 then error("rch.parallel: n must be >= 1", 2) end
  local count = #items
  local results, errors = {}, nil
  local next_index = 1
  -- n runners pull the next index until the list is exhausted: the cap holds
  -- by construction, and a slow item never blocks the others.
  local function runner()
    while next_index <= count do
      local i = next_index
      next_index = next_index + 1
      local ok, value = xpcall(fn, M.traceback, items[i], i)
      if ok then
        results[i] = value
      else
        errors = errors or {}
        errors[i] = value
      end
    end
  end
  local runners = {}
  for _ = 1, math.min(n, count) do runners[#runners + 1] = sched.spawn(runner) end
  for _, id in ipairs(runners) do
    local ok, err = sched.join(id)
    if not ok then error(err, 0) end
  end
  return results, errors
end

local Semaphore = {}
Semaphore.__index = Semaphore

--- A counting semaphore for tasks: at most n holders at once; the others
-- wait, suspended, in arrival order.
--   local slots = rch.semaphore(4)
--   slots:acquire() ... slots:release()
function M.semaphore(n)
  n = math.floor(tonumber(n) or 0)
  if n < 1 then error("rch.semaphore: n must be >= 1", 2) end
  return setmetatable({ free = n, waiting = {}, first = 1 }, Semaphore)
end

function Semaphore:acquire()
  if self.free > 0 and self.first > #self.waiting then
    self.free = self.free - 1
    return
  end
  self.waiting[#self.waiting + 1] = sched.current()
  sched.suspend() -- release() hands its slot over and wakes us
end

function Semaphore:release()
  local id = self.waiting[self.first]
  if id then
    self.waiting[self.first] = false
    self.first = self.first + 1
    sched.wake(id)
  else
    self.free = self.free + 1
  end
end

return M
