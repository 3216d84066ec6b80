--- rch fleet stress: the real executor, strategies, journal and audit log
-- against N simulated workers, then checks invariants that must hold for any
-- seed: the --parallel cap, one terminal state per worker, rollback after a
-- failure past install, every *Started audit event closed, and a journal that
-- --resume can continue without touching finished workers.
local rch = require "rch"
local ui = require "rch.ui"
local transport = require "rch.transport"
local state = require "rch.deploy.state"
local deploy = require "rch.commands.deploy"
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
    workers_list = workers, quiet = true, parallel = p, no_toolchain = true, force = false, verify = true,
    strategy = STRATEGIES[opts.strategy], canary = opts.strategy == "canary" and 10 or nil, canary_wait = 0,
    rolling_batch = opts.strategy == "rolling" and math.max(p, math.ceil(n / 10)) or 0, rolling_wait = 0,
    max_fail_percent = 100,
    drain_first = false, drain_timeout = 10,
  }
  local t0 = rch.monotonic()
  deploy.run(deploy_opts)
  local elapsed = rch.monotonic() - t0
  local result, d = deploy.last_result, deploy.last_deploy
  if not result then
    ui.error("the deployment did not run (see above)")
    return 1
  end

  local checks = {}
  local function check(name, ok, detail)
    checks[#checks + 1] = { name = name, ok = ok and true or false, detail = detail or "" }
  end
  check("peak in-flight <= --parallel", d.peak_in_flight <= p, ("peak %d, cap %d"):format(d.peak_in_flight, p))

  local terminal = { Completed = true, Failed = true, Skipped = true, RolledBack = true }
  local seen, bad, statuses = {}, nil, {}
  for _, w in ipairs(result.workers) do
    if seen[w.worker_id] or not terminal[w.status] then bad = w.worker_id .. " " .. tostring(w.status) end
    seen[w.worker_id] = true
    statuses[w.worker_id] = w.status
  end
  check("every worker in exactly one terminal state", not bad and #result.workers == n,
    bad or ("%d workers"):format(#result.workers))

  -- What each simulated worker really runs now, against what its status claims.
  local fleet_state = {}
  rch.parallel(workers, p, function(w)
    local conn = assert(transport.get(w, d.settings))
    fleet_state[w.id] = conn:installed_version("")
  end)
  local wrong
  for _, w in ipairs(result.workers) do
    local installed = fleet_state[w.worker_id]
    if w.status == "Completed" and installed ~= result.target_version then
      wrong = w.worker_id .. " completed but runs " .. tostring(installed)
    end
    if (w.status == "RolledBack" or w.status == "Failed") and installed == result.target_version then
      wrong = w.worker_id .. " " .. w.status .. " but runs the target version"
    end
  end
  check("failed workers are back on their previous version", not wrong, wrong)

  local audit_ok, audit_err = check_audit(state.state_dir() .. "/audit.jsonl")
  check("every Started audit event completed or failed", audit_ok, audit_err)

  -- Resume: replay the journal as if rch had died at the end, run --resume,
  -- and check that finished workers are not touched again.
  local deployment = assert(state.load(result.id))
  local replayed = deployment:replay()
  local mismatch
  for id, status in pairs(statuses) do
    local journaled = (replayed[id] or {}).status
    if journaled ~= status then mismatch = ("%s: journal %s, result %s"):format(id, tostring(journaled), status) end
  end
  local journal = deployment.dir .. "/journal.jsonl"
  local before = #rch.store.read_lines(journal)
  os.rename(deployment.dir .. "/result.json", deployment.dir .. "/result.first.json")
  deploy_opts.resume = true
  deploy.run(deploy_opts)
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
  if verdict then os.execute("rm -rf '" .. dir .. "'") end
  if opts.json then
    io.stdout:write(rch.json.encode(report, { pretty = true }), "\n")
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
