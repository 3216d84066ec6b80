--- rch fleet deploy: plan, lock, run the strategy over the per-worker
-- pipeline, write result/history, print the summary. Also --dry-run and
-- --resume. Exit 0 only when every targeted worker completed or was already
-- at the target version.
local rch = require "rch"
local transport = require "rch.transport"
local ui = require "rch.ui"
local util = require "rch.util"
local scripts = require "rch.scripts"
local workers_mod = require "rch.workers"
local targets = require "rch.targets"
local artifact_mod = require "rch.deploy.artifact"
local state_mod = require "rch.deploy.state"
local pipeline = require "rch.deploy.pipeline"
local executor = require "rch.deploy.executor"
local dry_run = require "rch.deploy.dry_run"
local audit_mod = require "rch.audit"
local progress_mod = require "rch.progress"

local M = {}

local function strategy_name_for(opts)
  if opts.strategy and opts.strategy ~= "" then return opts.strategy end
  if opts.canary then return "canary" end
  if opts.rolling_batch and opts.rolling_batch > 0 then return "rolling" end
  return "all_at_once"
end

-- The spec's DeploymentStrategy, as recorded in plan.json.
local function strategy_record(name, o)
  if name == "canary" then
    return { type = "Canary", percent = o.canary, wait_secs = o.canary_wait, auto_promote = true, script = name }
  elseif name == "rolling" then
    return { type = "Rolling", batch_size = o.rolling_batch, wait_between = o.rolling_wait,
      max_fail_percent = o.max_fail_percent, script = name }
  elseif name == "all_at_once" then
    return { type = "AllAtOnce", parallelism = o.parallel, script = name }
  end
  return { type = "Custom", script = name, parallelism = o.parallel }
end

local function worker_result(ws)
  local null = rch.json.null
  local steps = rch.json.array()
  for i, s in ipairs(ws.steps) do
    steps[i] = { name = s.name, status = s.status, started_at = s.started_at or null,
      completed_at = s.completed_at or null, output = s.output or null }
  end
  return {
    worker_id = ws.id, status = ws.status, current_version = ws.current_version or null,
    target_version = ws.target_version, started_at = ws.started_at or null,
    completed_at = ws.completed_at or null, error = ws.error or ws.skip_reason or null, steps = steps,
  }
end

-- The error with its traceback only at -v (debug), as every other error.
local function trace(err)
  if rch.log.enabled("debug") then return debug.traceback(tostring(err), 2) end
  return tostring(err)
end

local function usage(message)
  ui.error(message)
  return 2
end

local function fail(message)
  ui.error(message)
  return 1
end

local function validate(opts)
  if opts.canary and opts.rolling_batch and opts.rolling_batch > 0 then
    return "--canary and --rolling-batch choose different strategies; pass one"
  end
  local name = strategy_name_for(opts)
  if name == "rolling" and not (opts.rolling_batch and opts.rolling_batch > 0) then
    return "the rolling strategy needs --rolling-batch N"
  end
end

-- Workers of a resumed plan, looked up in today's workers.toml.
local function plan_workers(plan)
  local ids = {}
  for i, w in ipairs(plan.workers) do ids[i] = w.worker_id end
  return workers_mod.select(ids)
end

--- What --resume does, from the newest deployment only (never an older one,
-- which would undo what came after it): an interrupted deployment continues;
-- one that finished with failures is retried for its failed workers, as a new
-- deployment whose plan names it (`resumes`) with its artifact, version and
-- options; a completed deployment or a rollback leaves nothing to resume.
-- @return {deployment=, plan=} (continue) or {plan=} (retry), or nil, message
local function resume_target()
  local newest, err = state_mod.newest()
  if not newest then return nil, err or ("--resume: no deployment in " .. state_mod.deployments_dir()) end
  local plan = newest.plan
  local what = ("deployment %s (%s)"):format(plan.id, tostring(plan.target_version))
  if plan.kind == "rollback" then
    return nil, ("--resume: the newest operation is rollback %s, which supersedes every deployment before it;"
      .. " nothing to resume"):format(plan.id)
  end
  local deployment
  deployment, err = state_mod.load(newest.id)
  if not deployment then return nil, err end
  if not newest.result then return { deployment = deployment, plan = plan } end
  if newest.result.outcome ~= "failed" then
    return nil, ("--resume: the newest %s completed; nothing to resume (an older interrupted one is"
      .. " never resumed over it)"):format(what)
  end
  local retry = rch.json.array()
  for _, id in ipairs(deployment:unfinished_workers()) do
    retry[#retry + 1] = { worker_id = id, current_version = rch.json.null, target_version = plan.target_version,
      status = "Pending", steps = rch.json.array(), started_at = rch.json.null, completed_at = rch.json.null,
      error = rch.json.null }
  end
  if #retry == 0 then return nil, ("--resume: %s failed, but no worker is left to retry"):format(what) end
  return { plan = {
    id = rch.sys.uuid(), created_at = util.iso_now(), resumes = plan.id, target_version = plan.target_version,
    strategy = plan.strategy, options = plan.options, artifact = plan.artifact, workers = retry,
  } }
end

--- The closing lines of a deploy: the workers of each outcome, folded
-- (w[1-3,7]), and when something failed the command that retries it.
function M.summary(states, success)
  local by_status, order = {}, { "Completed", "Skipped", "Failed", "RolledBack", "Aborted" }
  for _, status in ipairs(order) do by_status[status] = {} end
  for _, ws in ipairs(states) do
    local list = by_status[ws.aborted and "Aborted" or ws.status]
    if list then list[#list + 1] = ws.id end
  end
  local groups = {}
  for i, status in ipairs(order) do groups[i] = { label = status:lower(), ids = by_status[status] } end
  return ui.outcomes(groups, not success
    and { what = "the workers that did not complete", command = "rch fleet deploy --resume" } or nil)
end

function M.run(opts)
  local settings, err = rch.config.settings()
  if not settings then return usage(err) end
  -- Flags win, then config.toml ([defaults] parallel, [canary] percent and wait).
  opts.parallel = opts.parallel or settings.defaults.parallel
  opts.canary_wait = opts.canary_wait or settings.canary.wait
  if strategy_name_for(opts) == "canary" then opts.canary = opts.canary or settings.canary.percent end
  local bad = validate(opts)
  if bad then return usage(bad) end

  local resumed, deployment, plan
  M.last_result, M.last_deploy = nil, nil
  if opts.resume then
    if (opts.worker and #opts.worker > 0) or (opts.exclude and #opts.exclude > 0)
        or (opts.version and opts.version ~= "") then
      return usage("--resume takes the workers and the version from the deployment it resumes; drop --worker,"
        .. " --exclude and --version")
    end
    local target
    target, err = resume_target()
    if not target then
      ui.error(err)
      return 1
    end
    deployment, plan = target.deployment, target.plan
    resumed = deployment ~= nil
    -- The plan's choices win; only output flags come from this command line.
    local keep = { json = opts.json, audit_log = opts.audit_log, dry_run = opts.dry_run,
      workers_list = opts.workers_list, silent = opts.silent, quiet = opts.quiet, wait_lock = opts.wait_lock }
    opts = plan.options
    for k, v in pairs(keep) do opts[k] = v end
    opts.resume = true
  end

  local workers
  if opts.workers_list then
    workers = opts.workers_list -- rch fleet stress: simulated workers, not workers.toml
  elseif plan then
    workers, err = plan_workers(plan)
  else
    workers, err = workers_mod.select(opts.worker, opts.exclude)
  end
  if not workers then return usage(err) end
  if #workers == 0 then return usage("no workers configured in " .. rch.config.paths().config_dir .. "/workers.toml") end

  local strategy_name = strategy_name_for(opts)
  local strategy
  strategy, err = scripts.load("strategies", strategy_name)
  if not strategy then return usage(err) end
  local describe = strategy.describe and strategy.describe(opts) or strategy_name
  -- Every hook this run may call, loaded now: a broken one stops the dry run and
  -- the real run alike, before any worker is touched.
  local hooks_ok, hooks_err = require("rch.hooks").load_all()
  if not hooks_ok then return usage(hooks_err) end

  local artifact
  artifact, err = artifact_mod.resolve(plan and plan.target_version or opts.version)
  if not artifact then return usage(err) end
  if plan and artifact.sha256 ~= plan.artifact.sha256 then
    ui.error(("--resume: %s changed since the deployment started (sha256 %s, plan has %s)"):format(artifact.path,
      artifact.sha256, plan.artifact.sha256))
    return 1
  end

  plan = plan or {
    id = rch.sys.uuid(),
    created_at = util.iso_now(),
    target_version = artifact.version,
    strategy = strategy_record(strategy_name, opts),
    options = opts,
    artifact = { path = artifact.path, sha256 = artifact.sha256, size = artifact.size, arch = artifact.arch },
    workers = {},
  }
  if #plan.workers == 0 then
    for i, w in ipairs(workers) do
      plan.workers[i] = { worker_id = w.id, current_version = rch.json.null, target_version = artifact.version,
        status = "Pending", steps = rch.json.array(), started_at = rch.json.null, completed_at = rch.json.null,
        error = rch.json.null }
    end
  end

  local dirs_ok, dirs_err = state_mod.prepare_dirs()
  if not dirs_ok then
    ui.error(dirs_err)
    return 1
  end
  local audit_paths = { state_mod.state_dir() .. "/audit.jsonl" }
  if opts.audit_log and opts.audit_log ~= "" then audit_paths[#audit_paths + 1] = opts.audit_log end

  if opts.dry_run then
    -- Resuming an interrupted deployment: only what it has left to do is planned.
    local planned = workers
    if deployment then
      local left = {}
      for _, id in ipairs(deployment:unfinished_workers()) do left[id] = true end
      planned = {}
      for _, w in ipairs(workers) do if left[w.id] then planned[#planned + 1] = w end end
    end
    local audit, failed
    audit, err, failed = audit_mod.open(audit_paths, plan.id)
    if not audit then return failed == 1 and fail(err) or usage(err) end
    audit:log("DeploymentStarted", nil, { dry_run = true, target_version = plan.target_version,
      worker_count = #planned, strategy = describe })
    local result = dry_run.compute({ workers = planned, settings = settings, options = opts, artifact = artifact,
      target_version = artifact.version, strategy_name = strategy_name, plan = plan,
      timeout = settings.defaults.command_timeout })
    for _, p in ipairs(result.predictions) do
      audit:log("WorkerPreflight", p.worker_id, { dry_run = true, action = p.action,
        current_version = p.current_version or rch.json.null, issues = p.preflight_issues })
    end
    audit:log("DeploymentCompleted", nil, { dry_run = true, success = true, summary = audit:summary() })
    transport.close_all()
    if opts.json then
      io.stdout:write(ui.json(result), "\n")
    else
      dry_run.display(result, describe)
    end
    return 0
  end

  local lock, held
  lock, err, held = rch.store.lock(state_mod.lock_path(), "rch fleet deploy " .. plan.id)
  if not lock then
    ui.error(held and "another fleet operation is running: " .. err or err)
    return 1
  end

  -- The audit sinks first: a bad --audit-log must not leave a deployments/<id>/ without
  -- result.json behind, which a later --resume would pick up and run.
  local audit, failed
  audit, err, failed = audit_mod.open(audit_paths, plan.id)
  if not audit then
    lock:release()
    -- The state dir's own log failing is the machine's problem (exit 1); --audit-log's, the flag's (2).
    return failed == 1 and fail(err) or usage(err)
  end
  local pruned = {}
  if not deployment then
    deployment, pruned = state_mod.create(plan)
    if not deployment then
      lock:release()
      ui.error(pruned)
      return 1
    end
  end

  local states = {}
  local replayed, events = {}, {}
  if resumed then replayed, events = deployment:replay() end
  for i, w in ipairs(workers) do
    local ws = pipeline.new_state(w, plan.target_version)
    local r = replayed[w.id]
    if r then
      -- Kept for finished workers too: a canary completed before the kill can still be rolled back.
      ws.previous_link = r.previous_link
      if r.status == "Completed" or (r.status == "Skipped" and not r.aborted) then
        ws.status = r.status
      else
        ws.resuming = r.status ~= nil and r.status ~= "Skipped"
      end
    end
    states[i] = ws
  end
  local pending = {}
  for _, ws in ipairs(states) do
    if not pipeline.TERMINAL[ws.status] then pending[#pending + 1] = ws end
  end

  local progress = progress_mod.new(progress_mod.mode_for(opts.json or opts.silent), #pending)
  local d = executor.new({
    id = plan.id, plan = plan, options = opts, settings = settings, artifact = artifact,
    target_version = plan.target_version, state = deployment, audit = audit, progress = progress,
    -- Every plan worker, in plan order, also those a resumed run finished before: the strategy
    -- then picks the same canaries and batches as the first run (d:deploy skips finished ones),
    -- and still checks and can roll back a canary that completed before the interruption.
    workers = states, events = events,
  })
  local started = rch.monotonic()
  if opts.resume then
    local ids = {}
    for _, ws in ipairs(pending) do ids[#ids + 1] = ws.id end
    ui.info(plan.resumes
      and ("--resume: deployment %s of %s failed on %d worker%s; retrying them as deployment %s: %s"):format(
        plan.resumes, plan.target_version, #ids, #ids == 1 and "" or "s", plan.id, targets.fold(ids))
      or ("--resume: continuing interrupted deployment %s of %s on %d worker%s: %s"):format(plan.id,
        plan.target_version, #ids, #ids == 1 and "" or "s", targets.fold(ids)))
  end
  -- Whatever raises from here on (the strategy, a hook, the journal, the engine), the
  -- deployment still ends with result.json and its history record.
  local ran, run_err = xpcall(function()
    progress:note(("%s %s to %d worker%s (%s), deployment %s"):format(resumed and "resuming deploy of" or "deploying",
      plan.target_version, #pending, #pending == 1 and "" or "s", describe, plan.id))
    rch.log.info(("deployment %s started: version %s, %d worker%s, strategy %s"):format(plan.id, plan.target_version,
      #pending, #pending == 1 and "" or "s", describe))
    audit:log("DeploymentStarted", nil, { target_version = plan.target_version, worker_count = #pending,
      strategy = describe, resumed = resumed or false, resumes = plan.resumes or rch.json.null })
    if #pruned > 0 then
      audit:log("StatePruned", nil, { deployments = rch.json.array(pruned), keep = settings.state.keep_deployments })
    end

    local ok, strategy_err = rch.pcall(strategy.run, d)
    if not ok then
      d:fail("strategy " .. strategy_name .. " raised: " .. util.clip(strategy_err, 4096))
      ui.error(d.failed_reason)
      d:abort(pending, "strategy failed")
    end
    -- A strategy that forgot workers leaves them pending: that is a failure too.
    d:abort(pending, "not deployed by strategy " .. strategy_name)
  end, trace)
  if not ran then
    d.failed_reason = "deployment stopped: " .. util.clip(run_err, 4096)
    ui.error(d.failed_reason)
    pcall(d.abort, d, pending, "deployment stopped")
  end

  local counts = executor.counts(states)
  local aborted = 0
  for _, ws in ipairs(states) do if ws.aborted then aborted = aborted + 1 end end
  local success = ran and counts.Failed == 0 and counts.RolledBack == 0 and aborted == 0 and counts.Pending == 0
  -- Best effort from here to the result: a broken audit sink must not cost result.json.
  local logged, log_err = pcall(audit.log, audit, success and "DeploymentCompleted" or "DeploymentFailed", nil, {
    success = success, reason = d.failed_reason or rch.json.null, summary = audit:summary(),
    counts = { completed = counts.Completed, failed = counts.Failed, skipped = counts.Skipped,
      rolled_back = counts.RolledBack },
  })
  if not logged then ui.error("audit log: " .. util.clip(log_err, 4096)) end
  pcall(transport.close_all)

  local results = rch.json.array()
  local by_worker = {}
  for i, ws in ipairs(states) do
    results[i] = worker_result(ws)
    by_worker[ws.id] = ws.status
  end
  local duration = rch.monotonic() - started
  local result = {
    id = plan.id, target_version = plan.target_version, strategy = plan.strategy, created_at = plan.created_at,
    completed_at = util.iso_now(), duration_secs = duration, outcome = success and "completed" or "failed",
    reason = d.failed_reason or rch.json.null, resumed = resumed or false, resumes = plan.resumes or rch.json.null,
    peak_parallelism = d.peak_in_flight,
    counts = { completed = counts.Completed, failed = counts.Failed, skipped = counts.Skipped,
      rolled_back = counts.RolledBack, aborted = aborted },
    workers = results,
  }
  local head_ok, head = pcall(audit.head, audit)
  local wrote, finished
  wrote, finished, err = pcall(deployment.finish, deployment, result, {
    id = plan.id, started_at = plan.created_at, completed_at = result.completed_at, duration_secs = duration,
    user = rch.sys.user(), machine = rch.sys.hostname(), target_version = plan.target_version,
    strategy = strategy_name, outcome = result.outcome, counts = result.counts, workers = by_worker,
    resumes = plan.resumes or rch.json.null, audit_head = head_ok and head or rch.json.null,
  })
  if not wrote then finished, err = nil, finished end
  lock:release()
  if not finished then ui.error("could not write the deployment result: " .. tostring(err)) end
  progress:close()

  M.last_result, M.last_deploy = result, d
  rch.log.info(("deployment %s %s: %d completed, %d failed, %d skipped, %d rolled back, %d aborted in %.1f s"):format(
    plan.id, result.outcome, counts.Completed, counts.Failed, counts.Skipped, counts.RolledBack, aborted, duration))
  -- (silent: rch fleet stress and update --fleet --json print their own report)
  if opts.json and not opts.silent then
    io.stdout:write(ui.json(result), "\n")
  elseif not opts.silent then
    local line = ("Deployment %s %s: %d completed, %d failed, %d skipped, %d rolled back in %.1fs"):format(plan.id,
      success and ui.paint("green", "completed") or ui.paint("red", "failed"), counts.Completed, counts.Failed,
      counts.Skipped, counts.RolledBack, duration)
    io.stdout:write(line, "\n")
    if d.failed_reason then io.stdout:write("Reason: ", d.failed_reason, "\n") end
    io.stdout:write(M.summary(states, success))
  end
  return (success and finished) and 0 or 1
end

return M
