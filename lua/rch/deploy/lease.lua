--- The controller lease, as every command that changes workers takes it:
-- one per worker, held while the command works on that worker
-- (remote_steps.lease), so that two operators on two machines never change
-- one worker at once, and the second one is told who holds it.
local rch = require "rch"
local util = require "rch.util"

local M = {}

-- This controller: who, on which machine, with which local fleet.lock (two
-- state setups on one machine are two controllers).
local function me()
  return ("%s@%s (%s)"):format(rch.sys.user(), rch.sys.hostname() or "unknown",
    require("rch.deploy.state").lock_path())
end

-- A killed rch's lease is freed a moment after its connection drops. A
-- holder that is this very controller is such a predecessor (a live one
-- would hold the fleet.lock that got us here), so it is waited for.
local PREDECESSOR_WAIT = 10

--- What the lease file says about its holder: who, where, which operation, since when.
function M.owner(operation)
  return ("%s, %s, since %s"):format(me(), operation, util.iso_now())
end

--- Takes `conn`'s lease on its worker unless it holds it already; waits up
-- to `wait` seconds for another controller. A worker where no lease is
-- possible (no flock, a root that cannot be made: preflight says so in its
-- own words) goes on without one.
-- @param read {target, trust_manifest}: read the preflight facts under the new lease too
-- @return true (and with `read`, the facts when the transport read them), or nil, message naming the holder
function M.take(conn, worker_id, root, owner, wait, timeout, read)
  if conn:has_lease() then return true end
  local id, why = conn:lease(root, owner, 0, timeout, read)
  if id == false and why:sub(1, #me() + 2) == me() .. ", " then wait = math.max(wait, PREDECESSOR_WAIT) end
  if id == false and wait > 0 then
    rch.log.info(("worker %s: waiting up to %d s for the controller lease held by %s"):format(worker_id, wait, why))
    id, why = conn:lease(root, owner, wait, timeout, read)
  end
  if id then return true, why end
  if id == false then
    return nil, ("another controller is changing this worker (lease held by %s)%s"):format(why,
      wait > 0 and (", still after %d s"):format(wait) or "; wait for it, or retry with --wait-lock SECONDS")
  end
  if why and why:find("flock", 1, true) then
    rch.log.warn(("worker %s: no controller lease: %s"):format(worker_id, why))
  else
    rch.log.debug(("worker %s: no controller lease: %s"):format(worker_id, tostring(why)))
  end
  return true
end

return M
