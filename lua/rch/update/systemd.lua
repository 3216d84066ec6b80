--- rchd under systemd: the units (packaging/systemd/) set RCHD_UNIT and
-- RCHD_UNIT_SCOPE, and systemd sets INVOCATION_ID, in the daemon's
-- environment. A daemon run that way is started again through systemctl,
-- so that it stays the unit's process (and under its hardening).
local rch = require "rch"

local M = {}

--- The unit running rchd `pid`, {unit = "rchd.service", scope = "user"|"system"},
-- or nil when systemd does not run it (or its environment cannot be read).
function M.unit_of(pid)
  local f = io.open(("/proc/%d/environ"):format(pid), "rb")
  if not f then return nil end
  local env = f:read("*a")
  f:close()
  local vars = {}
  for k, v in env:gmatch("([^%z=]+)=([^%z]*)") do vars[k] = v end
  if not vars.INVOCATION_ID or not vars.RCHD_UNIT or vars.RCHD_UNIT == "" then return nil end
  return { unit = vars.RCHD_UNIT, scope = vars.RCHD_UNIT_SCOPE == "system" and "system" or "user" }
end

--- systemctl's argv for `verb` on the unit.
function M.argv(unit, verb)
  if unit.scope == "user" then return { "systemctl", "--user", verb, unit.unit } end
  return { "systemctl", verb, unit.unit }
end

--- Starts the unit; returns true, or nil, err.
function M.start(unit)
  local argv = M.argv(unit, "start")
  local run, err = rch.sys.run(argv, 90)
  if not run then return nil, ("%s: %s"):format(table.concat(argv, " "), err) end
  if run.code ~= 0 then
    return nil, ("%s exited %d: %s"):format(table.concat(argv, " "), run.code, (run.err .. run.out):gsub("%s+$", ""))
  end
  return true
end

return M
