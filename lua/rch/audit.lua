--- The deployment audit log: JSONL entries with the spec's fields
-- (timestamp, deployment_id, event_type, worker_id, details, user, machine)
-- plus prev_hash, the sha256 of the previous line, and seq, its position, so
-- an edited, removed or reordered entry breaks the chain; the chain's head
-- (last seq, its line's sha256) is kept in <log>.head, in every history
-- record and, with [audit] syslog, in syslog, so a cut-off tail shows too.
-- Written to state/audit.jsonl and to the --audit-log file when given; each
-- line is fsync'd (group commit).
local json = require "rch.json"
local crypto = require "rch.crypto"
local store = require "rch.store"
local sys = require "rch.sys"

local M = {}
M.__index = M

local GENESIS = ("0"):rep(64)

local function open_chain(path)
  -- prev_hash, seq and the head are written by the journal, under the file lock.
  local settings = require("rch.config").settings()
  local syslog = settings and settings.audit.syslog and settings.audit.syslog_socket or nil
  local journal, err = store.open_journal(path, { chain = true, syslog_socket = syslog })
  if not journal then return nil, err end
  return { journal = journal }
end

--- Opens the audit sinks.
-- @param paths list of file paths (state/audit.jsonl, optional --audit-log)
-- @return logger, or nil, err
function M.open(paths, deployment_id)
  local self = setmetatable({
    chains = {},
    deployment_id = deployment_id,
    user = sys.user(),
    machine = sys.hostname() or "unknown",
    counts = {},
    started = require("rch.sched").monotonic(),
  }, M)
  for _, path in ipairs(paths) do
    local chain, err = open_chain(path)
    if not chain then return nil, ("audit log %s: %s"):format(path, err) end
    self.chains[#self.chains + 1] = chain
  end
  return self
end

--- Appends one event to every sink. Yields until it is durable, unless
-- opts.wait is false (then a later M:barrier() waits for it).
-- @param event_type one of the spec's AuditEventType names
-- @param worker_id worker id or nil
-- @param details table
function M:log(event_type, worker_id, details, opts)
  self.counts[event_type] = (self.counts[event_type] or 0) + 1
  for _, chain in ipairs(self.chains) do
    local entry = {
      timestamp = require("rch.util").iso_now(),
      deployment_id = self.deployment_id,
      event_type = event_type,
      worker_id = worker_id or json.null,
      details = details or {},
      user = self.user,
      machine = self.machine,
    }
    local ok, err = chain.journal:append(json.encode(entry), opts)
    if not ok then error("audit log " .. chain.journal:path() .. ": " .. err, 0) end
  end
end

--- Waits until every event logged so far is on disk. Yields.
function M:barrier()
  for _, chain in ipairs(self.chains) do
    local ok, err = chain.journal:barrier()
    if not ok then error("audit log " .. chain.journal:path() .. ": " .. err, 0) end
  end
end

--- The head of the first sink (state/audit.jsonl) once everything logged so
-- far is on disk: {seq=, sha256=}, for the history record. Yields.
function M:head()
  self:barrier()
  return store.chain_head(self.chains[1].journal:path())
end

--- The spec's AuditSummary of what this logger wrote.
function M:summary()
  local total = 0
  for _, n in pairs(self.counts) do total = total + n end
  return {
    total_events = total,
    workers_deployed = self.counts.WorkerInstallCompleted or 0,
    workers_failed = self.counts.WorkerFailed or 0,
    duration_secs = require("rch.sched").monotonic() - self.started,
  }
end

--- Checks the hash chain of an audit log file and its head.
-- @return true, report {entries=, head=, beyond_head=}, or false, message
-- naming the file (and line) and what is wrong
function M.verify_file(path)
  local text, err = require("rch.fs").read(path)
  if not text then return false, err end
  local lines
  lines, err = store.read_lines(path)
  if not lines then return false, err end
  if #text > 0 and text:sub(-1) ~= "\n" then
    return false, ("%s:%d: torn last line (%d bytes without a newline): a write was cut off"):format(path,
      #lines + 1, #text - (text:match("^.*\n()") or 1) + 1)
  end
  local prev = GENESIS
  for i, line in ipairs(lines) do
    local entry = json.decode(line)
    if type(entry) ~= "table" then return false, ("%s:%d: not a JSON object"):format(path, i) end
    if entry.prev_hash ~= prev then
      return false, ("%s:%d: hash chain broken: this entry (or the one before it) was altered, removed or reordered")
        :format(path, i)
    end
    if store.chain_seq(line) ~= i then
      return false, ("%s:%d: seq is %s, expected %d: entries were removed, added or reordered"):format(path, i,
        tostring(entry.seq), i)
    end
    prev = crypto.sha256(line)
  end
  local head
  head, err = store.chain_head(path)
  if err then return false, err end
  local report = { entries = #lines, head = head, beyond_head = 0 }
  if not head then return true, report end
  if head.seq > #lines then
    return false, ("%s: its head (%s.head) says %d entries, the file has %d: the last %d were removed"):format(path,
      path, head.seq, #lines, head.seq - #lines)
  end
  if head.seq > 0 and crypto.sha256(lines[head.seq]) ~= head.sha256 then
    return false, ("%s:%d: this entry does not match the head (%s.head): the log was rewritten"):format(path,
      head.seq, path)
  end
  -- A writer killed between its fsync and the head update leaves the head one batch behind.
  report.beyond_head = #lines - head.seq
  return true, report
end

return M
