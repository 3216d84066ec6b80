--- Strategy rolling: batches of --rolling-batch workers, --rolling-wait
-- seconds between batches; stops (leaving the rest untouched) once more than
-- --max-fail-percent of the workers processed so far failed.
local M = { name = "rolling" }

function M.describe(options)
  return ("rolling, batches of %d, wait %ds, max %d%% failed"):format(options.rolling_batch,
    options.rolling_wait, options.max_fail_percent)
end

function M.run(d)
  local batch_size = d.options.rolling_batch
  local processed, failed = 0, 0
  local index = 1
  while index <= #d.workers do
    local batch = {}
    for i = index, math.min(index + batch_size - 1, #d.workers) do batch[#batch + 1] = d.workers[i] end
    index = index + #batch
    local counts = d:deploy(batch)
    processed = processed + #batch
    failed = failed + counts.Failed + counts.RolledBack
    if failed * 100 > d.options.max_fail_percent * processed then
      local rest = {}
      for i = index, #d.workers do rest[#rest + 1] = d.workers[i] end
      local reason = ("%d of %d workers failed (max %d%%)"):format(failed, processed, d.options.max_fail_percent)
      d:note("rolling deployment stopped: " .. reason)
      d:abort(rest, "rolling deployment stopped: " .. reason)
      d:fail("rolling deployment stopped: " .. reason)
      return
    end
    if index <= #d.workers then d:wait(d.options.rolling_wait, "between batches") end
  end
end

return M
