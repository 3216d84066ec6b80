--- What `rch fleet exec` and `rch fleet copy` share: the targeted workers,
-- the audit logger (ad-hoc runs go to the audit log only, never to the
-- deployment history or @failed), the per-worker run under --parallel, and
-- the closing summary that folds the workers that did not succeed and says
-- how to re-run on them.
local rch = require "rch"
local ui = require "rch.ui"
local targets = require "rch.targets"
local transport = require "rch.transport"
local workers_mod = require "rch.workers"
local audit_mod = require "rch.audit"
local state = require "rch.deploy.state"

local M = {}

--- Settings, workers, audit logger for an ad-hoc command.
-- @return ctx {settings, workers, audit, parallel}, or nil, message, exit code
function M.start(opts)
  local settings, workers = workers_mod.load(opts.worker, opts.exclude)
  if not settings then return nil, workers, 2 end
  local ok, err = state.prepare_dirs()
  if not ok then return nil, err, 1 end
  local audit
  audit, err = audit_mod.open({ state.state_dir() .. "/audit.jsonl" }, "adhoc:" .. rch.sys.uuid())
  if not audit then return nil, err, 1 end
  return { settings = settings, workers = workers, audit = audit, parallel = opts.parallel or settings.defaults.parallel }
end

--- Runs fn(worker, conn) on every worker, ctx.parallel at once; a worker that
-- cannot be reached (or whose fn raised) gets {worker_id, error, unreachable}.
-- @return list of results in worker order
function M.each(ctx, fn)
  local _, results = require("rch.fleet").each(ctx.workers, function(w, conn)
    local r = fn(w, conn)
    r.worker_id = w.id
    return r
  end, { settings = ctx.settings, parallel = ctx.parallel, login_home = true, failed = function(w, err, reachable)
    return { worker_id = w.id, error = err, unreachable = not reachable or nil }
  end })
  transport.close_all()
  return results
end

--- Quotes words for a POSIX shell the way an operator would retype them.
function M.shell_words(words)
  local out = {}
  for i, w in ipairs(words) do
    out[i] = w:match("^[%w%-_./=:,@%%+]+$") and w or rch.ssh.quote(w)
  end
  return table.concat(out, " ")
end

--- Prints the summary's failure lines: one folded line per kind of failure
-- (label -> ids, in the order given), the errors (folded by message), and
-- the command that re-runs on all of them.
-- @param groups list of {label, ids}
-- @param errors list of {worker_id, error}
-- @param rerun function(folded ids) -> command line
function M.print_failures(groups, errors, rerun)
  local all = {}
  for _, g in ipairs(groups) do
    if #g.ids > 0 then
      io.stdout:write(("  %-12s %s\n"):format(g.label, targets.fold(g.ids)))
      for _, id in ipairs(g.ids) do all[#all + 1] = id end
    end
  end
  -- Workers that failed with the same words share one line.
  local by_error, order = {}, {}
  for _, e in ipairs(errors) do
    local text = ui.one_line(e.error)
    if not by_error[text] then
      by_error[text] = {}
      order[#order + 1] = text
    end
    table.insert(by_error[text], e.worker_id)
  end
  for _, text in ipairs(order) do io.stdout:write("    ", targets.fold(by_error[text]), ": ", text, "\n") end
  if #all > 0 then io.stdout:write("re-run on them: ", rerun(targets.fold(all)), "\n") end
end

return M
