--- The deployment audit log: JSONL entries with the spec's fields
-- (timestamp, deployment_id, event_type, worker_id, details, user, machine)
-- plus prev_hash, the sha256 of the previous line, and seq, its position, so
-- an edited, removed or reordered entry breaks the chain; the chain's head
-- (last seq, its line's sha256) is kept in <log>.head, in every history
-- record and, with [audit] syslog, in syslog, so a cut-off tail shows too.
-- Written to state/audit.jsonl and to the --audit-log file when given; each
-- line is fsync'd (group commit).
local json = require "rch.json"
local store = require "rch.store"
local sys = require "rch.sys"
local log = require "rch.log"
local util = require "rch.util"

local M = {}
M.__index = M

local GENESIS = ("0"):rep(64)

local function open_chain(path, settings)
  -- prev_hash, seq and the head are written by the journal, under the file lock.
  local syslog = settings and settings.audit.syslog and settings.audit.syslog_socket or nil
  local journal, err = store.open_journal(path, { chain = true, syslog_socket = syslog })
  if not journal then return nil, err end
  local rotated
  if settings then
    rotated, err = M.rotate(journal, settings)
    if not rotated then return nil, err end
  end
  return { journal = journal, rotated = rotated }
end

--- Rotates a journal (audit or history) that reached [audit] rotate_mb,
-- keeping [audit] keep_files old files. Yields.
-- @return {rotated=, removed=} or nil, err
function M.rotate(journal, settings)
  local r, err = journal:rotate(math.floor(settings.audit.rotate_mb * 1048576), settings.audit.keep_files)
  if r and r.rotated then
    log.info(("rotated %s to %s.1%s"):format(journal:path(), journal:path(),
      #r.removed > 0 and ("; removed " .. table.concat(r.removed, ", ")) or ""))
  end
  return r, err
end

--- Opens the audit sinks.
-- @param paths list of file paths (state/audit.jsonl, optional --audit-log)
-- @return logger, or nil, err, the index in `paths` of the sink that failed
function M.open(paths, deployment_id)
  local self = setmetatable({
    chains = {},
    deployment_id = deployment_id,
    user = sys.user(),
    machine = sys.hostname() or "unknown",
    counts = {},
    started = require("rch.sched").monotonic(),
  }, M)
  local settings = require("rch.config").settings()
  for i, path in ipairs(paths) do
    local chain, err = open_chain(path, settings)
    if not chain then return nil, ("audit log %s: %s"):format(path, err), i end
    self.chains[#self.chains + 1] = chain
  end
  -- Pruning is audited: the new file starts with the rotation that made it.
  for _, chain in ipairs(self.chains) do
    if chain.rotated and chain.rotated.rotated then
      self:log("AuditRotated", nil, { file = chain.journal:path(), rotated_to = chain.journal:path() .. ".1",
        removed = json.array(chain.rotated.removed) })
    end
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
  local timestamp = util.iso_now()
  for _, chain in ipairs(self.chains) do
    local entry = {
      timestamp = timestamp,
      deployment_id = self.deployment_id,
      event_type = event_type,
      worker_id = worker_id or json.null,
      details = details or {},
      user = self.user,
      machine = self.machine,
    }
    local ok, err = chain.journal:append(entry, opts)
    if not ok then error("audit log " .. chain.journal:path() .. ": " .. err, 0) end
    -- (checked first: at 10k workers the message alone costs more than the entry)
    if log.enabled("info") then
      log.info(("audit event %s%s written to %s"):format(event_type,
        worker_id and (" (worker " .. worker_id .. ")") or "", chain.journal:path()))
    end
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

--- Checks the hash chain of an audit log (with its rotated files, oldest
-- first: the chain and seq continue across them) and its head.
-- @param each optional function(entry, file, line_number) called with every
--   decoded entry in order (one pass for the caller's own checks)
-- @param fields optional list of the entry fields `each` reads: only those
--   (and prev_hash) are decoded (at 100k workers, 800k entries' details)
-- @return true, report {entries=, first_seq=, files=, head=, beyond_head=},
-- or false, message naming the file (and line) and what is wrong
function M.verify_file(path, each, fields)
  local read_opts = { chain = true }
  if fields then
    read_opts.fields = { "prev_hash" }
    for _, f in ipairs(fields) do read_opts.fields[#read_opts.fields + 1] = f end
  end
  local files = util.rotated_files(path)
  -- Read first so that only the newest file's entry at head.seq is kept to compare.
  local head, head_err = store.chain_head(path)
  local prev, last_seq, first_seq = nil, 0, nil
  local head_hash, head_line -- the newest file's entry at head.seq
  local total = 0
  for fi, file in ipairs(files) do
    local bad -- the first problem in this file; the rest of it is not checked
    local lines, torn = store.each_json_line(file, function(entry, i, seq, sha256)
      if bad then return end
      if type(entry) ~= "table" then
        bad = ("%s:%d: not a JSON object"):format(file, i)
        return
      end
      -- The oldest entry kept may follow pruned files (seq > 1): its prev_hash is taken on trust.
      local want_prev = prev or (seq == 1 and GENESIS) or entry.prev_hash
      if entry.prev_hash ~= want_prev then
        bad = ("%s:%d: hash chain broken: this entry (or the one before it) was altered, removed or"
          .. " reordered"):format(file, i)
        return
      end
      if not seq or (prev and seq ~= last_seq + 1) then
        bad = ("%s:%d: seq is %s, expected %d: entries were removed, added or reordered"):format(file, i,
          tostring(entry.seq), last_seq + 1)
        return
      end
      first_seq = first_seq or seq
      prev, last_seq, total = sha256, seq, total + 1
      if fi == #files and head and seq == head.seq then head_hash, head_line = prev, i end
      if each then each(entry, file, i) end
    end, read_opts)
    if not lines then return false, torn end
    if torn > 0 then
      return false, ("%s:%d: torn last line (%d bytes without a newline): a write was cut off"):format(file,
        lines + 1, torn)
    end
    if bad then return false, bad end
  end
  if head_err then return false, head_err end
  local report = { entries = total, first_seq = first_seq or 1, files = #files, head = head, beyond_head = 0 }
  if not head then return true, report end
  if head.seq > last_seq then
    return false, ("%s: its head (%s.head) says %d entries, the file has %d: the last %d were removed"):format(path,
      path, head.seq, last_seq, head.seq - last_seq)
  end
  if head.seq > 0 and head_hash and head_hash ~= head.sha256 then
    return false, ("%s:%d: this entry does not match the head (%s.head): the log was rewritten"):format(path,
      head_line, path)
  end
  -- A writer killed between its fsync and the head update leaves the head one batch behind.
  report.beyond_head = last_seq - head.seq
  return true, report
end

return M
