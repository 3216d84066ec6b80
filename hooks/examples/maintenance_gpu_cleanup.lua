--- Example maintenance run (`rch run hooks/examples/maintenance_gpu_cleanup.lua [TAG] [CMD…]`):
-- drain the workers carrying TAG (default "gpu"), run a cleanup command on
-- each, let them take builds again, and leave an audit record. Workers that
-- do not drain in time are left out of the cleanup and stay draining.
-- Get a copy to edit with: rch scripts show hooks/examples/maintenance_gpu_cleanup
local fleet = require "rch.fleet"

local tag = select(1, ...) or "gpu"
local command = { select(2, ...) }
if #command == 0 then command = { "sh", "-c", "rm -rf \"$HOME/.cache/rch-build\" && df -Pm \"$HOME\" | tail -n 1" } end

local workers = fleet.tagged(tag)
if #workers == 0 then
  io.stderr:write("no workers tagged ", tag, "\n")
  return 2
end
fleet.audit("MaintenanceStarted", nil, { tag = tag, command = command, workers = #workers })

local drained = fleet.drain(workers, { timeout = 600 })
local ready, busy = {}, {}
for _, w in ipairs(workers) do
  if drained[w.id].drained then ready[#ready + 1] = w else busy[#busy + 1] = w.id end
end

local results = fleet.exec(ready, command, { timeout = 900 })
local failed = 0
for _, w in ipairs(ready) do
  local r = results[w.id]
  local ok = r.code == 0
  if not ok then failed = failed + 1 end
  print(("%s %s %s"):format(ok and "ok  " or "FAIL", w.id, (r.out or r.error or ""):gsub("%s+$", "")))
  fleet.audit("MaintenanceWorker", w.id, { ok = ok, exit_code = r.code or -1 })
end
fleet.undrain(ready)
if #busy > 0 then print("still busy, left draining: " .. table.concat(busy, ", ")) end
fleet.audit("MaintenanceCompleted", nil, { tag = tag, cleaned = #ready - failed, failed = failed, busy = #busy })
return (failed == 0 and #busy == 0) and 0 or 1
