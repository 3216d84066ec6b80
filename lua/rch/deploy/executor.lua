--- The deployment object strategies drive. A strategy decides the order and
-- batching; this object runs the pipeline on a set of workers (probing at
-- [defaults] probe_parallel, changing under the --parallel cap), rolls
-- workers back, asks the canary_health hook, writes audit events, and marks
-- workers it will not touch.
local rch = require "rch"
local pipeline = require "rch.deploy.pipeline"
local hooks = require "rch.hooks"
local util = require "rch.util"
local transport = require "rch.transport"
local fleet = require "rch.fleet"

local Deploy = {}
Deploy.__index = Deploy

local M = {}

--- @param fields {id, plan, options, settings, artifact, target_version, state, audit, progress, workers}
function M.new(fields)
  local d = setmetatable(fields, Deploy)
  d.in_flight, d.peak_in_flight = 0, 0
  -- Preflight probes run this wide; a worker to change waits for one of the
  -- --parallel slots. Sessions open at once never exceed the width.
  d.width = fleet.probe_width(d.settings, d.options.parallel)
  d.slots = rch.semaphore(d.options.parallel)
  transport.cap_open(d.width)
  d.events = d.events or {}
  d.timeout = d.settings.defaults.command_timeout
  d.transfer_timeout = require("rch.deploy.remote_steps").upload_timeout(d.artifact.size, d.settings.defaults)
  -- rustup downloads a toolchain on the worker: no artifact size to scale with.
  d.toolchain_timeout = math.max(d.settings.defaults.command_timeout, 600)
  return d
end

--- Runs the pipeline on every worker of `list` not yet in a terminal status:
-- preflight at most self.width at once, changes at most options.parallel.
-- @return counts {Completed=, Failed=, Skipped=, RolledBack=} for `list`
function Deploy:deploy(list)
  local todo = {}
  for _, ws in ipairs(list) do
    if not pipeline.TERMINAL[ws.status] then todo[#todo + 1] = ws end
  end
  local _, errors = rch.parallel(todo, self.width, function(ws)
    local ok, err = rch.pcall(pipeline.run, self, ws)
    -- Done with this worker: its lease goes now, so that a controller waiting
    -- for it never waits on a whole deployment (nor two on each other). Its
    -- session stays for a canary re-probe or a rollback, unless the cap needs it.
    if ws.conn then ws.conn:release_lease() end
    transport.park(ws.worker)
    if not ok then error(err, 0) end
  end)
  for i, err in pairs(errors or {}) do
    -- A bug in the engine or a hook: the worker fails with the trace, tagged.
    local ws = todo[i]
    local message = ("worker %s, step %s: %s"):format(ws.id, tostring(ws.step), util.clip(err, 4096))
    require("rch.ui").log_shown("error", message, self.progress.mode ~= "silent")
    if not pipeline.TERMINAL[ws.status] then
      ws.status, ws.error = "Failed", message
      self.state:record({ worker = ws.id, event = "failed", status = "Failed", error = message })
      self.audit:log("WorkerFailed", ws.id, { step = ws.step, error = message })
      self.progress:finished(ws)
    end
  end
  return M.counts(list)
end

--- Waits for one of the --parallel slots (the pipeline, before it takes
-- the lease of a worker it will change).
function Deploy:acquire_slot(ws)
  if ws.has_slot then return end
  self.slots:acquire()
  ws.has_slot = true
  self.in_flight = self.in_flight + 1
  if self.in_flight > self.peak_in_flight then self.peak_in_flight = self.in_flight end
end

function Deploy:release_slot(ws)
  if not ws.has_slot then return end
  ws.has_slot = nil
  self.in_flight = self.in_flight - 1
  self.slots:release()
end

--- Rolls back workers of `list` that completed in this deployment.
function Deploy:rollback(list, reason)
  rch.parallel(list, self.options.parallel, function(ws)
    if ws.status == "Completed" then
      pipeline.rollback(self, ws, reason)
      self.progress:finished(ws)
    end
  end)
end

--- Marks every worker of `list` still pending as Skipped, with the reason.
function Deploy:abort(list, reason)
  for _, ws in ipairs(list) do
    if not pipeline.TERMINAL[ws.status] then
      ws.status, ws.skip_reason, ws.aborted = "Skipped", reason, true
      self.state:record({ worker = ws.id, event = "skipped", status = "Skipped", reason = reason, aborted = true },
        { wait = false })
      self.progress:finished(ws)
    end
  end
  self.state:barrier() -- one group commit for however many workers were aborted
end

--- Asks the canary_health hook about `list` (re-probing each worker) and
-- audits each measurement it returns (CanaryMeasurement).
-- @param round which analysis of the canary wait this is (1, 2, …)
-- @return true, or false, reason
function Deploy:canary_health(list, round)
  round = round or 1
  local canaries = {}
  for _, ws in ipairs(list) do
    if ws.status == "Completed" then canaries[#canaries + 1] = ws.worker end
  end
  local by_id = {}
  for _, ws in ipairs(list) do by_id[ws.id] = ws end
  local ok, verdict, reason, measured = hooks.call("canary_health", {
    canaries = canaries, target_version = self.target_version, round = round, settings = self.settings,
    log = rch.log,
    probe = function(worker) return pipeline.probe(self, by_id[worker.id]) end,
    exec = function(worker, argv, opts)
      local conn, err = require("rch.transport").get(worker, self.settings)
      if not conn then return nil, err end
      return conn:exec(argv, opts)
    end,
  })
  if not ok then return false, verdict end
  local healthy = verdict == true
  if not healthy then reason = reason or "canary_health returned false" end
  self:audit_measurements(measured, round, healthy, reason)
  if not healthy then return false, reason end
  return true
end

-- One CanaryMeasurement audit entry per measurement the hook returned (a
-- table, or a list of them), plain values only; the verdict defaults to the hook's.
function Deploy:audit_measurements(measured, round, healthy, reason)
  if type(measured) ~= "table" then return end
  for _, m in ipairs(measured[1] ~= nil and measured or { measured }) do
    if type(m) == "table" then
      local details = { round = round, verdict = healthy and "pass" or "fail", reason = reason or rch.json.null }
      for k, v in pairs(m) do
        local t = type(v)
        if type(k) == "string" and (t == "string" or t == "number" or t == "boolean") then details[k] = v end
      end
      rch.log.info(("canary analysis %d: %s %s, threshold %s: %s"):format(round, tostring(m.name or "value"),
        tostring(details.value), tostring(details.threshold), tostring(details.verdict)))
      self.audit:log("CanaryMeasurement", nil, details)
    end
  end
end

--- Records a deployment-level event in the journal (replayed by --resume).
function Deploy:mark(event)
  self.events[event] = true
  self.state:record({ deployment_event = event })
end

--- Whether `event` was marked, in this run or in the run a --resume continues.
function Deploy:marked(event)
  return self.events[event] == true
end

--- Ends the deployment as failed, with the reason its result and summary give.
-- (Workers left pending are then aborted by the engine.)
function Deploy:fail(reason)
  self.failed_reason = reason
end

function Deploy:log_audit(event_type, details)
  self.audit:log(event_type, nil, details)
end

--- Sleeps, telling the user why.
function Deploy:wait(seconds, why)
  if seconds > 0 then
    self:note(("waiting %ds %s"):format(seconds, why))
    rch.sleep(seconds)
  end
end

function Deploy:note(message)
  self.progress:note(message)
  rch.log.info(message)
end

--- Counts of each status over `list`.
function M.counts(list)
  local c = { Completed = 0, Failed = 0, Skipped = 0, RolledBack = 0, Pending = 0 }
  for _, ws in ipairs(list) do
    if pipeline.TERMINAL[ws.status] then c[ws.status] = c[ws.status] + 1 else c.Pending = c.Pending + 1 end
  end
  return c
end

--- The spec's calculate_canary_count: floor(total * percent / 100), at least 1.
function M.canary_count(total, percent)
  return math.max(1, math.floor(total * percent / 100))
end

return M
