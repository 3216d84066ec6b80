--- Example pre_deploy hook: honour a change freeze. Workers tagged "frozen"
-- are never touched, and outside the maintenance window (UTC hours below)
-- only workers tagged "canary-ok" may be deployed to.
--
-- Install: copy to $RCH_CONFIG_DIR/hooks/pre_deploy.lua (or a --script-dir).
local WINDOW_START_UTC, WINDOW_END_UTC = 1, 5 -- 01:00 to 04:59 UTC

local function has_tag(worker, tag)
  for _, t in ipairs(worker.tags or {}) do
    if t == tag then return true end
  end
  return false
end

return function(ctx)
  if has_tag(ctx.worker, "frozen") then
    return false, "worker is tagged frozen"
  end
  local hour = tonumber(os.date("!%H"))
  local in_window = hour >= WINDOW_START_UTC and hour <= WINDOW_END_UTC
  if not in_window and not has_tag(ctx.worker, "canary-ok") then
    return false, ("outside the maintenance window (%02d:00-%02d:59 UTC)"):format(WINDOW_START_UTC, WINDOW_END_UTC)
  end
  return true
end
