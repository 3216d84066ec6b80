--- Hook canary_health: decides, after --canary-wait, whether the canaries are
-- still healthy. A finished deploy step is not proof of health, so the
-- built-in re-probes each canary: reachable, `rch-wkr health --json` says ok,
-- and it reports the target version.
-- Replace it for a site policy (error rates, a metrics query, …); call
-- builtin(ctx) to keep these checks.
-- With [canary] interval it is asked every interval of the wait (ctx.round: 1, 2, …).
-- @param ctx { canaries = list of workers, target_version, round, settings (config.toml, [policy]),
--   probe = function(worker) -> {version, health = {ok, version, draining, …}} | nil, err,
--   exec = function(worker, argv, opts) -> {code, out, err} | nil, err, log = rch.log }
-- @return true, or false, "reason"; optionally then a measurement {value, threshold, verdict}
--   (or a list of them) for the audit (CanaryMeasurement)
return function(ctx)
  for _, worker in ipairs(ctx.canaries) do
    local probe, err = ctx.probe(worker)
    if not probe then return false, ("canary %s unreachable: %s"):format(worker.id, err) end
    local health = probe.health or {}
    if health.ok ~= true then
      return false, ("canary %s reports unhealthy: %s"):format(worker.id, tostring(health.error or "ok=false"))
    end
    if health.version ~= ctx.target_version then
      return false, ("canary %s runs %s, expected %s"):format(worker.id, tostring(health.version),
        ctx.target_version)
    end
    -- Healthy, but a draining canary takes no builds: its health proves little.
    if health.draining then
      ctx.log.warn(("canary %s is healthy but draining: it runs no builds, so the check says little about %s")
        :format(worker.id, ctx.target_version))
    end
  end
  return true
end
