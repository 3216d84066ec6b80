--- Durable deployment state under $RCH_STATE_DIR: deployments/<id>/plan.json
-- (written atomically: once, and again only to add another architecture's
-- artifact), journal.jsonl (one fsync'd line per worker step
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

local function lock_dir()
  return override_dir or rch.config.paths().data_dir
end

function M.lock_path()
  return lock_dir() .. "/fleet.lock"
end

--- Creates (0700) and checks the state and lock dirs before anything is
-- written there or done to a worker: another local user able to write them
-- could forge the journal a --resume replays (core/store/dirs).
-- @return true, or nil, err naming the directory and the fix
function M.prepare_dirs()
  local ok, err = rch.fs.mkdirs(M.state_dir())
  if ok then ok, err = rch.fs.mkdirs(lock_dir()) end
  return ok, err
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

-- Deployment ids, newest first: by when their plan.json was written (a
-- directory without one sorts last).
local function newest_first()
  local dated = {}
  for _, id in ipairs(rch.fs.list(M.deployments_dir()) or {}) do
    dated[#dated + 1] = { id = id, t = rch.fs.mtime(M.deployments_dir() .. "/" .. id .. "/plan.json") or 0 }
  end
  table.sort(dated, function(a, b) return a.t > b.t end)
  return dated
end

--- Deletes the oldest deployments/<id>/ beyond [state] keep_deployments - 1
-- (room for the one about to be created), under fleet.lock.
-- @return list of removed ids (for the audit log)
local function prune_deployments(keep)
  local dated = newest_first()
  local removed = {}
  for i = keep, #dated do
    local ok, err = require("rch.install").remove_tree(M.deployments_dir() .. "/" .. dated[i].id)
    if ok then
      removed[#removed + 1] = dated[i].id
    else
      rch.log.warn("cannot prune a deployment: " .. err)
    end
  end
  if #removed > 0 then
    rch.log.info(("pruned %d deployment%s beyond [state] keep_deployments = %d from %s"):format(#removed,
      #removed == 1 and "" or "s", keep, M.deployments_dir()))
  end
  return removed
end

--- Creates deployments/<plan.id>/ with its plan, after pruning the oldest
-- ones beyond [state] keep_deployments.
-- @return deployment, pruned ids; or nil, err
function M.create(plan)
  local settings = rch.config.settings()
  local pruned = prune_deployments(settings and settings.state.keep_deployments or 200)
  local dir = M.deployments_dir() .. "/" .. plan.id
  local ok, err = rch.fs.mkdirs(dir)
  if not ok then return nil, err end
  ok, err = rch.fs.write_json_atomic(dir .. "/plan.json", plan)
  if not ok then return nil, err end
  local deployment
  deployment, err = open(dir, plan)
  return deployment, err or pruned
end

-- The plan in `dir`, checked for the fields every reader relies on.
-- @return plan, or nil, err naming the file and what is wrong
local function read_plan(dir)
  local path = dir .. "/plan.json"
  local text, err = rch.fs.read(path)
  if not text then return nil, err end
  local plan = rch.json.decode(text)
  if type(plan) ~= "table" then return nil, path .. " is not a deployment plan: not valid JSON" end
  if type(plan.id) ~= "string" or type(plan.workers) ~= "table" then
    return nil, path .. " is not a deployment plan: it has no id or no workers list"
  end
  if plan.kind ~= "rollback" and (type(plan.target_version) ~= "string" or type(plan.options) ~= "table"
      or type(plan.artifact) ~= "table") then
    return nil, path .. " is not a deployment plan: target_version, options or artifact is missing"
  end
  return plan
end

--- Reopens a deployment for --resume.
-- @return deployment, or nil, err
function M.load(id)
  local dir = M.deployments_dir() .. "/" .. id
  local plan, err = read_plan(dir)
  if not plan then return nil, err end
  return open(dir, plan)
end

--- The records of history.jsonl, oldest first. A line that is not a JSON
-- object is skipped with a warning naming file:line (one bad line must not
-- hide the rest of the history).
-- @return records, or nil, err when the file cannot be read
function M.read_history()
  local records = {}
  for _, path in ipairs(util.rotated_files(M.history_path())) do
    if rch.fs.exists(path) then
      local lines, err = store.read_lines(path)
      if not lines then return nil, err end
      for i, line in ipairs(lines) do
        local r = rch.json.decode(line)
        if type(r) == "table" then
          records[#records + 1] = r
        else
          rch.log.warn(("%s:%d: not a JSON record, skipped"):format(path, i))
        end
      end
    end
  end
  return records
end


--- The newest deployment (or rollback) by when its plan was written, with
-- its result when it finished.
-- @param want optional function(plan) -> bool: the newest whose plan it accepts
-- @return {id=, dir=, plan=, result=table|nil}, or nil (none), or nil, err
-- naming a newest plan.json or result.json that cannot be read
function M.newest(want)
  for _, d in ipairs(newest_first()) do
    if d.t == 0 then break end
    local entry, err = M.entry(d.id)
    if not entry then
      return nil, err .. "; it is the newest deployment, so rch cannot tell what came last (move that directory"
        .. " away to act on the one before it)"
    end
    if not want or want(entry.plan) then return entry end
  end
  return nil
end

--- One deployment's plan and, when it finished, its result.
-- @return {id=, dir=, plan=, result=table|nil}, or nil, err naming the file
function M.entry(best)
  local dir = M.deployments_dir() .. "/" .. best
  local plan, err = read_plan(dir)
  if not plan then return nil, err end
  local entry = { id = best, dir = dir, plan = plan }
  if rch.fs.exists(dir .. "/result.json") then
    entry.result = rch.json.decode(rch.fs.read(dir .. "/result.json") or "")
    if type(entry.result) ~= "table" then return nil, dir .. "/result.json is not valid JSON" end
  end
  return entry
end

--- The plan's workers that did not end Completed or Skipped (already at the
-- target; an aborted worker counts as not done), in plan order.
function Deployment:unfinished_workers()
  local replayed = self:replay()
  local ids = {}
  for _, w in ipairs(self.plan.workers) do
    local r = replayed[w.worker_id] or {}
    if r.status ~= "Completed" and not (r.status == "Skipped" and not r.aborted) then ids[#ids + 1] = w.worker_id end
  end
  return ids
end

--- Appends one transition. Yields until it is on disk unless opts.wait is
-- false; Deployment:barrier() then waits for everything recorded so far.
-- @param entry {worker=, step=, event=, status=, …}
function Deployment:record(entry, opts)
  entry.ts = util.iso_now()
  local ok, err = self.journal:append(entry, opts)
  if not ok then error("deployment journal: " .. err, 0) end
end

function Deployment:barrier()
  local ok, err = self.journal:barrier()
  if not ok then error("deployment journal: " .. err, 0) end
end

-- The journal fields a replay reads: only those are decoded (not a line's
-- timestamp, output, hashes…: at 100k workers the journal has 900k lines).
local REPLAYED = { fields = { "worker", "status", "step", "event", "error", "aborted", "previous_link",
  "deployment_event" } }

--- Replays the journal: per worker its last status, step and the facts a
-- resumed run needs (the version to roll back to), plus deployment events.
-- A line that does not decode is an error: skipping it would forget a
-- step (or the version to roll back to) that really happened.
-- @param each optional function(entry, line_number) called with every entry
--   in order, as far as REPLAYED (one pass for the caller's own checks: rch fleet stress)
-- @return workers (id -> state), events (name -> true)
function Deployment:replay(each)
  local path = self.dir .. "/journal.jsonl"
  local workers, events = {}, {}
  store.each_json_line(path, function(e, i)
    if type(e) ~= "table" then error(("%s:%d: not a JSON object (a damaged journal line)"):format(path, i), 0) end
    if each then each(e, i) end
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
  end, REPLAYED)
  return workers, events
end

--- Adds the artifact workers of another architecture get to plan.json
-- (its `artifacts`, by architecture), rewritten atomically before the first
-- of them gets it, so that a --resume ships the same bytes.
-- @return true, or nil, err
function Deployment:add_artifact(arch, record)
  self.plan.artifacts = self.plan.artifacts or {}
  self.plan.artifacts[arch] = record
  return rch.fs.write_json_atomic(self.dir .. "/plan.json", self.plan)
end

--- Writes result.json and the history record: the deployment is finished.
function Deployment:finish(result, history_record)
  local ok, err = rch.fs.write_json_atomic(self.dir .. "/result.json", result)
  if not ok then return nil, err end
  local history
  history, err = store.open_journal(M.history_path())
  if not history then return nil, err end
  local settings = rch.config.settings()
  if settings then
    ok, err = require("rch.audit").rotate(history, settings)
    if not ok then return nil, err end
  end
  return history:append(rch.json.encode(history_record))
end

return M
