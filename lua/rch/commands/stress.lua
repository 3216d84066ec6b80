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

-- An intact hash chain, and every *Started event followed by its completion
-- or a WorkerFailed (one pass: the chain check hands over each entry it decoded).
local function check_audit(path)
  local open = {}
  local ok, err = audit.verify_file(path, function(e)
    local w = e.worker_id
    if CLOSES[e.event_type] then
      open[w] = open[w] or {}
      open[w][CLOSES[e.event_type]] = true
    elseif w and open[w] then
      if e.event_type == "WorkerFailed" then open[w] = nil else open[w][e.event_type] = nil end
    end
  end, { "event_type", "worker_id" })
  if not ok then return false, err end
  for w, events in pairs(open) do
    local missing = next(events)
    if missing then
      return false, ("worker %s: a Started event was never followed by %s or WorkerFailed"):format(w, missing)
    end
  end
  return true
end

-- A worker is in flight (holds a --parallel slot) from its first record past
-- preflight (which runs wider, at probe_parallel) to its terminal status, in the
-- order the loop wrote them. @return function(entry) to call with each journal
-- entry in order, function() -> peak number of workers in flight
local function concurrency_counter()
  local active, in_flight, peak = {}, 0, 0
  return function(e)
    local w, status = e.worker, e.status
    if w and status and status ~= "Preflight" then
      local terminal = status == "Completed" or status == "Failed" or status == "Skipped" or status == "RolledBack"
      if terminal and active[w] then
        active[w], in_flight = nil, in_flight - 1
      elseif not terminal and not active[w] then
        active[w], in_flight = true, in_flight + 1
        if in_flight > peak then peak = in_flight end
      end
    end
  end, function() return peak end
end

-- @return the first worker whose replayed journal has another status than the result's, or nil
local function replay_mismatch(replayed, statuses)
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

-- What the checks need of the deployment's result and its workers' states,
-- so that those (most of the memory at 100k workers) can go before the checks run.
local function outcome_of(result, d)
  local terminal = { Completed = true, Failed = true, Skipped = true, RolledBack = true }
  local o = { id = result.id, target_version = result.target_version, counts = result.counts,
    peak_in_flight = d.peak_in_flight, count = #result.workers, order = {}, statuses = {}, previous = {} }
  for i, w in ipairs(result.workers) do
    if o.statuses[w.worker_id] or not terminal[w.status] then o.bad = w.worker_id .. " " .. tostring(w.status) end
    o.order[i], o.statuses[w.worker_id] = w.worker_id, w.status
  end
  for _, ws in ipairs(d.workers) do o.previous[ws.id] = ws.previous_link end
  return o
end

-- What each simulated worker really runs now (read from the model, past its
-- injected faults: a worker failing at verify cannot be probed), against what
-- its status claims. @return nil, or the first worker whose version is wrong
local function wrong_version(o)
  local sim_transport = require "rch.transport.sim"
  local target_link = "versions/v" .. o.target_version
  for _, id in ipairs(o.order) do
    local link, status = sim_transport.current_link(id), o.statuses[id]
    -- What preflight found ("" = no agent; also for a worker it never reached: the simulated fleet starts empty).
    local previous = o.previous[id] or ""
    if status == "Completed" and link ~= target_link then
      return id .. " completed but its current is " .. tostring(link)
    end
    if (status == "RolledBack" or status == "Failed") and link ~= previous then
      return ("%s %s but its current is '%s', not its previous '%s'"):format(id, status, tostring(link), previous)
    end
  end
end

-- Runs --resume as if rch had died at the end (the journal's first
-- `journal_lines` lines replayed to `mismatch`), and checks that finished
-- workers are not touched again. @return nil, or what went wrong
local function resume_problem(deployment, statuses, deploy_opts, workers, journal_lines, mismatch)
  if mismatch then return mismatch end
  collectgarbage()
  os.rename(deployment.dir .. "/result.json", deployment.dir .. "/result.first.json")
  deploy_opts.resume = true
  run_deploy(deploy_opts, workers)
  local touched
  -- Only what the --resume run appended (the lines before it were read twice already).
  assert(rch.store.each_json_line(deployment.dir .. "/journal.jsonl", function(e)
    if not touched and e.worker
      and (statuses[e.worker] == "Completed" or (statuses[e.worker] == "Skipped" and not e.aborted)) then
      touched = e.worker
    end
  end, { after = journal_lines }))
  if touched then return "resume touched finished worker " .. touched end
end

-- Every invariant of the run (o: outcome_of the deployment), each {name, ok, detail}.
local function invariants(o, workers, deploy_opts)
  local p, n = deploy_opts.parallel, #workers
  local checks = {}
  local function check(name, ok, detail)
    checks[#checks + 1] = { name = name, ok = ok and true or false, detail = detail or "" }
  end
  -- Concurrency also from the journal, independently of the executor's own counter (a
  -- strategy that runs the pipeline itself bypasses it).
  -- One pass over the journal: the replay --resume relies on, and the concurrency.
  local deployment = assert(state.load(o.id))
  local count_in_flight, peak = concurrency_counter()
  local journal_lines = 0
  local mismatch = replay_mismatch(deployment:replay(function(e, i)
    journal_lines = i
    count_in_flight(e)
  end), o.statuses)
  local journal_peak = peak()
  check("peak in-flight <= --parallel", o.peak_in_flight <= p and journal_peak <= p,
    ("peak %d, cap %d; journal peak %d"):format(o.peak_in_flight, p, journal_peak))
  check("every worker in exactly one terminal state", not o.bad and o.count == n,
    o.bad or ("%d workers"):format(o.count))
  local wrong = wrong_version(o)
  check("failed workers are back on their previous version", not wrong, wrong)
  -- The checks read whole files: collect between them, so that their garbage does not
  -- pile up into the peak RSS this command reports.
  collectgarbage()
  local audit_ok, audit_err = check_audit(state.state_dir() .. "/audit.jsonl")
  check("every Started audit event completed or failed", audit_ok, audit_err)
  local problem = resume_problem(deployment, o.statuses, deploy_opts, workers, journal_lines, mismatch)
  check("journal replays to the final states; --resume leaves finished workers alone", not problem, problem)
  return checks
end

local function render(report, checks)
  io.stdout:write(("stress: %d simulated workers, parallel %d, strategy %s, fault rate %.3f (%d faulty), latency %dms, "
    .. "seed %d\n"):format(report.workers, report.parallel, report.strategy, report.fault_rate, report.faults_injected,
    report.latency_ms, report.seed))
  io.stdout:write(("  %.2fs, %.0f workers/s, peak in-flight %d, peak RSS %.0f MB\n"):format(report.seconds,
    report.workers_per_second, report.peak_in_flight, report.peak_rss_mb))
  local counts = report.counts
  io.stdout:write(("  completed %d, failed %d, skipped %d, rolled back %d\n"):format(counts.completed, counts.failed,
    counts.skipped, counts.rolled_back))
  for _, c in ipairs(checks) do
    io.stdout:write(("  [%s] %s%s\n"):format(c.ok and ui.paint("green", "ok") or ui.paint("red", "FAIL"), c.name,
      c.detail ~= "" and ("  (" .. c.detail .. ")") or ""))
  end
  io.stdout:write("verdict: ", report.verdict == "pass" and ui.paint("green", "pass")
    or ui.paint("red", "FAIL (state kept in " .. report.state_dir .. ")"), "\n")
end

function M.run(opts)
  local n, p = opts.workers, opts.parallel
  -- The whole simulated fleet's state is live until the deployment ends (about 4 KB a worker):
  -- start a collection at 1.5x the live heap, not 2x, for a lower peak (measured: 10k, RSS
  -- -7 %, CPU within noise).
  collectgarbage("setpause", 150)
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
    max_fail_percent = 100, drain_first = false, drain_timeout = 10,
    source = "push", -- the simulated fleet has no release mirror, whatever [deploy] source says
  }
  local t0 = rch.monotonic()
  local result, d = run_deploy(deploy_opts, workers)
  local elapsed = rch.monotonic() - t0
  if not result then
    ui.error("the deployment did not run: " .. tostring(d))
    return 1
  end
  local o = outcome_of(result, d)
  result, d = nil, nil -- luacheck: no unused (let the collector have them before the checks)
  -- A trace anchors the closures it was recorded on, and through their upvalues (the executor's
  -- `self`, rch.parallel's item list) the whole deployment: 290 MB at 100k workers, kept through
  -- the checks unless the deployment's traces go too.
  require("jit").flush()
  local checks = invariants(o, workers, deploy_opts)
  local faults, verdict = 0, true
  for _, w in ipairs(workers) do
    if require("rch.transport.sim").fault(w.id) ~= "none" then faults = faults + 1 end
  end
  for _, c in ipairs(checks) do verdict = verdict and c.ok end
  local report = {
    workers = n, parallel = p, strategy = opts.strategy, fault_rate = opts.fault_rate, latency_ms = opts.latency_ms,
    seed = opts.seed, faults_injected = faults, seconds = elapsed, workers_per_second = n / elapsed,
    peak_in_flight = o.peak_in_flight, peak_rss_mb = rch.sys.peak_rss_mb(), counts = o.counts,
    invariants = checks, verdict = verdict and "pass" or "fail", state_dir = dir,
  }
  if verdict then
    local removed, err = require("rch.install").remove_tree(dir)
    if not removed then rch.log.warn(("cannot remove the stress state %s: %s"):format(dir, tostring(err))) end
  end
  if opts.json then io.stdout:write(ui.json(report), "\n") else render(report, checks) end
  return verdict and 0 or 1
end

return M
