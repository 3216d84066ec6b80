--- Strategy canary: deploy to --canary PERCENT of the workers first
-- (calculate_canary_count: floor, at least 1), wait --canary-wait seconds,
-- ask the canary_health hook (which re-probes the canaries), then either roll
-- the canaries back and leave the rest untouched, or deploy the rest. With
-- [canary] interval the hook is asked every interval of the wait and the
-- first unhealthy answer ends it (an analysis run, as in Argo Rollouts).
local rch = require "rch"
local executor = require "rch.deploy.executor"

local M = { name = "canary" }

function M.describe(options)
  local interval = options.canary_interval or 0
  local every = (interval > 0 and interval < options.canary_wait) and (" (analysed every %ds)"):format(interval) or ""
  return ("canary %d%%, wait %ds%s, then parallel %d"):format(options.canary, options.canary_wait, every,
    options.parallel)
end

-- The canary_health verdict over the wait: once at its end, or at every
-- interval, on the clock (a slow hook does not stretch the wait).
local function analyse(d, canaries)
  local wait, interval = d.options.canary_wait, d.options.canary_interval or 0
  if interval <= 0 or interval >= wait then
    d:wait(wait, "for canary verification")
    return d:canary_health(canaries, 1)
  end
  d:note(("analysing the canaries every %ds for %ds"):format(interval, wait))
  local start = rch.monotonic()
  for round = 1, math.ceil(wait / interval) do
    local left = start + math.min(round * interval, wait) - rch.monotonic()
    if left > 0 then rch.sleep(left) end
    local healthy, reason = d:canary_health(canaries, round)
    if not healthy then return false, reason end
  end
  return true
end

function M.run(d)
  local total = #d.workers
  local count = executor.canary_count(total, d.options.canary)
  local canaries, rest = {}, {}
  for i, ws in ipairs(d.workers) do
    if i <= count then canaries[#canaries + 1] = ws else rest[#rest + 1] = ws end
  end
  if not d:marked("canary_passed") then
    d:note(("canary: %d of %d workers first"):format(count, total))
    d:log_audit("CanaryStarted", { canary_count = count, total_workers = total, percent = d.options.canary })
    local counts = d:deploy(canaries)
    local healthy, reason
    if counts.Failed + counts.RolledBack > 0 then
      healthy, reason = false, ("%d canary worker(s) failed to deploy"):format(counts.Failed + counts.RolledBack)
    else
      healthy, reason = analyse(d, canaries)
    end
    if not healthy then
      d:log_audit("CanaryFailed", { reason = reason })
      d:note("canary failed: " .. reason .. "; rolling the canaries back")
      d:rollback(canaries, "canary failed: " .. reason)
      d:abort(rest, "canary failed: " .. reason)
      d:fail("canary failed: " .. reason)
      return
    end
    d:log_audit("CanaryPassed", { canary_count = count })
    d:mark("canary_passed")
    d:note(("canary healthy, deploying to the remaining %d workers"):format(#rest))
  end
  d:deploy(rest)
end

return M
