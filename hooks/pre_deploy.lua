--- Hook pre_deploy: runs before anything is done on the worker (after preflight passed).
-- The built-in does nothing. Replace it with hooks/pre_deploy.lua in your config dir
-- (or a --script-dir) to add a site check or action.
-- @param ctx { worker = {id, host, user, port, root, tags}, root (resolved on the worker),
--   deployment_id, target_version,
--   current_version, exec = function(argv, opts) -> {code, out, err} | nil, err (runs on this worker),
--   log = rch.log }
-- @param builtin the built-in hook when this file replaces it (nil here)
-- @return true to go on; false, "reason" to stop this worker (raising does the same)
return function(ctx, builtin) -- luacheck: no unused args
  return true
end
