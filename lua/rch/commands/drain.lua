--- rch fleet drain / undrain through rch-wkr's lease protocol. Drain marks
-- every selected worker as draining (no new jobs), then waits for its active
-- builds (leases) to finish, reporting the counts while it waits. A timeout
-- exits 1 naming the workers still busy; they stay draining.
local rch = require "rch"
local ui = require "rch.ui"
local transport = require "rch.transport"
local workers_mod = require "rch.workers"
local progress_mod = require "rch.progress"
local fleet = require "rch.fleet"

local M = {}

local function render(results, opts)
  if opts.json then
    local list = rch.json.array()
    for i, r in ipairs(results) do
      list[i] = { worker_id = r.worker_id, drained = r.drained, undrained = r.undrained, active_builds = r.active_builds,
        error = r.error or rch.json.null }
    end
    io.stdout:write(ui.json({ workers = list }), "\n")
  else
    local done, still, bad = {}, {}, {}
    for _, r in ipairs(results) do
      if r.error then
        bad[#bad + 1] = r.worker_id
        if not ui.quiet then io.stdout:write(ui.paint("red", "✗ "), r.worker_id, ": ", r.error, "\n") end
      elseif opts.undrain then
        done[#done + 1] = r.worker_id
        if not ui.quiet then io.stdout:write(ui.paint("green", "✓ "), r.worker_id, " accepts builds again\n") end
      elseif r.drained then
        done[#done + 1] = r.worker_id
        if not ui.quiet then io.stdout:write(ui.paint("green", "✓ "), r.worker_id, " drained\n") end
      else
        still[#still + 1] = r.worker_id
      end
    end
    local again = {}
    for _, id in ipairs(still) do again[#again + 1] = id end
    for _, id in ipairs(bad) do again[#again + 1] = id end
    local verb = opts.undrain and "undrain" or "drain"
    io.stdout:write(ui.outcomes({ { label = opts.undrain and "undrained" or "drained", ids = done },
      { label = "busy", ids = still }, { label = "failed", ids = bad } },
      #again > 0 and { what = "the workers not " .. verb .. "ed", command = "rch fleet " .. verb .. " "
        .. ui.worker_flag(again) } or nil))
  end
end

--- @param opts {worker, timeout, json, undrain = bool}
function M.run(opts)
  local settings, workers = workers_mod.load(opts.worker, opts.exclude)
  if not settings then
    ui.error(workers)
    return 2
  end
  local progress = progress_mod.new(opts.json and "silent" or (ui.quiet and "quiet" or "plain"), #workers)
  local each = { parallel = math.max(settings.defaults.parallel, 16), timeout = opts.timeout,
    on_busy = function(w, n) progress:line(("%s: %d active build%s"):format(w.id, n, n == 1 and "" or "s")) end }
  local _, results
  if opts.undrain then _, results = fleet.undrain(workers, each) else _, results = fleet.drain(workers, each) end
  transport.close_all()
  local failed, busy = {}, {}
  for _, r in ipairs(results) do
    if r.error then
      failed[#failed + 1] = ("%s (%s)"):format(r.worker_id, r.error)
    elseif not opts.undrain and not r.drained then
      busy[#busy + 1] = ("%s (%d active build%s)"):format(r.worker_id, r.active_builds, r.active_builds == 1 and "" or "s")
    end
  end
  render(results, opts)
  if #busy > 0 then
    ui.error(("still busy after %ds (left draining): %s"):format(opts.timeout, table.concat(busy, ", ")))
  end
  if #failed > 0 then ui.error("failed: " .. table.concat(failed, ", ")) end
  return (#busy == 0 and #failed == 0) and 0 or 1
end

return M
