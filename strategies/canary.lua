--- Strategy canary: deploy to --canary PERCENT of the workers first
-- (calculate_canary_count: floor, at least 1), wait --canary-wait seconds,
-- ask the canary_health hook (which re-probes the canaries), then either roll
-- the canaries back and leave the rest untouched, or deploy the rest.
local executor = require "rch.deploy.executor"

local M = { name = "canary" }

function M.describe(options)
  return ("canary %d%%, wait %ds, then parallel %d"):format(options.canary, options.canary_wait, options.parallel)
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
      d:wait(d.options.canary_wait, "for canary verification")
      healthy, reason = d:canary_health(canaries)
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
