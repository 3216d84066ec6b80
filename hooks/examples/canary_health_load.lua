--- Example canary_health policy: keep the built-in checks (reachable,
-- health ok, target version) and also require each canary's 1-minute load
-- average to stay under a limit after the wait.
--
-- Install: copy to $RCH_CONFIG_DIR/hooks/canary_health.lua (or a --script-dir).
local MAX_LOAD = 8.0

return function(ctx, builtin)
  local ok, reason = builtin(ctx)
  if not ok then return false, reason end
  for _, worker in ipairs(ctx.canaries) do
    local r, err = ctx.exec(worker, { "cat", "/proc/loadavg" }, { timeout = 10 })
    if not r then return false, err end
    local load = tonumber(r.out:match("^(%S+)"))
    if not load then return false, ("canary %s: cannot read /proc/loadavg"):format(worker.id) end
    if load > MAX_LOAD then
      return false, ("canary %s load %.1f > %.1f"):format(worker.id, load, MAX_LOAD)
    end
  end
  return true
end
