--- Strategy all_at_once: every worker, --parallel at a time.
-- A strategy returns { name, describe(options), run(d) }; `d` is the
-- deployment object of rch.deploy.executor, documented in docs/lua-api.md
-- ("Strategies").
local M = { name = "all_at_once" }

function M.describe(options)
  return ("all at once, parallel %d"):format(options.parallel)
end

function M.run(d)
  d:deploy(d.workers)
end

return M
