--- The deploy engine under `rch fleet deploy`, `rch update --fleet` and
-- `rch fleet stress`, in three steps with data in and out:
--   prepare(opts, given) -> job    options, resume, workers, strategy, artifact, plan
--   dry_run(job)         -> result predictions, audited
--   execute(job)         -> result, d   lock, audit, journal, strategy, result.json, history
-- It prints progress and errors only; the commands render the result.
local rch = require "rch"
local util = require "rch.util"
local scripts = require "rch.scripts"
local hooks = require "rch.hooks"
local ui = require "rch.ui"
local targets = require "rch.targets"
local transport = require "rch.transport"
local workers_mod = require "rch.workers"
local artifact_mod = require "rch.deploy.artifact"
local arches = require "rch.deploy.arches"
local pull = require "rch.deploy.pull"
local state_mod = require "rch.deploy.state"
local pipeline = require "rch.deploy.pipeline"
local executor = require "rch.deploy.executor"
local dry_run = require "rch.deploy.dry_run"
local audit_mod = require "rch.audit"
local progress_mod = require "rch.progress"

local M = {}

local USAGE, FAILURE = 2, 1

function M.strategy_name_for(opts)
  if opts.strategy and opts.strategy ~= "" then return opts.strategy end
  if opts.canary then return "canary" end
  if opts.rolling_batch and opts.rolling_batch > 0 then return "rolling" end
  return "all_at_once"
end

-- The spec's DeploymentStrategy, as recorded in plan.json.
local function strategy_record(name, o)
  if name == "canary" then
    return { type = "Canary", percent = o.canary, wait_secs = o.canary_wait, interval_secs = o.canary_interval,
      auto_promote = true, script = name }
  elseif name == "rolling" then
    return { type = "Rolling", batch_size = o.rolling_batch, wait_between = o.rolling_wait,
      max_fail_percent = o.max_fail_percent, script = name }
  elseif name == "all_at_once" then
    return { type = "AllAtOnce", parallelism = o.parallel, script = name }
  end
  return { type = "Custom", script = name, parallelism = o.parallel }
end

local function pending_worker(id, version)
  return { worker_id = id, current_version = rch.json.null, target_version = version, status = "Pending",
    steps = rch.json.array(), started_at = rch.json.null, completed_at = rch.json.null, error = rch.json.null }
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
  for _, id in ipairs(deployment:unfinished_workers()) do retry[#retry + 1] = pending_worker(id, plan.target_version) end
  if #retry == 0 then return nil, ("--resume: %s failed, but no worker is left to retry"):format(what) end
  return { plan = {
    id = rch.sys.uuid(), created_at = util.iso_now(), resumes = plan.id, target_version = plan.target_version,
    strategy = plan.strategy, options = plan.options, artifact = plan.artifact, artifacts = plan.artifacts,
    workers = retry,
  } }
end

-- Flags, then config.toml; with --resume the resumed plan's options, but this
-- command line's output flags. @return options, resume target (or nil) | nil, err, code
local function resolve_options(opts, settings)
  opts.parallel = opts.parallel or settings.defaults.parallel
  opts.canary_wait = opts.canary_wait or settings.canary.wait
  opts.canary_interval = opts.canary_interval or settings.canary.interval
  local name = M.strategy_name_for(opts)
  if name == "canary" then opts.canary = opts.canary or settings.canary.percent end
  if opts.canary and opts.rolling_batch and opts.rolling_batch > 0 then
    return nil, "--canary and --rolling-batch choose different strategies; pass one", USAGE
  end
  if name == "rolling" and not (opts.rolling_batch and opts.rolling_batch > 0) then
    return nil, "the rolling strategy needs --rolling-batch N", USAGE
  end
  if not opts.resume then return opts end
  if #(opts.worker or {}) > 0 or #(opts.exclude or {}) > 0 or (opts.version or "") ~= "" then
    return nil, "--resume takes the workers and the version from the deployment it resumes; drop --worker,"
      .. " --exclude and --version", USAGE
  end
  local target, err = resume_target()
  if not target then return nil, err, FAILURE end
  local resumed = target.plan.options
  for _, k in ipairs({ "json", "audit_log", "dry_run", "quiet", "wait_lock" }) do resumed[k] = opts[k] end
  resumed.resume = true
  return resumed, target
end

-- The workers of the run: those given (stress), a resumed plan's, or the --worker selection.
local function select_workers(opts, plan, given)
  local workers, err
  if given then
    workers = given
  elseif plan then
    local ids = {}
    for i, w in ipairs(plan.workers) do ids[i] = w.worker_id end
    workers, err = workers_mod.select(ids)
  else
    workers, err = workers_mod.select(opts.worker, opts.exclude)
  end
  if not workers then return nil, err end
  if #workers == 0 then return nil, "no workers configured in " .. rch.config.paths().config_dir .. "/workers.toml" end
  return workers
end

local function new_plan(opts, strategy_name, artifact, workers)
  local plan = {
    id = rch.sys.uuid(), created_at = util.iso_now(), target_version = artifact.version,
    strategy = strategy_record(strategy_name, opts), options = opts, workers = {},
    artifact = { path = artifact.path, sha256 = artifact.sha256, size = artifact.size, arch = artifact.arch,
      source = artifact.release and "pull" or "push", release_url = artifact.release and artifact.release.url },
  }
  for i, w in ipairs(workers) do plan.workers[i] = pending_worker(w.id, artifact.version) end
  return plan
end

--- Everything decided before any worker is touched. Every hook the run may
-- call is loaded here, so a broken one stops the dry run and the real run alike.
-- @param opts deploy options (the CLI's, or built by update --fleet and stress)
-- @param given {workers = list (instead of workers.toml), silent = bool (no output)} or nil
-- @return job, or nil, err, exit code (2 for bad input, 1 otherwise)
function M.prepare(opts, given)
  given = given or {}
  local settings, err = rch.config.settings()
  if not settings then return nil, err, USAGE end
  local options, target, code = resolve_options(opts, settings)
  if not options then return nil, target, code end
  target = target or {}
  local workers
  workers, err = select_workers(options, target.plan, given.workers)
  if not workers then return nil, err, USAGE end
  local strategy_name = M.strategy_name_for(options)
  local strategy
  strategy, err = scripts.load("strategies", strategy_name)
  if not strategy then return nil, err, USAGE end
  local loaded, hooks_err = hooks.load_all()
  if not loaded then return nil, hooks_err, USAGE end
  local source
  source, err = pull.source(options, settings)
  if not source then return nil, err, USAGE end
  options.source = source
  -- Pull mode: nothing reaches a worker before the release's signature is verified here.
  local version, artifact = target.plan and target.plan.target_version or options.version
  if source == "pull" then
    artifact, err = pull.resolve(settings, version)
    if not artifact then return nil, err, FAILURE end
  else
    artifact, err = artifact_mod.resolve(version)
    if not artifact then return nil, err, USAGE end
  end
  if target.plan and artifact.sha256 ~= target.plan.artifact.sha256 then
    return nil, ("--resume: %s changed since the deployment started (sha256 %s, plan has %s)"):format(artifact.path,
      artifact.sha256, target.plan.artifact.sha256), FAILURE
  end
  -- Workers of other architectures get the release build of this version (fetched when first needed).
  local artifacts = arches.new(artifact, settings, target.plan and target.plan.artifacts)
  local dirs_ok, dirs_err = state_mod.prepare_dirs()
  if not dirs_ok then return nil, dirs_err, FAILURE end
  local audit_paths = { state_mod.state_dir() .. "/audit.jsonl" }
  if (options.audit_log or "") ~= "" then audit_paths[#audit_paths + 1] = options.audit_log end
  return {
    options = options, settings = settings, workers = workers, artifact = artifact, artifacts = artifacts,
    audit_paths = audit_paths,
    plan = target.plan or new_plan(options, strategy_name, artifact, workers), deployment = target.deployment,
    strategy = strategy, strategy_name = strategy_name,
    describe = strategy.describe and strategy.describe(options) or strategy_name, silent = given.silent,
  }
end

local function open_audit(job)
  local audit, err, failed = audit_mod.open(job.audit_paths, job.plan.id)
  -- The state dir's own log failing is the machine's problem (exit 1); --audit-log's, the flag's (2).
  if not audit then return nil, err, failed == 1 and FAILURE or USAGE end
  return audit
end

--- The dry run: what each worker would get, audited, nothing changed.
-- @return the dry-run result (dry_run.compute's), or nil, err, code
function M.dry_run(job)
  local plan, planned = job.plan, job.workers
  if job.deployment then -- resuming an interrupted deployment: only what it has left
    local left = {}
    for _, id in ipairs(job.deployment:unfinished_workers()) do left[id] = true end
    planned = {}
    for _, w in ipairs(job.workers) do if left[w.id] then planned[#planned + 1] = w end end
  end
  local audit, err, code = open_audit(job)
  if not audit then return nil, err, code end
  audit:log("DeploymentStarted", nil, { dry_run = true, target_version = plan.target_version,
    worker_count = #planned, strategy = job.describe })
  local result = dry_run.compute({ workers = planned, settings = job.settings, options = job.options,
    artifact = job.artifact, artifacts = job.artifacts, target_version = job.artifact.version,
    strategy_name = job.strategy_name, plan = plan, timeout = job.settings.defaults.command_timeout })
  for _, p in ipairs(result.predictions) do
    audit:log("WorkerPreflight", p.worker_id, { dry_run = true, action = p.action,
      current_version = p.current_version or rch.json.null, issues = p.preflight_issues })
  end
  audit:log("DeploymentCompleted", nil, { dry_run = true, success = true, summary = audit:summary() })
  transport.close_all()
  return result
end

-- The fleet lock, the audit sinks (first: a bad --audit-log must not leave a
-- deployments/<id>/ without result.json behind, which a later --resume would
-- run), and the deployment's journal. @return run {lock, audit, deployment, pruned} | nil, err, code
local function open_run(job)
  local lock, err, held = rch.store.lock(state_mod.lock_path(), "rch fleet deploy " .. job.plan.id)
  if not lock then return nil, held and "another fleet operation is running: " .. err or err, FAILURE end
  local audit, code
  audit, err, code = open_audit(job)
  if not audit then
    lock:release()
    return nil, err, code
  end
  local deployment, pruned = job.deployment, {}
  if not deployment then
    deployment, pruned = state_mod.create(job.plan)
    if not deployment then
      lock:release()
      return nil, pruned, FAILURE
    end
  end
  return { lock = lock, audit = audit, deployment = deployment, pruned = pruned }
end

-- Each plan worker's state, replayed from the journal when resuming.
-- @return states (plan order), pending (not yet finished), events (deployment milestones)
local function worker_states(job, deployment)
  local replayed, events = {}, {}
  if job.deployment then replayed, events = deployment:replay() end
  local states, pending = {}, {}
  for i, w in ipairs(job.workers) do
    local ws = pipeline.new_state(w, job.plan.target_version)
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
    if not pipeline.TERMINAL[ws.status] then pending[#pending + 1] = ws end
  end
  return states, pending, events
end

local function announce(job, pending)
  local plan, ids = job.plan, {}
  for _, ws in ipairs(pending) do ids[#ids + 1] = ws.id end
  local n = ("%d worker%s"):format(#ids, #ids == 1 and "" or "s")
  if job.options.resume then
    ui.info(plan.resumes
      and ("--resume: deployment %s of %s failed on %s; retrying them as deployment %s: %s"):format(
        plan.resumes, plan.target_version, n, plan.id, targets.fold(ids))
      or ("--resume: continuing interrupted deployment %s of %s on %s: %s"):format(plan.id,
        plan.target_version, n, targets.fold(ids)))
  end
end

-- Runs the strategy. Whatever raises (the strategy, a hook, the journal, the
-- engine), the deployment still ends with result.json and its history record.
local function run_strategy(job, d, run, pending)
  local plan, resumed = job.plan, job.deployment ~= nil
  local ran, run_err = rch.pcall(function()
    local n = ("%d worker%s"):format(#pending, #pending == 1 and "" or "s")
    d.progress:note(("%s %s to %s (%s), deployment %s"):format(resumed and "resuming deploy of" or "deploying",
      plan.target_version, n, job.describe, plan.id))
    rch.log.info(("deployment %s started: version %s, %s, strategy %s"):format(plan.id, plan.target_version, n,
      job.describe))
    run.audit:log("DeploymentStarted", nil, { target_version = plan.target_version, worker_count = #pending,
      strategy = job.describe, resumed = resumed, resumes = plan.resumes or rch.json.null })
    if #run.pruned > 0 then
      run.audit:log("StatePruned", nil, { deployments = rch.json.array(run.pruned),
        keep = job.settings.state.keep_deployments })
    end
    local ok, strategy_err = rch.pcall(job.strategy.run, d)
    if not ok then
      d:fail("strategy " .. job.strategy_name .. " raised: " .. util.clip(strategy_err, 4096))
      ui.error(d.failed_reason)
      d:abort(pending, "strategy failed")
    end
    -- A strategy that forgot workers leaves them pending: that is a failure too.
    d:abort(pending, "not deployed by strategy " .. job.strategy_name)
  end)
  if not ran then
    d:fail("deployment stopped: " .. util.clip(run_err, 4096))
    ui.error(d.failed_reason)
    pcall(d.abort, d, pending, "deployment stopped")
  end
  return ran
end

-- The worker's steps become the result's as they are (a step holds exactly the
-- result's fields; what is unset is filled in as null): no second copy of
-- every step while result.json is written.
local function worker_result(ws)
  local null = rch.json.null
  local steps = rch.json.array(ws.steps)
  for _, s in ipairs(steps) do
    s.started_at, s.completed_at, s.output = s.started_at or null, s.completed_at or null, s.output or null
  end
  return {
    worker_id = ws.id, status = ws.status, current_version = ws.current_version or null,
    target_version = ws.target_version, started_at = ws.started_at or null,
    completed_at = ws.completed_at or null, error = ws.error or ws.skip_reason or null, steps = steps,
  }
end

-- result.json's content (the spec's DeploymentResult plus counts and reason).
local function build_result(job, d, ran, duration)
  local counts = executor.counts(d.workers)
  local aborted = 0
  for _, ws in ipairs(d.workers) do if ws.aborted then aborted = aborted + 1 end end
  local success = ran and counts.Failed == 0 and counts.RolledBack == 0 and aborted == 0 and counts.Pending == 0
  local results = rch.json.array()
  for i, ws in ipairs(d.workers) do results[i] = worker_result(ws) end
  local plan = job.plan
  return {
    id = plan.id, target_version = plan.target_version, strategy = plan.strategy, created_at = plan.created_at,
    completed_at = util.iso_now(), duration_secs = duration, outcome = success and "completed" or "failed",
    reason = d.failed_reason or rch.json.null, resumed = job.deployment ~= nil,
    resumes = plan.resumes or rch.json.null, peak_parallelism = d.peak_in_flight,
    counts = { completed = counts.Completed, failed = counts.Failed, skipped = counts.Skipped,
      rolled_back = counts.RolledBack, aborted = aborted },
    workers = results,
  }
end

-- The closing audit event, result.json and the history record. Best effort
-- in order: a broken audit sink must not cost result.json. @return true | nil, err
local function finish(job, run, result)
  local success = result.outcome == "completed"
  local c = result.counts
  local logged, log_err = pcall(run.audit.log, run.audit, success and "DeploymentCompleted" or "DeploymentFailed",
    nil, { success = success, reason = result.reason, summary = run.audit:summary(),
      counts = { completed = c.completed, failed = c.failed, skipped = c.skipped, rolled_back = c.rolled_back } })
  if not logged then ui.error("audit log: " .. util.clip(log_err, 4096)) end
  pcall(transport.close_all)
  local by_worker = {}
  for _, w in ipairs(result.workers) do by_worker[w.worker_id] = w.status end
  local head_ok, head = pcall(run.audit.head, run.audit)
  local plan = job.plan
  local wrote, finished, err = pcall(run.deployment.finish, run.deployment, result, {
    id = plan.id, started_at = plan.created_at, completed_at = result.completed_at,
    duration_secs = result.duration_secs, user = rch.sys.user(), machine = rch.sys.hostname(),
    target_version = plan.target_version, strategy = job.strategy_name, outcome = result.outcome, counts = c,
    workers = by_worker, resumes = plan.resumes or rch.json.null, audit_head = head_ok and head or rch.json.null,
  })
  if not wrote then finished, err = nil, finished end
  return finished, err
end

--- Runs the deployment of a prepared job.
-- @return result (as written to result.json), d (the deployment object, its
--   workers' states), written (false when result.json could not be written);
--   or nil, err, code when it could not start
function M.execute(job)
  local run, err, code = open_run(job)
  if not run then return nil, err, code end
  -- Another architecture's artifact goes into plan.json before any worker gets it: --resume ships the same bytes.
  job.artifacts:on_new(function(arch, record) return run.deployment:add_artifact(arch, record) end)
  local states, pending, events = worker_states(job, run.deployment)
  local mode = progress_mod.mode_for(job.options.json or job.silent)
  local d = executor.new({
    id = job.plan.id, plan = job.plan, options = job.options, settings = job.settings, artifact = job.artifact,
    artifacts = job.artifacts,
    target_version = job.plan.target_version, state = run.deployment, audit = run.audit,
    progress = progress_mod.new(mode, #pending),
    -- Every plan worker, in plan order, also those a resumed run finished before: the strategy
    -- then picks the same canaries and batches as the first run (d:deploy skips finished ones),
    -- and still checks and can roll back a canary that completed before the interruption.
    workers = states, events = events,
  })
  local started = rch.monotonic()
  announce(job, pending)
  local ran = run_strategy(job, d, run, pending)
  local result = build_result(job, d, ran, rch.monotonic() - started)
  local finished, finish_err = finish(job, run, result)
  run.lock:release()
  if not finished then ui.error("could not write the deployment result: " .. tostring(finish_err)) end
  d.progress:close()
  local c = result.counts
  rch.log.info(("deployment %s %s: %d completed, %d failed, %d skipped, %d rolled back, %d aborted in %.1f s"):format(
    result.id, result.outcome, c.completed, c.failed, c.skipped, c.rolled_back, c.aborted, result.duration_secs))
  return result, d, finished and true or false
end

return M
