--- Durable deployment state under $RCH_STATE_DIR: deployments/<id>/plan.json
-- (written once, atomically), journal.jsonl (one fsync'd line per worker step
-- transition, group-committed), result.json (the compaction written when the
-- deployment ends), and history.jsonl (one record per deployment).
local rch = require "rch"
local store = require "rch.store"
local util = require "rch.util"

local M = {}
local Deployment = {}
Deployment.__index = Deployment

local override_dir

--- Keeps every state file (and fleet.lock) under `dir` instead of
-- $RCH_STATE_DIR: stress runs stay out of the real history and audit log.
function M.use_dir(dir)
  override_dir = dir
end

function M.state_dir()
  return override_dir or rch.config.paths().state_dir
end

function M.lock_path()
  return (override_dir or rch.config.paths().data_dir) .. "/fleet.lock"
end

function M.deployments_dir()
  return M.state_dir() .. "/deployments"
end

function M.history_path()
  return M.state_dir() .. "/history.jsonl"
end

local function open(dir, plan)
  local journal, err = store.open_journal(dir .. "/journal.jsonl")
  if not journal then return nil, err end
  return setmetatable({ dir = dir, plan = plan, journal = journal }, Deployment)
end

--- Creates deployments/<plan.id>/ with its plan.
function M.create(plan)
  local dir = M.deployments_dir() .. "/" .. plan.id
  local ok, err = rch.fs.mkdirs(dir)
  if not ok then return nil, err end
  ok, err = rch.fs.write_atomic(dir .. "/plan.json", rch.json.encode(plan, { pretty = true }) .. "\n")
  if not ok then return nil, err end
  return open(dir, plan)
end

--- Reopens a deployment for --resume.
-- @return deployment, or nil, err
function M.load(id)
  local dir = M.deployments_dir() .. "/" .. id
  local text, err = rch.fs.read(dir .. "/plan.json")
  if not text then return nil, err end
  local plan = rch.json.decode(text)
  if type(plan) ~= "table" then return nil, dir .. "/plan.json is not valid JSON" end
  return open(dir, plan)
end

--- The newest deployment without result.json (by plan created_at), or nil.
function M.newest_unfinished()
  local names = rch.fs.list(M.deployments_dir())
  local best, best_time
  for _, id in ipairs(names or {}) do
    local dir = M.deployments_dir() .. "/" .. id
    if not rch.fs.exists(dir .. "/result.json") and rch.fs.exists(dir .. "/plan.json") then
      local plan = rch.json.decode(rch.fs.read(dir .. "/plan.json") or "")
      if type(plan) == "table" and (not best_time or plan.created_at > best_time) then
        best, best_time = id, plan.created_at
      end
    end
  end
  return best
end

--- Appends one transition. Yields until it is on disk unless opts.wait is
-- false; Deployment:barrier() then waits for everything recorded so far.
-- @param entry {worker=, step=, event=, status=, …}
function Deployment:record(entry, opts)
  entry.ts = util.iso_now()
  local ok, err = self.journal:append(rch.json.encode(entry), opts)
  if not ok then error("deployment journal: " .. err, 0) end
end

function Deployment:barrier()
  local ok, err = self.journal:barrier()
  if not ok then error("deployment journal: " .. err, 0) end
end

--- Replays the journal: per worker its last status, step and the facts a
-- resumed run needs (the version to roll back to), plus deployment events.
-- A line that does not decode is an error: skipping it would forget a
-- step (or the version to roll back to) that really happened.
-- @return workers (id -> state), events (name -> true)
function Deployment:replay()
  local path = self.dir .. "/journal.jsonl"
  local lines = store.read_lines(path) or {}
  local workers, events = {}, {}
  for i, line in ipairs(lines) do
    local e = rch.json.decode(line)
    if type(e) ~= "table" then error(("%s:%d: not a JSON object (a damaged journal line)"):format(path, i), 0) end
    if e.worker then
      local w = workers[e.worker] or { steps = {} }
      workers[e.worker] = w
      w.status = e.status or w.status
      w.step = e.step or w.step
      w.error = e.error
      w.aborted = e.aborted
      if e.previous_link ~= nil and w.previous_link == nil then w.previous_link = e.previous_link end
      if e.step then w.steps[e.step] = e.event end
    elseif e.deployment_event then
      events[e.deployment_event] = true
    end
  end
  return workers, events
end

--- Writes result.json and the history record: the deployment is finished.
function Deployment:finish(result, history_record)
  local ok, err = rch.fs.write_atomic(self.dir .. "/result.json", rch.json.encode(result, { pretty = true }) .. "\n")
  if not ok then return nil, err end
  local history
  history, err = store.open_journal(M.history_path())
  if not history then return nil, err end
  return history:append(rch.json.encode(history_record))
end

return M
