--- rch fleet deploy --dry-run: probes each worker read-only (the same
-- preflight probe and hook as a deploy) and predicts what a deploy would do,
-- how much it would transfer and how long it would take. Changes nothing.
local rch = require "rch"
local executor = require "rch.deploy.executor"
local pipeline = require "rch.deploy.pipeline"
local targets = require "rch.targets"
local pull = require "rch.deploy.pull"

local M = {}

-- Rough cost model, in seconds: connect + probe, then MB at an assumed link
-- speed, then install + verify. Predictions, not promises.
local SETUP_SECS, FINISH_SECS, ASSUMED_MB_PER_SEC = 1, 1, 50

--- The spec's compute_action.
function M.compute_action(current, target, force)
  if not current then return "Install" end
  local c = rch.version.compare(current, target)
  if c < 0 then return "Upgrade" end
  if c > 0 then return "Downgrade" end
  return force and "Reinstall" or "Skip"
end

--- Makespan of `times` run in plan order on `slots` parallel slots.
function M.makespan(times, slots)
  local free = {}
  for i = 1, math.max(1, slots) do free[i] = 0 end
  for _, t in ipairs(times) do
    local best = 1
    for i = 2, #free do if free[i] < free[best] then best = i end end
    free[best] = free[best] + t
  end
  local finish = 0
  for _, f in ipairs(free) do finish = math.max(finish, f) end
  return finish
end

--- The spec's estimate_total_duration for a strategy.
function M.estimate_total(times, strategy_name, options)
  local p = options.parallel
  if strategy_name == "canary" then
    local count = executor.canary_count(#times, options.canary)
    local first, rest = {}, {}
    for i, t in ipairs(times) do if i <= count then first[#first + 1] = t else rest[#rest + 1] = t end end
    return M.makespan(first, p) + options.canary_wait + M.makespan(rest, p), math.min(p, math.max(count, #rest))
  elseif strategy_name == "rolling" then
    local total, batches, peak = 0, 0, 0
    for i = 1, #times, options.rolling_batch do
      local batch = {}
      for j = i, math.min(i + options.rolling_batch - 1, #times) do batch[#batch + 1] = times[j] end
      total = total + M.makespan(batch, math.min(p, #batch))
      batches = batches + 1
      peak = math.max(peak, math.min(p, #batch))
    end
    return total + math.max(0, batches - 1) * options.rolling_wait, peak
  end
  return M.makespan(times, p), math.min(p, #times)
end

-- A prediction of a worker the deploy could not touch, with its issue.
local function blocked(worker, ctx, message, check, remediation)
  ctx.issues[#ctx.issues + 1] = { severity = "error", worker_id = worker.id, check = check, issue = message,
    recommendation = remediation }
  return { worker_id = worker.id, current_version = rch.json.null, target_version = ctx.target_version,
    preflight_issues = rch.json.array({ message }), action = "Blocked", estimated_transfer_mb = 0,
    estimated_time_secs = SETUP_SECS, artifact = rch.json.null }
end

-- fleet.each's failed(): no connection, or no root.
local function unreachable(ctx)
  return function(worker, err, reachable)
    if reachable then return blocked(worker, ctx, err, "root", "fix the worker's root in workers.toml") end
    return blocked(worker, ctx, err, "ssh", "verify the SSH key, known_hosts and host configuration")
  end
end

local function predict(worker, conn, root, ctx)
  local p = { worker_id = worker.id, current_version = rch.json.null, target_version = ctx.target_version,
    preflight_issues = rch.json.array() }
  local facts, err = conn:preflight(root, ctx.target_version, ctx.timeout, pipeline.trust_manifest(ctx.options))
  if not facts then return blocked(worker, ctx, err, "preflight", "check the worker's shell and coreutils") end
  p.current_version = facts.current_version or rch.json.null
  local artifact
  if ctx.artifact.release then -- pull mode: the tarball of the worker's architecture
    artifact, err = pull.preflight(ctx.artifact.release, conn, facts, ctx.settings, ctx.timeout)
    if not artifact then return blocked(worker, ctx, err, "preflight", "check the worker's shell and coreutils") end
    p.source_url = artifact.pull.url or rch.json.null
  else
    artifact, err = ctx.artifacts:for_machine(facts.arch)
    if not artifact then
      local b = blocked(worker, ctx, err, "artifact", ("publish release %s with the %s tarball at [update] url (or"
        .. " RCH_RELEASE_URL)"):format(ctx.target_version, tostring(facts.arch)))
      b.current_version = p.current_version
      return b
    end
    p.artifact = { arch = artifact.arch, sha256 = artifact.sha256, size = artifact.size, source = artifact.source,
      path = artifact.path }
  end
  local issues
  issues, err = pipeline.preflight_issues({ worker = worker, facts = facts, settings = ctx.settings,
    artifact = artifact, options = ctx.options })
  if not issues then
    local b = blocked(worker, ctx, err, "preflight", "fix the preflight hook")
    b.current_version, b.artifact = p.current_version, p.artifact
    return b
  end
  local blocking = false
  local first_issue = #ctx.issues + 1
  for _, issue in ipairs(issues) do
    p.preflight_issues[#p.preflight_issues + 1] = issue.message
    if issue.severity == "error" then blocking = true end
    if issue.severity == "error" or issue.severity == "warning" then
      ctx.issues[#ctx.issues + 1] = { severity = issue.severity, worker_id = worker.id, check = issue.check,
        issue = issue.check .. ": " .. issue.message, recommendation = issue.remediation or "" }
    end
  end
  p.action = M.compute_action(facts.current_version, ctx.target_version, ctx.options.force)
  -- The same version with other bytes on disk (a damaged binary) is replaced.
  local present = artifact.sha256 ~= nil and facts.target_sha256 == artifact.sha256
  if p.action == "Skip" and not present then p.action = "Reinstall" end
  -- A worker already at the target needs nothing: its issues are only warnings there.
  if blocking and p.action ~= "Skip" then p.action = "Blocked" end
  if blocking and p.action == "Skip" then
    for i = first_issue, #ctx.issues do ctx.issues[i].severity = "warning" end
  end
  local needs_upload = p.action ~= "Skip" and p.action ~= "Blocked" and not present
  p.estimated_transfer_mb = needs_upload and artifact.size / 1e6 or 0
  p.estimated_time_secs = SETUP_SECS
  if p.action ~= "Skip" and p.action ~= "Blocked" then
    p.estimated_time_secs = math.ceil(SETUP_SECS + p.estimated_transfer_mb / ASSUMED_MB_PER_SEC + FINISH_SECS
      + (ctx.options.drain_first and facts.agent_present and 1 or 0))
  end
  rch.log.debug(("dry run: worker %s: %s, current %s, transfer %.1f MB, about %d s"):format(worker.id, p.action,
    tostring(facts.current_version or "none"), p.estimated_transfer_mb, p.estimated_time_secs))
  return p
end

--- Computes the dry run. @return result table (the --json shape)
function M.compute(ctx)
  ctx.issues = rch.json.array()
  local _, results = require("rch.fleet").each(ctx.workers, function(w, conn, root) return predict(w, conn, root, ctx) end,
    { settings = ctx.settings, parallel = ctx.options.parallel, probe = true, failed = unreachable(ctx) })
  -- Only workers the deploy would change take a slot: skipped and blocked ones
  -- count in neither the duration nor the peak parallelism.
  local predictions, times, total_mb = {}, {}, 0
  for i = 1, #ctx.workers do
    local p = results[i]
    predictions[i] = p
    if p.action ~= "Skip" and p.action ~= "Blocked" then times[#times + 1] = p.estimated_time_secs end
    total_mb = total_mb + p.estimated_transfer_mb
  end
  -- Issues arrive in completion order; report them in plan order.
  local position = {}
  for i, w in ipairs(ctx.workers) do position[w.id] = i end
  table.sort(ctx.issues, function(a, b)
    local pa, pb = position[a.worker_id] or 0, position[b.worker_id] or 0
    if pa ~= pb then return pa < pb end
    return a.issue < b.issue
  end)
  local duration, peak = 0, 0
  if #times > 0 then duration, peak = M.estimate_total(times, ctx.strategy_name, ctx.options) end
  return {
    dry_run = true,
    plan = ctx.plan,
    predictions = predictions,
    estimated_duration_secs = duration,
    potential_issues = ctx.issues,
    resource_requirements = { total_transfer_mb = total_mb, peak_parallelism = peak },
  }
end

--- Prints the human report (the spec's display_dry_run).
function M.display(result, strategy_description)
  local out = io.stdout
  out:write("=== Deployment Dry Run ===\n\n")
  out:write("Strategy: ", strategy_description, "\n")
  out:write("Target version: ", result.plan.target_version, "\n")
  out:write("Workers: ", #result.predictions, "\n")
  out:write(("Estimated duration: %ds\n\n"):format(result.estimated_duration_secs))
  local changing = 0
  out:write("Worker Actions:\n")
  for _, p in ipairs(result.predictions) do
    if p.action ~= "Skip" and p.action ~= "Blocked" then changing = changing + 1 end
    out:write(("  %-11s %s %s -> %s (~%.1fMB, ~%ds)\n"):format("[" .. p.action:upper() .. "]", p.worker_id,
      p.current_version ~= rch.json.null and p.current_version or "none", p.target_version, p.estimated_transfer_mb,
      p.estimated_time_secs))
  end
  -- Which build each worker gets: its architecture's (another one's comes from the release).
  local groups, order = {}, {}
  for _, p in ipairs(result.predictions) do
    local a = p.artifact
    if a and a ~= rch.json.null then
      local key = a.arch .. " " .. a.sha256
      if not groups[key] then
        groups[key] = { artifact = a, ids = {} }
        order[#order + 1] = key
      end
      local ids = groups[key].ids
      ids[#ids + 1] = p.worker_id
    end
  end
  if #order > 0 then
    out:write("\nArtifacts:\n")
    for _, key in ipairs(order) do
      local g = groups[key]
      local a = g.artifact
      out:write(("  %s: %s %s… (%.1fMB) from %s\n"):format(targets.fold(g.ids), a.arch, a.sha256:sub(1, 12),
        a.size / 1e6, a.source == "local" and a.path or a.source))
    end
  end
  if #result.potential_issues > 0 then
    out:write("\nPotential Issues:\n")
    for _, issue in ipairs(result.potential_issues) do
      local prefix = issue.severity == "error" and "ERROR" or (issue.severity == "warning" and "WARN" or "INFO")
      out:write(("  [%s] %s: %s\n"):format(prefix, issue.worker_id or "global", issue.issue))
      if issue.recommendation and issue.recommendation ~= "" then
        out:write("         Recommendation: ", issue.recommendation, "\n")
      end
    end
  end
  out:write("\nResource Requirements:\n")
  out:write(("  Total transfer: %.1f MB\n"):format(result.resource_requirements.total_transfer_mb))
  out:write(("  Peak parallelism: %d\n"):format(result.resource_requirements.peak_parallelism))
  out:write(("\nWould deploy %s to %d of %d workers. Dry run: nothing was changed.\n"):format(
    result.plan.target_version, changing, #result.predictions))
end

return M
