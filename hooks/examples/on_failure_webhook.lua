--- Example on_failure hook: after the built-in, posts the failed worker, its
-- step and the error as JSON to a webhook (chat, pager).
-- config.toml: [policy] webhook_url = "https://hooks.example/rch",
-- optional webhook_ca_file (an extra CA).
-- A webhook that fails is a warning: on_failure cannot un-fail a worker.
local rch = require "rch"

return function(ctx, builtin)
  builtin(ctx)
  local url = ctx.settings.policy.webhook_url
  local r, err = rch.http.post_json(url, {
    worker = ctx.worker.id, step = ctx.step, error = ctx.error, rolled_back = ctx.rolled_back,
    deployment_id = ctx.deployment_id, target_version = ctx.target_version,
  }, { ca_file = ctx.settings.policy.webhook_ca_file, timeout = 10 })
  if not r then
    ctx.log.warn("on_failure webhook: " .. err)
  elseif r.status >= 300 then
    ctx.log.warn(("on_failure webhook: %s answered HTTP %d"):format(url, r.status))
  end
  return true
end
