--- The per-worker deploy pipeline:
--   preflight -> [drain] -> transfer -> [toolchain] -> install -> verify
-- Every transition goes to the journal and the audit log before the next
-- step starts. The toolchain comes before install so that its failure
-- leaves the previous agent running; after install, any failure switches
-- the worker back to its previous version. Steps are idempotent, so
-- --resume can rerun a worker.
local rch = require "rch"
local transport = require "rch.transport"
local hooks = require "rch.hooks"
local lease = require "rch.deploy.lease"
local transfer = require "rch.deploy.transfer"
local pull = require "rch.deploy.pull"
local remote = require "rch.remote"
local ui = require "rch.ui"

local M = {}

-- Spec status names (DeploymentStatus), as they appear in JSON.
M.TERMINAL = { Completed = true, Failed = true, Skipped = true, RolledBack = true }

local STEP_STATUS = {
  preflight = "Preflight", drain = "Draining", transfer = "Transferring", install = "Installing",
  toolchain = "Installing", verify = "Verifying",
}
local AUDIT_STARTED = {
  drain = "WorkerDrainStarted", transfer = "WorkerTransferStarted", install = "WorkerInstallStarted",
  verify = "WorkerVerifyStarted",
}
local AUDIT_COMPLETED = {
  preflight = "WorkerPreflight", drain = "WorkerDrainCompleted", transfer = "WorkerTransferCompleted",
  install = "WorkerInstallCompleted", verify = "WorkerVerifyCompleted",
}

--- Whether preflight may take the sha256 of an installed target from its
-- manifest (size and mtime unchanged) rather than hash it: not with --force
-- or --verify, which check the real file.
function M.trust_manifest(options) return not (options.force or options.verify) end

--- New per-worker state for a plan entry.
function M.new_state(worker, target_version)
  return { worker = worker, id = worker.id, target_version = target_version, status = "Pending", steps = {} }
end

local function now() return require("rch.util").iso_now() end

-- Transitions are queued without waiting; sync() makes everything queued so
-- far durable (one group commit shared with the other workers) and runs right
-- before each remote step, so the record of a step is on disk before it acts.
local NOWAIT = { wait = false }
local function note(d, entry) d.state:record(entry, NOWAIT) end
local function audit(d, event_type, worker_id, details) d.audit:log(event_type, worker_id, details, NOWAIT) end
local function sync(d)
  d.state:barrier()
  d.audit:barrier()
end

-- The controller lease on the worker, taken before preflight reads its
-- state (what it reads stays true while we hold it) and kept until the
-- worker's pipeline ends (the executor releases it).
-- With `read`, the facts are read under the new lease in the same round trip
-- (when the transport can: otherwise the second value is nil).
local function take_lease(d, ws, conn, read)
  d.lease_owner = d.lease_owner or lease.owner("deployment " .. d.id)
  return lease.take(conn, ws.id, ws.root, d.lease_owner, d.options.wait_lock or 0, d.timeout,
    read and { target = d.target_version, trust_manifest = M.trust_manifest(d.options) } or nil)
end

local function begin_step(d, ws, name, extra)
  ws.status = STEP_STATUS[name]
  ws.step = name
  local step = { name = name, status = "running", started_at = now() }
  ws.steps[#ws.steps + 1] = step
  ws.current_step = step
  local entry = { worker = ws.id, step = name, event = "started", status = ws.status }
  for k, v in pairs(extra or {}) do entry[k] = v end
  note(d, entry)
  if AUDIT_STARTED[name] then audit(d, AUDIT_STARTED[name], ws.id, extra or {}) end
  sync(d)
  d.progress:step(ws, name)
  if rch.log.enabled("info") then rch.log.info(("worker %s: %s"):format(ws.id, name)) end
end

local function end_step(d, ws, details, output)
  local step = ws.current_step
  step.status = "completed"
  step.completed_at = now()
  step.output = output
  note(d, { worker = ws.id, step = step.name, event = "completed", status = ws.status, output = output })
  if AUDIT_COMPLETED[step.name] then audit(d, AUDIT_COMPLETED[step.name], ws.id, details or {}) end
end

-- Marks the worker failed (or rolled back), records it, runs on_failure.
-- `at` names where it failed when that is not the current step (a hook point).
local function fail(d, ws, message, at)
  -- It is shown, journalled and audited: keep it readable whatever a hook or worker said.
  message = require("rch.util").clip(message, 4096)
  local step = ws.current_step
  local step_name = at or (step and step.name) or "preflight"
  if step and step.status == "running" then
    step.status = "failed"
    step.completed_at = now()
    step.output = message
  end
  ws.error = ("%s: %s"):format(step_name, message)
  local rolled_back = false
  if ws.installed then
    rolled_back = M.rollback(d, ws, "failed at " .. step_name .. ": " .. message)
  end
  if not rolled_back then
    ws.status = "Failed"
    ws.completed_at = now()
    note(d, { worker = ws.id, step = step_name, event = "failed", status = "Failed", error = ws.error })
  end
  audit(d, "WorkerFailed", ws.id, { step = step_name, error = message, rolled_back = rolled_back })
  sync(d)
  ui.log_shown("error", ("worker %s failed at %s: %s%s"):format(ws.id, step_name, message,
    rolled_back and " (rolled back)" or ""), d.progress.mode ~= "silent")
  if ws.drained and ws.conn then
    -- Back into service on whatever version it now runs.
    ws.conn:undrain(ws.root, d.timeout)
  end
  d.progress:finished(ws)
  local hook_ok, hook_err = hooks.call("on_failure", {
    worker = ws.worker, deployment_id = d.id, target_version = d.target_version, step = step_name,
    error = message, rolled_back = rolled_back, log = rch.log, settings = d.settings,
  })
  if not hook_ok then rch.log.warn(hook_err) end
  return false
end

--- Switches a worker back to the version it ran before this deployment.
-- @return true when it now runs its previous version (status RolledBack)
function M.rollback(d, ws, reason)
  local conn = ws.conn
  if not conn or not conn:alive() then
    transport.forget(ws.worker)
    conn = transport.get(ws.worker, d.settings)
  end
  local ok, err = false, "no connection"
  if conn then
    -- A worker finished by an interrupted run (--resume) was not probed in this one.
    local root = ws.root
    if not root then root, err = conn:root() end
    if root then ok, err = take_lease(d, ws, conn) end
    if ok then ok, err = conn:rollback(root, ws.previous_link or "", d.timeout) end
    if ws.status ~= nil and M.TERMINAL[ws.status] then conn:release_lease() end -- a finished worker, rolled back later
  end
  if not ok then
    ws.error = (ws.error and ws.error .. "; " or "") .. "rollback failed: " .. tostring(err)
    rch.log.error(("worker %s: rollback failed: %s"):format(ws.id, tostring(err)))
    return false
  end
  ws.installed = false
  ws.status = "RolledBack"
  ws.error = ws.error or reason -- why, also when it had not failed itself (a failed canary)
  ws.completed_at = now()
  local to = ws.previous_link and ws.previous_link:match("^versions/v(.+)$") or nil
  note(d, { worker = ws.id, step = ws.step, event = "rolled_back", status = "RolledBack",
    error = ws.error, rolled_back_to = to })
  audit(d, "WorkerRolledBack", ws.id, { to_version = to or rch.json.null, reason = reason })
  sync(d)
  return true
end

--- The preflight hook's issues for a worker, each {check, severity, message[, remediation]}.
-- @return the list, or nil, err when the hook raised or returned something else
function M.preflight_issues(ctx)
  local ok, issues = hooks.call("preflight", ctx)
  if not ok then return nil, issues end
  if type(issues) ~= "table" then
    return nil, ("hook preflight (%s) returned %s, not a list of issues"):format(hooks.get("preflight").origin,
      type(issues))
  end
  return issues
end

local function hook_ctx(d, ws)
  return {
    worker = ws.worker, root = ws.root, deployment_id = d.id, target_version = d.target_version,
    current_version = ws.current_version, step = ws.step, log = rch.log, settings = d.settings,
    exec = function(argv, opts) return ws.conn:exec(argv, opts) end,
  }
end

local function gate(d, ws, name)
  if hooks.passes(name) then return true end
  local ok, err = hooks.gate(name, hook_ctx(d, ws))
  if not ok then return fail(d, ws, err, name) end
  return true
end

-- Whether the worker already runs exactly the artifact (version, link and
-- bytes) and the run leaves it alone: not with --force, nor when resuming it.
local function skips(d, ws)
  local f = ws.facts
  return f.current_version == d.target_version and f.current_link == "versions/v" .. d.target_version
    and ws.artifact.sha256 ~= nil and f.target_sha256 == ws.artifact.sha256 and not d.options.force
    and not ws.resuming
end

-- Reads the worker's facts (one command: the root it resolves, versions,
-- tools, hashes; or those a lease just read) and the preflight hook's issues on them into ws.
-- @return true, or false when the worker failed (recorded)
local function read_facts(d, ws, read_under_lease)
  local facts, err = read_under_lease, nil
  if not facts then
    facts, err = ws.conn:preflight(ws.root or ws.root_spec, d.target_version, d.timeout, M.trust_manifest(d.options))
  end
  if not facts then return fail(d, ws, err) end
  ws.facts, ws.root = facts, facts.root
  ws.current_version = facts.current_version
  if ws.previous_link == nil then ws.previous_link = facts.current_link or "" end
  -- The build for this worker's architecture (another one's comes from the release); in
  -- pull mode the tarball of its architecture, and whether it can fetch it.
  if d.artifact.release then
    -- (read again under the lease: whether it can fetch the tarball was probed a moment ago)
    ws.artifact, err = pull.preflight(d.artifact.release, ws.conn, facts, d.settings, d.timeout,
      ws.artifact and ws.artifact.probe)
  else
    ws.artifact, err = d.artifacts:for_machine(facts.arch)
  end
  if not ws.artifact then return fail(d, ws, err) end
  local issues
  issues, err = M.preflight_issues({ worker = ws.worker, facts = facts, settings = d.settings, artifact = ws.artifact,
    options = d.options })
  if not issues then return fail(d, ws, err) end
  ws.issues = issues
  return true
end

-- What stops a change on this worker: the hook's errors, and another build
-- under the version the worker runs now.
local function blocking_issues(d, ws)
  local facts, blocking = ws.facts, {}
  for _, issue in ipairs(ws.issues) do
    if issue.severity == "error" then blocking[#blocking + 1] = issue.check .. ": " .. issue.message end
  end
  -- Another build under the version the worker runs now would overwrite the
  -- only copy a rollback could return to: refuse, unless that copy is broken
  -- anyway. A file that no longer matches its manifest of this very build is
  -- damaged, not another build: it is replaced. (A pull whose rch-wkr is
  -- not known yet leaves this to the worker: remote_steps PULL.)
  local installed_sha = facts.manifest_sha256 or facts.target_sha256
  if facts.current_link == "versions/v" .. d.target_version and facts.current_version == d.target_version
    and installed_sha and ws.artifact.sha256 and installed_sha ~= ws.artifact.sha256 then
    blocking[#blocking + 1] = ("same_version: the worker runs %s with other bytes (sha256 %s…); deploying a "
      .. "different build under the same version would leave nothing to roll back to: give the build a new version")
      :format(d.target_version, installed_sha:sub(1, 12))
  end
  return blocking
end

-- Read-only first, at the probe width ([defaults] probe_parallel): a worker
-- already at the target, or blocked, is decided without a lease or a
-- --parallel slot. A worker to change then waits for a slot, takes the
-- controller lease, and reads its facts again under it (another controller
-- may have changed it since): what it reads then stays true while the lease is held.
local function preflight(d, ws)
  begin_step(d, ws, "preflight")
  local conn, err = transport.get(ws.worker, d.settings)
  if not conn then return fail(d, ws, err) end
  ws.conn = conn
  ws.root_spec, err = remote.root_spec(ws.worker)
  if not ws.root_spec then return fail(d, ws, err) end
  if not read_facts(d, ws) then return false end
  local blocking = blocking_issues(d, ws)
  if not skips(d, ws) and #blocking == 0 then
    d:acquire_slot(ws)
    local leased, facts = take_lease(d, ws, conn, true)
    if not leased then return fail(d, ws, facts) end
    if not read_facts(d, ws, facts) then return false end
    blocking = blocking_issues(d, ws)
  end
  for _, issue in ipairs(ws.issues) do
    if issue.severity == "warning" then
      rch.log.warn(("worker %s: %s: %s%s"):format(ws.id, issue.check, issue.message,
        issue.remediation and issue.remediation ~= "" and (" (" .. issue.remediation .. ")") or ""))
    end
  end
  local facts = ws.facts
  local details = {
    arch = facts.arch, disk_free_mb = facts.disk_free_mb, current_version = facts.current_version or rch.json.null,
    issues = #ws.issues > 0 and ws.issues or rch.json.array(),
  }
  -- A worker that already runs the target needs nothing: what would block a
  -- change is only a warning there (run() skips it).
  if #blocking > 0 and skips(d, ws) then
    for _, b in ipairs(blocking) do
      rch.log.warn(("worker %s: %s (already at %s: nothing to change)"):format(ws.id, b, d.target_version))
    end
  elseif #blocking > 0 then
    audit(d, "WorkerPreflight", ws.id, details)
    return fail(d, ws, table.concat(blocking, "; "))
  end
  end_step(d, ws, details, facts.current_version and ("current " .. facts.current_version) or "no agent installed")
  return true
end

-- What install pruned: old version directories beyond [deploy]
-- keep_versions, never the current or the previous one (the rollback
-- target). A failure is only a warning: the worker runs the new version either way.
local function report_pruned(d, ws, pruned)
  if pruned.error then rch.log.warn(("worker %s: pruning old versions: %s"):format(ws.id, pruned.error)) end
  if #pruned.removed > 0 then
    rch.log.info(("worker %s: removed old versions %s"):format(ws.id, table.concat(pruned.removed, ", ")))
    audit(d, "WorkerVersionsPruned", ws.id, { removed = pruned.removed, keep_versions = d.settings.deploy.keep_versions })
  end
end

-- Every step of one worker, up to a terminal status.
local function run_steps(d, ws)
  ws.started_at = ws.started_at or now()
  ws.t0 = rch.monotonic()
  d.progress:started(ws)
  if not preflight(d, ws) then return end

  if skips(d, ws) then
    ws.status = "Skipped"
    ws.skip_reason = "already at " .. d.target_version
    ws.completed_at = now()
    note(d, { worker = ws.id, event = "skipped", status = "Skipped", reason = ws.skip_reason })
    sync(d)
    d.progress:finished(ws)
    rch.log.info(("worker %s: skipped, %s"):format(ws.id, ws.skip_reason))
    return
  end
  if not gate(d, ws, "pre_deploy") then return end

  if d.options.drain_first and ws.facts.agent_present and ws.current_version then
    if not gate(d, ws, "pre_drain") then return end
    begin_step(d, ws, "drain", { timeout = d.options.drain_timeout })
    ws.drained = true
    local ok, err = ws.conn:drain(ws.root, d.options.drain_timeout)
    if not ok then return fail(d, ws, err) end
    end_step(d, ws, {})
    if not gate(d, ws, "post_drain") then return end
  end

  local facts, a = ws.facts, ws.artifact
  local present = a.sha256 ~= nil and facts.target_sha256 == a.sha256
  begin_step(d, ws, "transfer", { bytes = present and 0 or a.size, sha256 = a.sha256 or (a.pull and a.pull.sha256),
    url = a.pull and a.pull.url })
  local t0 = rch.monotonic()
  -- What install records in the manifest: the file as it was read back and hashed.
  local verified = { sha256 = facts.target_sha256, size = facts.target_size, mtime = facts.target_mtime,
    tarball_sha256 = facts.manifest_tarball_sha256 }
  local sent = { method = "none", size = 0 }
  if not present then
    if a.pull then
      verified, sent = pull.send(d, ws)
    else
      verified, sent = transfer.send(d, ws, d.progress:transfer(ws))
    end
    if not verified then return fail(d, ws, sent) end
  end
  local secs = rch.monotonic() - t0
  end_step(d, ws, { bytes = present and 0 or a.size, seconds = secs, already_present = present,
    sent_as = sent.method, bytes_sent = sent.size, url = sent.url },
    present and "already present, sha256 matches"
      or ("%.1f MB in %.2fs, sent as %s"):format(a.size / 1e6, secs, transfer.describe(sent)))

  if not d.options.no_toolchain then
    local tc = d.settings.toolchain
    begin_step(d, ws, "toolchain", { toolchain = tc.rust, update = tc.update })
    if ws.facts.rustup then
      local done, err = ws.conn:toolchain(tc.rust, tc.update, d.toolchain_timeout)
      if not done then return fail(d, ws, err) end
      end_step(d, ws, nil, ("%s: %s"):format(tc.rust, done))
    else
      end_step(d, ws, nil, "skipped: rustup not installed")
    end
  end

  if not gate(d, ws, "pre_install") then return end
  if ws.conn.lease_id and not ws.conn:has_lease() then
    return fail(d, ws, "lost the controller lease on the worker (its holder process ended): not switching")
  end
  begin_step(d, ws, "install", { previous_link = ws.previous_link, version = d.target_version })
  ws.installed = true
  local installed, pruned = ws.conn:install(ws.root, d.target_version, verified, d.id, now(), d.timeout,
    { keep = d.settings.deploy.keep_versions, previous = (ws.previous_link or ""):match("^versions/(v.+)$") or "" })
  if not installed then return fail(d, ws, pruned) end
  end_step(d, ws, { version = d.target_version, previous_link = ws.previous_link })
  report_pruned(d, ws, pruned)
  if not gate(d, ws, "post_install") then return end

  begin_step(d, ws, "verify", { health = d.options.verify })
  local probe, err = ws.conn:probe_agent(ws.root, d.options.verify, d.timeout)
  if not probe then return fail(d, ws, err) end
  if probe.version ~= d.target_version then
    return fail(d, ws, ("agent reports %s after install, expected %s"):format(tostring(probe.version),
      d.target_version))
  end
  if d.options.verify then
    local h = probe.health
    if h.ok ~= true then return fail(d, ws, "health check failed: " .. tostring(h.error or "ok=false")) end
    if h.version ~= d.target_version then
      return fail(d, ws, ("health reports %s, expected %s"):format(tostring(h.version), d.target_version))
    end
  end
  end_step(d, ws, { version = probe.version, health = probe.health or rch.json.null })
  if not gate(d, ws, "post_verify") then return end

  if ws.drained then
    local ok
    ok, err = ws.conn:undrain(ws.root, d.timeout)
    if not ok then rch.log.warn(("worker %s: %s"):format(ws.id, err)) end
  end
  ws.status = "Completed"
  ws.completed_at = now()
  ws.installed = false
  note(d, { worker = ws.id, event = "completed", status = "Completed" })
  sync(d)
  d.progress:finished(ws)
  rch.log.info(("worker %s: completed in %.2f s"):format(ws.id, rch.monotonic() - ws.t0))
end

--- Runs the whole pipeline for one worker; leaves ws in a terminal status.
-- The --parallel slot its preflight took is given back however it ends.
function M.run(d, ws)
  local ok, err = rch.pcall(run_steps, d, ws)
  d:release_slot(ws)
  -- What preflight read serves only the steps: a third of a finished worker's state
  -- (which stays live until the deployment ends: 100k workers, ~130 MB).
  ws.facts, ws.issues = nil, nil
  if not ok then error(err, 0) end
end

--- Re-probes an installed agent (for canary health): version and health.
function M.probe(d, ws)
  local conn, err = transport.get(ws.worker, d.settings)
  if not conn then return nil, err end
  local root = ws.root -- known from preflight, unless an interrupted run finished this worker
  if not root then root, err = conn:root() end
  if not root then return nil, err end
  return conn:probe_agent(root, true, d.timeout)
end

return M
