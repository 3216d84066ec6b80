--- rch fleet deploy: prepare the job, then its dry run or its execution
-- (rch.deploy.engine), then print the result. Also --resume. Exit 0 only when
-- every targeted worker completed or was already at the target version.
local rch = require "rch"
local ui = require "rch.ui"
local engine = require "rch.deploy.engine"
local dry_run = require "rch.deploy.dry_run"

local M = {}

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

--- Prints a deploy's result: the JSON document, or the summary lines.
function M.render(result, states, opts)
  if opts.json then
    io.stdout:write(ui.json(result), "\n")
    return
  end
  local c, success = result.counts, result.outcome == "completed"
  io.stdout:write(("Deployment %s %s: %d completed, %d failed, %d skipped, %d rolled back in %.1fs\n"):format(
    result.id, success and ui.paint("green", "completed") or ui.paint("red", "failed"), c.completed, c.failed,
    c.skipped, c.rolled_back, result.duration_secs))
  if result.reason ~= rch.json.null then io.stdout:write("Reason: ", result.reason, "\n") end
  io.stdout:write(M.summary(states, success))
end

function M.run(opts)
  local job, err, code = engine.prepare(opts)
  if not job then
    ui.error(err)
    return code
  end
  if job.options.dry_run then
    local result
    result, err, code = engine.dry_run(job)
    if not result then
      ui.error(err)
      return code
    end
    if job.options.json then io.stdout:write(ui.json(result), "\n") else dry_run.display(result, job.describe) end
    return 0
  end
  local result, d, written = engine.execute(job)
  if not result then -- it could not start: then d is the error and written the exit code
    ui.error(d)
    return written
  end
  M.render(result, d.workers, job.options)
  return (result.outcome == "completed" and written) and 0 or 1
end

return M
