--- Example post_verify hook: before a worker counts as deployed, run a real
-- job through the new agent (under a lease, as builds run) and check its
-- output. A failure here rolls the worker back to its previous version.
--
-- Install: copy to $RCH_CONFIG_DIR/hooks/post_verify.lua (or a --script-dir).
return function(ctx, builtin)
  if builtin then
    local ok, err = builtin(ctx)
    if not ok then return false, err end
  end
  local r, err = ctx.exec({ ctx.root .. "/bin/rch-wkr", "exec", "--", "sh", "-c", "echo smoke-ok" }, { timeout = 60 })
  if not r then return false, "smoke job could not run: " .. err end
  if r.code ~= 0 or not r.out:find("smoke-ok", 1, true) then
    return false, ("smoke job failed (exit %d): %s"):format(r.code, r.err)
  end
  ctx.log.info(("worker %s: smoke job passed on %s"):format(ctx.worker.id, ctx.target_version))
  return true
end
