--- rch fleet stress: the real executor, strategies, journal and audit log
-- against N simulated workers, then checks invariants that must hold for any
-- seed: the --parallel cap, one terminal state per worker, rollback after a
-- failure past install, every *Started audit event closed, and a journal that
-- --resume can continue without touching finished workers.
local rch = require "rch"
local ui = require "rch.ui"
local transport = require "rch.transport"
local state = require "rch.deploy.state"
local engine = require "rch.deploy.engine"
local audit = require "rch.audit"

local M = {}

local STRATEGIES = { all = "all_at_once", canary = "canary", rolling = "rolling" }
local CLOSES = {
  WorkerDrainStarted = "WorkerDrainCompleted", WorkerTransferStarted = "WorkerTransferCompleted",
  WorkerInstallStarted = "WorkerInstallCompleted", WorkerVerifyStarted = "WorkerVerifyCompleted",
}

-- Every *Started event must be followed by its completion or a WorkerFailed.
local function check_audit(path)
  local ok, err = audit.verify_file(path)
  if not ok then return false, err end
  local open = {}
  for _, line in ipairs(rch.store.read_lines(path)) do
    local e = rch.json.decode(line)
    local w = e.worker_id
    if CLOSES[e.event_type] then
      open[w] = open[w] or {}
      open[w][CLOSES[e.event_type]] = true
    elseif w ~= rch.json.null and w and open[w] then
      if e.event_type == "WorkerFailed" then open[w] = nil else open[w][e.event_type] = nil end
    end
  end
  for w, events in pairs(open) do
    local missing = next(events)
    if missing then
      return false, ("worker %s: a Started event was never followed by %s or WorkerFailed"):format(w, missing)
    end
  end
  return true
end

-- A worker is in flight from its first journal record to its terminal status, in the
-- order the loop wrote them. @return number of lines, peak number of workers in flight
local function journal_concurrency(path)
  local count, active, in_flight, peak = 0, {}, 0, 0
  for line in io.lines(path) do
    count = count + 1
    local w, status = line:match('"worker":"([^"]*)"'), line:match('"status":"(%a+)"')
    if w and status then
      local terminal = status == "Completed" or status == "Failed" or status == "Skipped" or status == "RolledBack"
      if terminal and active[w] then
        active[w], in_flight = nil, in_flight - 1
      elseif not terminal and not active[w] then
        active[w], in_flight = true, in_flight + 1
        if in_flight > peak then peak = in_flight end
      end
    end
  end
  return count, peak
end

-- @return the first worker whose journal replays to another status than the result's, or nil
local function replay_mismatch(deployment, statuses)
  local replayed = deployment:replay()
  for id, status in pairs(statuses) do
    local journaled = (replayed[id] or {}).status
    if journaled ~= status then return ("%s: journal %s, result %s"):format(id, tostring(journaled), status) end
  end
end

-- The deploy engine on the simulated workers, without output.
-- @return result, d, or nil, err
local function run_deploy(deploy_opts, workers)
  local job, err = engine.prepare(deploy_opts, { workers = workers, silent = true })
  if not job then return nil, err end
  return engine.execute(job)
end

function M.run(opts)
  local n, p = opts.workers, opts.parallel
  -- Injected faults are the point here; the report counts them instead of a warning each.
  if not rch.log.enabled("info") then rch.log.set_level("error") end
  local dir = rch.config.paths().state_dir .. "/stress/" .. rch.sys.uuid()
  state.use_dir(dir)
  transport.use_sim({ persist = false, latency_ms = opts.latency_ms, fault_rate = opts.fault_rate, seed = opts.seed })
  local workers = {}
  for i = 1, n do
    workers[i] = { id = ("sim-%06d"):format(i), host = "sim", user = "", port = 22, root = "~/.rch", tags = {} }
  end
  local deploy_opts = {
    parallel = p, no_toolchain = true, force = false, verify = true,
    strategy = STRATEGIES[opts.strategy], canary = opts.strategy == "canary" and 10 or nil, canary_wait = 0,
    rolling_batch = opts.strategy == "rolling" and math.max(p, math.ceil(n / 10)) or 0, rolling_wait = 0,
    max_fail_percent = 100,
    drain_first = false, drain_timeout = 10,
  }
  local t0 = rch.monotonic()
  local result, d = run_deploy(deploy_opts, workers)
  local elapsed = rch.monotonic() - t0
  if not result then
    ui.error("the deployment did not run: " .. tostring(d))
    return 1
  end

  local checks = {}
  local function check(name, ok, detail)
    checks[#checks + 1] = { name = name, ok = ok and true or false, detail = detail or "" }
  end
  -- Concurrency also from the journal, independently of the executor's own counter (a
  -- strategy that runs the pipeline itself bypasses it).
  local deployment = assert(state.load(result.id))
  local journal = deployment.dir .. "/journal.jsonl"
  local before, journal_peak = journal_concurrency(journal)
  check("peak in-flight <= --parallel", d.peak_in_flight <= p and journal_peak <= p,
    ("peak %d, cap %d; journal peak %d"):format(d.peak_in_flight, p, journal_peak))

  local terminal = { Completed = true, Failed = true, Skipped = true, RolledBack = true }
  local seen, bad, statuses = {}, nil, {}
  for _, w in ipairs(result.workers) do
    if seen[w.worker_id] or not terminal[w.status] then bad = w.worker_id .. " " .. tostring(w.status) end
    seen[w.worker_id] = true
    statuses[w.worker_id] = w.status
  end
  check("every worker in exactly one terminal state", not bad and #result.workers == n,
    bad or ("%d workers"):format(#result.workers))

  -- What each simulated worker really runs now (read from the model, past its injected
  -- faults: a worker failing at verify cannot be probed), against what its status claims.
  local sim_transport = require "rch.transport.sim"
  local fleet_state = {}
  local _, probe_errors = rch.parallel(workers, p, function(w)
    fleet_state[w.id] = assert(sim_transport.inspect(w.id)).current_link
  end)
  local previous_link = {}
  for _, ws in ipairs(d.workers) do previous_link[ws.id] = ws.previous_link end
  local wrong = probe_errors and ("cannot inspect a simulated worker: " .. tostring(select(2, next(probe_errors))))
  local target_link = "versions/v" .. result.target_version
  for _, w in ipairs(result.workers) do
    local link = fleet_state[w.worker_id]
    -- What preflight found ("" = no agent; also for a worker it never reached: the simulated fleet starts empty).
    local previous = previous_link[w.worker_id] or ""
    if w.status == "Completed" and link ~= target_link then
      wrong = w.worker_id .. " completed but its current is " .. tostring(link)
    end
    if (w.status == "RolledBack" or w.status == "Failed") and link ~= previous then
      wrong = ("%s %s but its current is '%s', not its previous '%s'"):format(w.worker_id, w.status, tostring(link),
        previous)
    end
  end
  check("failed workers are back on their previous version", not wrong, wrong)

  -- The checks read whole files: collect between them, so that their garbage does not
  -- pile up into the peak RSS this command reports.
  collectgarbage()
  local audit_ok, audit_err = check_audit(state.state_dir() .. "/audit.jsonl")
  check("every Started audit event completed or failed", audit_ok, audit_err)

  -- Resume: replay the journal as if rch had died at the end, run --resume,
  -- and check that finished workers are not touched again.
  collectgarbage()
  local mismatch = replay_mismatch(deployment, statuses)
  collectgarbage()
  os.rename(deployment.dir .. "/result.json", deployment.dir .. "/result.first.json")
  deploy_opts.resume = true
  run_deploy(deploy_opts, workers)
  local touched
  local after = rch.store.read_lines(journal)
  for i = before + 1, #after do
    local e = rch.json.decode(after[i])
    if e.worker and (statuses[e.worker] == "Completed" or (statuses[e.worker] == "Skipped" and not e.aborted)) then
      touched = e.worker
      break
    end
  end
  check("journal replays to the final states; --resume leaves finished workers alone", not mismatch and not touched,
    mismatch or (touched and ("resume touched finished worker " .. touched)) or "")

  local counts = result.counts
  local faults = 0
  for _, w in ipairs(workers) do
    if require("rch.transport.sim").fault(w.id) ~= "none" then faults = faults + 1 end
  end
  local verdict = true
  for _, c in ipairs(checks) do verdict = verdict and c.ok end
  local report = {
    workers = n, parallel = p, strategy = opts.strategy, fault_rate = opts.fault_rate, latency_ms = opts.latency_ms,
    seed = opts.seed, faults_injected = faults, seconds = elapsed, workers_per_second = n / elapsed,
    peak_in_flight = d.peak_in_flight, peak_rss_mb = rch.sys.peak_rss_mb(), counts = counts,
    invariants = checks, verdict = verdict and "pass" or "fail", state_dir = dir,
  }
  if verdict then
    local removed, err = require("rch.install").remove_tree(dir)
    if not removed then rch.log.warn(("cannot remove the stress state %s: %s"):format(dir, tostring(err))) end
  end
  if opts.json then
    io.stdout:write(ui.json(report), "\n")
  else
    io.stdout:write(("stress: %d simulated workers, parallel %d, strategy %s, fault rate %.3f (%d faulty), latency %dms, "
      .. "seed %d\n"):format(n, p, opts.strategy, opts.fault_rate, faults, opts.latency_ms, opts.seed))
    io.stdout:write(("  %.2fs, %.0f workers/s, peak in-flight %d, peak RSS %.0f MB\n"):format(elapsed, n / elapsed,
      d.peak_in_flight, report.peak_rss_mb))
    io.stdout:write(("  completed %d, failed %d, skipped %d, rolled back %d\n"):format(counts.completed, counts.failed,
      counts.skipped, counts.rolled_back))
    for _, c in ipairs(checks) do
      io.stdout:write(("  [%s] %s%s\n"):format(c.ok and ui.paint("green", "ok") or ui.paint("red", "FAIL"), c.name,
        c.detail ~= "" and ("  (" .. c.detail .. ")") or ""))
    end
    io.stdout:write("verdict: ", verdict and ui.paint("green", "pass")
      or ui.paint("red", "FAIL (state kept in " .. dir .. ")"), "\n")
  end
  return verdict and 0 or 1
end

return M
