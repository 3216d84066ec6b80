--- Hook on_failure: runs once when a worker's deployment fails, after any
-- automatic rollback. Its return value is ignored: it cannot un-fail a worker.
-- The built-in logs the failure at debug level (the deploy's output already
-- shows it once); replace it to page someone or open a ticket.
-- @param ctx { worker, deployment_id, target_version, step (where it failed),
--   error (message), rolled_back (bool), settings (config.toml, [policy]), log = rch.log }
return function(ctx)
  ctx.log.debug(("worker %s failed at %s: %s%s"):format(ctx.worker.id, ctx.step, ctx.error,
    ctx.rolled_back and " (rolled back)" or ""))
  return true
end
