--- rch fleet drain / undrain through rch-wkr's lease protocol. Drain marks
-- every selected worker as draining (no new jobs), then waits for its active
-- builds (leases) to finish, reporting the counts while it waits. A timeout
-- exits 1 naming the workers still busy; they stay draining.
local rch = require "rch"
local ui = require "rch.ui"
local transport = require "rch.transport"
local workers_mod = require "rch.workers"
local progress_mod = require "rch.progress"

local M = {}

local function connect(worker, settings)
  local conn, err = transport.get(worker, settings)
  if not conn then return nil, err end
  local root
  root, err = conn:root()
  if not root then return nil, err end
  return conn, root
end

local function drain_one(worker, settings, timeout, progress)
  local r = { worker_id = worker.id, drained = false, active_builds = 0 }
  local conn, root = connect(worker, settings)
  if not conn then
    r.error = root
    return r
  end
  -- Sets the marker; fails at once (timeout 0) when builds are running.
  local ok, err = conn:drain(root, 0)
  if ok then
    r.drained = true
    return r
  end
  if not tostring(err):find("drain timed out", 1, true) then
    r.error = err
    return r
  end
  local deadline = rch.monotonic() + timeout
  local last
  while true do
    local probe
    probe, err = conn:probe_agent(root, true, settings.defaults.command_timeout)
    if not probe or not probe.health then
      r.error = err or "rch-wkr health did not answer"
      return r
    end
    r.active_builds = probe.health.active_builds or 0
    if r.active_builds == 0 then
      r.drained = true
      return r
    end
    if r.active_builds ~= last then
      progress:line(("%s: %d active build%s"):format(worker.id, r.active_builds, r.active_builds == 1 and "" or "s"))
      last = r.active_builds
    end
    if rch.monotonic() >= deadline then return r end
    rch.sleep(math.min(1, math.max(0.05, deadline - rch.monotonic())))
  end
end

local function undrain_one(worker, settings)
  local r = { worker_id = worker.id }
  local conn, root = connect(worker, settings)
  if not conn then
    r.error = root
    return r
  end
  local ok, err = conn:undrain(root, settings.defaults.command_timeout)
  if not ok then r.error = err end
  r.undrained = ok and true or false
  return r
end

--- @param opts {worker, timeout, json, undrain = bool}
function M.run(opts)
  local settings, workers = workers_mod.load(opts.worker, opts.exclude)
  if not settings then
    ui.error(workers)
    return 2
  end
  local progress = progress_mod.new(opts.json and "silent" or (ui.quiet and "quiet" or "plain"), #workers)
  local n = math.max(settings.defaults.parallel, 16)
  local results = rch.parallel(workers, n, function(w)
    if opts.undrain then return undrain_one(w, settings) end
    return drain_one(w, settings, opts.timeout, progress)
  end)
  transport.close_all()
  local failed, busy = {}, {}
  for i, w in ipairs(workers) do
    local r = results[i] or { worker_id = w.id, error = "internal error" }
    results[i] = r
    if r.error then
      failed[#failed + 1] = ("%s (%s)"):format(w.id, r.error)
    elseif not opts.undrain and not r.drained then
      busy[#busy + 1] = ("%s (%d active build%s)"):format(w.id, r.active_builds, r.active_builds == 1 and "" or "s")
    end
  end
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
  if #busy > 0 then
    ui.error(("still busy after %ds (left draining): %s"):format(opts.timeout, table.concat(busy, ", ")))
  end
  if #failed > 0 then ui.error("failed: " .. table.concat(failed, ", ")) end
  return (#busy == 0 and #failed == 0) and 0 or 1
end

return M
