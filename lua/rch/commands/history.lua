--- rch fleet history [--limit N] [--worker ID] [--json], and
-- rch fleet history show ID: past deployments from history.jsonl and each
-- deployment's result.json.
local rch = require "rch"
local ui = require "rch.ui"
local state = require "rch.deploy.state"

local M = {}

-- The deployment a unique prefix names (the whole id works too).
-- @return id, or nil, message (none or several match)
local function resolve_id(prefix)
  local matches = {}
  for _, id in ipairs(rch.fs.list(state.deployments_dir()) or {}) do
    if id == prefix then return id end
    if id:sub(1, #prefix) == prefix then matches[#matches + 1] = id end
  end
  if #matches == 1 then return matches[1] end
  if #matches == 0 then return nil, ("no deployment '%s' in %s"):format(prefix, state.deployments_dir()) end
  table.sort(matches)
  return nil, ("'%s' is the start of %d deployment ids (%s): give more of it"):format(prefix, #matches,
    table.concat(matches, ", ", 1, math.min(#matches, 5)))
end

local function show(prefix)
  local id, why = resolve_id(prefix)
  if not id then
    ui.error(why)
    return nil
  end
  local path = state.deployments_dir() .. "/" .. id .. "/result.json"
  local text = rch.fs.read(path)
  local unfinished = false
  if not text then
    -- An unfinished (crashed) deployment has only its plan and journal.
    if not rch.fs.exists(state.deployments_dir() .. "/" .. id .. "/plan.json") then
      ui.error("no deployment '" .. id .. "' in " .. state.deployments_dir())
      return nil
    end
    unfinished = true
  end
  if unfinished then
    local d, err = state.load(id)
    if not d then
      ui.error(err)
      return nil, 1
    end
    local workers = d:replay()
    local result = { id = id, target_version = d.plan.target_version, outcome = "unfinished", workers = {} }
    for _, w in ipairs(d.plan.workers) do
      local r = workers[w.worker_id] or {}
      result.workers[#result.workers + 1] = { worker_id = w.worker_id, status = r.status or "Pending",
        error = r.error or rch.json.null, steps = {} }
    end
    return result
  end
  local result = rch.json.decode(text)
  if type(result) ~= "table" or type(result.workers) ~= "table" then
    ui.error(path .. " is not a deployment result (not JSON, or no workers list: a damaged file; the history"
      .. " line and journal still describe the run)")
    return nil, 1
  end
  return result
end

-- history --show ID: one deployment's result, per worker and step.
local function run_show(opts)
  local result, code = show(opts.show)
  if not result then return code or 2 end
  if opts.json then
    io.stdout:write(ui.json(result), "\n")
    return 0
  end
  io.stdout:write(("Deployment %s: %s, target %s\n"):format(result.id, result.outcome, result.target_version))
  for _, w in ipairs(result.workers) do
    local err = w.error ~= nil and w.error ~= rch.json.null and ("  " .. ui.one_line(w.error)) or ""
    io.stdout:write(("  %-20s %-11s%s\n"):format(w.worker_id, w.status, err))
    for _, s in ipairs(w.steps or {}) do
      local out = s.output ~= nil and s.output ~= rch.json.null and (" (" .. ui.one_line(s.output) .. ")") or ""
      io.stdout:write(("      %-10s %-9s%s\n"):format(s.name, s.status, out))
    end
  end
  return 0
end

-- The newest `limit` records that touch a worker --worker names (all without it).
-- @return records, the one worker named (for its own status column) | nil, err
local function select_records(records, patterns, limit)
  local wanted, single
  if patterns and patterns ~= "" then
    local ws, err = require("rch.workers").select(patterns)
    if not ws then return nil, err end
    wanted = {}
    for _, w in ipairs(ws) do wanted[w.id] = true end
    single = #ws == 1 and ws[1].id or nil
  end
  local function touches(r)
    if not wanted then return true end
    for id in pairs(r.workers or {}) do if wanted[id] then return true end end
    return false
  end
  local selected = {}
  for i = #records, 1, -1 do
    if touches(records[i]) then
      selected[#selected + 1] = records[i]
      if #selected >= limit then break end
    end
  end
  return selected, single
end

local function render_json(selected, single)
  local list = rch.json.array()
  for i, r in ipairs(selected) do
    local entry = {
      id = r.id, started_at = r.started_at, completed_at = r.completed_at, duration_secs = r.duration_secs,
      user = r.user, machine = r.machine, target_version = r.target_version, strategy = r.strategy,
      outcome = r.outcome, counts = r.counts,
    }
    if single then entry.worker_status = r.workers[single] end
    list[i] = entry
  end
  io.stdout:write(ui.json({ deployments = list }), "\n")
end

local function render_table(selected, single)
  local rows = {}
  for _, r in ipairs(selected) do
    local c = r.counts or {}
    local row = { r.id, r.started_at, ("%.1fs"):format(r.duration_secs or 0), (r.user or "?") .. "@" .. (r.machine or "?"),
      r.target_version, r.strategy, r.outcome == "completed" and ui.paint("green", r.outcome) or ui.paint("red", r.outcome),
      ("%d/%d/%d/%d"):format(c.completed or 0, c.failed or 0, c.skipped or 0, c.rolled_back or 0) }
    if single then row[#row + 1] = r.workers[single] or "-" end
    rows[#rows + 1] = row
  end
  local header = { "ID", "STARTED", "DURATION", "BY", "VERSION", "STRATEGY", "OUTCOME", "OK/FAIL/SKIP/RB" }
  if single then header[#header + 1] = single:upper() end
  ui.table(header, rows)
end

function M.run(opts)
  if opts.show and opts.show ~= "" then return run_show(opts) end
  local records, err = state.read_history()
  if not records then
    ui.error(err)
    return 1
  end
  -- --worker takes the same patterns as every command; one worker gets its own status column.
  local selected, single = select_records(records, opts.worker, opts.limit)
  if not selected then
    ui.error(single)
    return 2
  end
  if opts.json then
    render_json(selected, single)
  elseif #selected == 0 then
    io.stdout:write("no deployments recorded in ", state.history_path(), "\n")
  else
    render_table(selected, single)
  end
  return 0
end

return M
