--- rch fleet rollback: switches each worker's `current` back to the version
-- it ran before (from the deployment records, else the newest older version
-- in its versions/), or to --to-version. One rename per worker, nothing
-- restarted by name; audited (WorkerRolledBack) and recorded in history.
local rch = require "rch"
local ui = require "rch.ui"
local util = require "rch.util"
local transport = require "rch.transport"
local workers_mod = require "rch.workers"
local state = require "rch.deploy.state"
local audit_mod = require "rch.audit"
local lease = require "rch.deploy.lease"
local fleet = require "rch.fleet"

local M = {}

-- For each worker, the version it ran before it was deployed to `current`:
-- newest deployment first, the first Completed one that installed `current`.
local function recorded_previous()
  local records = state.read_history() or {}
  local cache = {}
  return function(worker_id, current)
    for i = #records, 1, -1 do
      local h = records[i]
      if h.workers and h.workers[worker_id] == "Completed" and h.target_version == current then
        if cache[h.id] == nil then
          cache[h.id] = rch.json.decode(rch.fs.read(state.deployments_dir() .. "/" .. h.id .. "/result.json") or "")
            or false
        end
        for _, w in ipairs(cache[h.id] and cache[h.id].workers or {}) do
          if w.worker_id == worker_id and type(w.current_version) == "string" then return w.current_version end
        end
      end
    end
  end
end

local function parse_versions(text)
  local out = {}
  for v in tostring(text or ""):gmatch("v(%S+)") do
    if rch.version.parse(v) then out[#out + 1] = v end
  end
  return out
end

local function plan_one(worker, conn, root, settings, opts, previous_of)
  local p = { id = worker.id, conn = conn, root = root }
  local err
  if not opts.dry_run then
    local leased
    leased, err = lease.take(conn, worker.id, p.root, opts.lease_owner, opts.wait_lock or 0,
      settings.defaults.command_timeout)
    if not leased then
      p.error = err
      return p
    end
  end
  local facts
  facts, err = conn:preflight(p.root, "", settings.defaults.command_timeout)
  if not facts then
    p.error = err
    return p
  end
  p.from = facts.current_link and facts.current_link:match("^versions/v(.+)$")
  local available = parse_versions(facts.versions)
  local present = {}
  for _, v in ipairs(available) do present[v] = true end
  if opts.to_version and opts.to_version ~= "" then
    p.to = rch.version.parse(opts.to_version)
    if not present[p.to] then
      p.error = ("version %s is not present on %s (has: %s)"):format(p.to, worker.id,
        #available > 0 and table.concat(available, ", ") or "none")
    end
  elseif not p.from then
    p.error = "no agent installed: nothing to roll back"
  else
    local recorded = previous_of(worker.id, p.from)
    if recorded and present[recorded] and recorded ~= p.from then
      p.to, p.source = recorded, "deployment records"
    else
      -- No record: the newest installed version older than the current one.
      for _, v in ipairs(available) do
        if rch.version.compare(v, p.from) < 0 and (not p.to or rch.version.compare(v, p.to) > 0) then p.to = v end
      end
      p.source = "versions/ on the worker"
      if not p.to then p.error = ("no version older than %s on %s"):format(p.from, worker.id) end
    end
  end
  if not p.error and p.to == p.from then p.skip = "already at " .. p.to end
  return p
end

-- Plans and, unless --dry-run, performs one worker's rollback.
local function roll_back_one(w, conn, root, settings, opts, previous_of, audit)
  local p = plan_one(w, conn, root, settings, opts, previous_of)
  if opts.dry_run or p.error or p.skip then return p end
  local ok, err = p.conn:rollback(p.root, "versions/v" .. p.to, settings.defaults.command_timeout)
  if not ok then
    p.error = err
    audit:log("WorkerFailed", w.id, { step = "rollback", error = err })
    return p
  end
  -- Verify: the agent now answers with the version we switched to.
  local probe
  probe, err = p.conn:probe_agent(p.root, opts.verify, settings.defaults.command_timeout)
  if not probe or probe.version ~= p.to then
    p.error = "rolled back, but the agent " .. (probe and ("reports " .. tostring(probe.version)) or err)
  elseif opts.verify and (not probe.health or probe.health.ok ~= true) then
    p.error = "rolled back, but health reports failure: " .. tostring(probe.health and probe.health.error)
  end
  p.done = true
  audit:log("WorkerRolledBack", w.id, { from_version = p.from or rch.json.null, to_version = p.to,
    source = p.source or "--to-version", verify_error = p.error or rch.json.null })
  return p
end

-- The fleet lock and the audit log of a real rollback (none for --dry-run).
-- @return lock, audit | nil, err
local function open_run(opts, id, worker_count)
  if opts.dry_run then return false, nil end
  local lock, err, held = rch.store.lock(state.lock_path(), "rch fleet rollback")
  if not lock then return nil, held and "another fleet operation is running: " .. err or err end
  local audit
  audit, err = audit_mod.open({ state.state_dir() .. "/audit.jsonl" }, id)
  if not audit then
    lock:release()
    return nil, err
  end
  audit:log("DeploymentStarted", nil, { kind = "rollback", to_version = opts.to_version or rch.json.null,
    worker_count = worker_count })
  return lock, audit
end

-- Each worker's outcome (the JSON list) and the counts.
local function outcomes(workers, plans, dry_run)
  local counts = { rolled_back = 0, failed = 0, skipped = 0 }
  local list = rch.json.array()
  for i, w in ipairs(workers) do
    local p = plans[i]
    local status = p.error and "Failed" or (p.skip and "Skipped" or (dry_run and "WouldRollBack" or "RolledBack"))
    if status == "Failed" then counts.failed = counts.failed + 1
    elseif status == "Skipped" then counts.skipped = counts.skipped + 1
    else counts.rolled_back = counts.rolled_back + 1 end
    list[i] = { worker_id = w.id, status = status, from_version = p.from or rch.json.null,
      to_version = p.to or rch.json.null, error = p.error or p.skip or rch.json.null }
  end
  return list, counts
end

-- The closing audit event, and the rollback as a deployment record (result.json, history).
local function record(run, list, counts, settings, opts)
  local success, target = counts.failed == 0, opts.to_version or "previous"
  local by_worker = {}
  for _, r in ipairs(list) do by_worker[r.worker_id] = r.status end
  local dep, pruned = state.create({ id = run.id, created_at = run.started_at, kind = "rollback",
    target_version = target, workers = rch.json.array() })
  if dep and #pruned > 0 then
    run.audit:log("StatePruned", nil, { deployments = rch.json.array(pruned), keep = settings.state.keep_deployments })
  end
  run.audit:log(success and "DeploymentCompleted" or "DeploymentFailed", nil, { kind = "rollback", counts = counts })
  if not dep then return end
  local result = { id = run.id, kind = "rollback", target_version = target, outcome = success and "completed" or "failed",
    counts = counts, workers = list }
  dep:finish(result, { id = run.id, started_at = run.started_at, completed_at = util.iso_now(),
    duration_secs = rch.monotonic() - run.started, user = rch.sys.user(), machine = rch.sys.hostname(),
    target_version = target, strategy = "rollback", outcome = result.outcome,
    counts = { completed = 0, failed = counts.failed, skipped = counts.skipped, rolled_back = counts.rolled_back },
    workers = by_worker, audit_head = run.audit:head() or rch.json.null })
end

local function render(list, counts, opts)
  local ids = { RolledBack = {}, WouldRollBack = {}, Skipped = {}, Failed = {} }
  for _, r in ipairs(list) do
    local arrow = ("%s -> %s"):format(tostring(r.from_version ~= rch.json.null and r.from_version or "none"),
      tostring(r.to_version ~= rch.json.null and r.to_version or "?"))
    local mark = r.status == "Failed" and ui.paint("red", "✗ ") or (r.status == "Skipped" and "- " or ui.paint("green", "↺ "))
    local tail = r.error ~= rch.json.null and (": " .. r.error) or ""
    local ids_of = ids[r.status]
    ids_of[#ids_of + 1] = r.worker_id
    if not ui.quiet then
      io.stdout:write(("%s%s %s %s%s\n"):format(mark, r.worker_id, opts.dry_run and "would roll back" or r.status,
        arrow, tail))
    elseif r.status == "Failed" then
      io.stderr:write("rch: ", r.worker_id, " failed: ", ui.one_line(r.error), "\n")
    end
  end
  io.stdout:write(("%s: %d %s, %d failed, %d skipped%s\n"):format(opts.dry_run and "Dry run" or "Rollback",
    counts.rolled_back, opts.dry_run and "would roll back" or "rolled back", counts.failed, counts.skipped,
    opts.dry_run and " (nothing was changed)" or ""))
  local retry = "rch fleet rollback " .. ui.worker_flag(ids.Failed)
    .. (opts.to_version and (" --to-version " .. opts.to_version) or "")
  io.stdout:write(ui.outcomes({ { label = "rolled back", ids = ids.RolledBack },
    { label = "would roll back", ids = ids.WouldRollBack }, { label = "skipped", ids = ids.Skipped },
    { label = "failed", ids = ids.Failed } },
    #ids.Failed > 0 and { what = "the workers that failed", command = retry } or nil))
end

function M.run(opts)
  local settings, workers = workers_mod.load(opts.worker, opts.exclude)
  if not settings then
    ui.error(workers)
    return 2
  end
  opts.parallel = opts.parallel or settings.defaults.parallel
  if opts.to_version == "" then opts.to_version = nil end
  if opts.to_version and not rch.version.parse(opts.to_version) then
    ui.error(("--to-version %s is not a version"):format(opts.to_version))
    return 2
  end
  local dirs_ok, dirs_err = state.prepare_dirs()
  if not dirs_ok then
    ui.error(dirs_err)
    return 1
  end
  local run = { id = rch.sys.uuid(), started = rch.monotonic(), started_at = util.iso_now() }
  local lock, audit = open_run(opts, run.id, #workers)
  if lock == nil then
    ui.error(audit)
    return 1
  end
  run.audit = audit
  opts.lease_owner = lease.owner("rollback " .. run.id)
  local previous_of = recorded_previous()
  local _, plans = fleet.each(workers, function(w, conn, root)
    local p = roll_back_one(w, conn, root, settings, opts, previous_of, audit)
    conn:release_lease()
    return p
  end, { settings = settings, parallel = opts.parallel, failed = function(w, err) return { id = w.id, error = err } end })
  transport.close_all()
  local list, counts = outcomes(workers, plans, opts.dry_run)
  if lock then
    record(run, list, counts, settings, opts)
    lock:release()
  end
  if opts.json then
    io.stdout:write(ui.json({ id = run.id, dry_run = opts.dry_run or false, counts = counts, workers = list }), "\n")
  else
    render(list, counts, opts)
  end
  return counts.failed == 0 and 0 or 1
end

return M
