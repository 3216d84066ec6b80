--- The scripting API for `rch run FILE.lua`: the fleet as the strategies and
-- commands see it, in a few calls. Every call that talks to workers yields
-- and runs per worker in parallel, capped; results are keyed by worker id.
--
--   local fleet = require "rch.fleet"
--   local gpu = fleet.tagged("gpu")
--   fleet.drain(gpu, { timeout = 300 })
--   local res = fleet.exec(gpu, { "sh", "-c", "rm -rf /var/cache/build/*" })
--   fleet.undrain(gpu)
local rch = require "rch"
local transport = require "rch.transport"
local workers_mod = require "rch.workers"
local audit_mod = require "rch.audit"
local state = require "rch.deploy.state"

local M = {}

local settings_cache
local function settings()
  if not settings_cache then settings_cache = assert(rch.config.settings()) end
  return settings_cache
end

--- Workers from workers.toml: all, or those `selection` names, minus those
-- `exclude` names (the --worker/--exclude patterns: ids, globs, w[1-32], @tag, @failed).
-- @return list of worker tables, or nil, err naming a pattern that matches nothing
function M.workers(selection, exclude) return workers_mod.select(selection, exclude) end

--- Workers carrying `tag` (from all workers, or from `workers`).
function M.tagged(tag, workers)
  return workers_mod.with_tag(workers or assert(workers_mod.select()), tag)
end

--- Runs fn(worker, conn, root) on every worker, at most opts.parallel at once
-- ([defaults] parallel). A worker that cannot be reached gets {error = …}.
-- @return table worker id -> fn's value, or {error = message}
function M.each(workers, fn, opts)
  local n = (opts and opts.parallel) or settings().defaults.parallel
  local out = {}
  local results, errors = rch.parallel(workers, n, function(w)
    local conn, err = transport.get(w, settings())
    if not conn then return { error = err } end
    local root
    root, err = conn:root()
    if not root then return { error = err } end
    return fn(w, conn, root)
  end)
  for i, w in ipairs(workers) do
    out[w.id] = (errors and errors[i]) and { error = errors[i] } or results[i]
  end
  return out
end

--- Runs argv (a list, quoted word by word on the worker) everywhere.
-- @return worker id -> {code, out, err} or {error = …}
function M.exec(workers, argv, opts)
  return M.each(workers, function(_, conn)
    local r, err = conn:exec(argv, { timeout = (opts and opts.timeout) or settings().defaults.command_timeout })
    return r or { error = err }
  end, opts)
end

--- Marks workers draining and waits up to opts.timeout (120) s for their builds.
-- @return worker id -> {drained = bool, active_builds = n} or {error = …}
function M.drain(workers, opts)
  local timeout = (opts and opts.timeout) or 120
  return M.each(workers, function(_, conn, root)
    local ok, err = conn:drain(root, timeout)
    if ok then return { drained = true, active_builds = 0 } end
    local probe = conn:probe_agent(root, true, 30)
    return { drained = false, active_builds = probe and probe.health and probe.health.active_builds, error = err }
  end, opts)
end

--- Lets workers take builds again.
function M.undrain(workers, opts)
  return M.each(workers, function(_, conn, root)
    local ok, err = conn:undrain(root, 30)
    return ok and { undrained = true } or { error = err }
  end, opts)
end

--- Copies a local file to `remote_path` on each worker (temp name + rename,
-- sha256 checked on the worker; missing directories are created). Relative
-- paths and ~/… are under the login home, as for fleet.exec and rch fleet
-- copy; fleet.root(worker) gives the worker root.
-- @return worker id -> {path, sha256} or {error = …}
function M.upload(workers, local_path, remote_path, opts)
  local sha = assert(rch.crypto.sha256_file(local_path))
  local dest = assert(require("rch.remote").login_path(remote_path))
  local timeout = (opts and opts.timeout)
    or require("rch.deploy.remote_steps").upload_timeout(assert(rch.fs.size(local_path)), settings().defaults)
  return M.each(workers, function(_, conn)
    local ok, err = conn:put(local_path, dest, sha, timeout, { mode = opts and opts.mode })
    return ok and { path = remote_path, sha256 = sha } or { error = err }
  end, opts)
end

--- The worker's install root (its `root` with ~ resolved on the worker). Yields.
-- @return absolute path, or nil, err
function M.root(worker)
  local conn, err = transport.get(worker, settings())
  if not conn then return nil, err end
  return conn:root()
end

local audit_log
--- Appends an event to the audit log ($RCH_STATE_DIR/audit.jsonl, hash-chained).
-- @param event_type e.g. "MaintenanceStarted"
-- @param worker_id worker id or nil
-- @param details table
function M.audit(event_type, worker_id, details)
  if not audit_log then
    audit_log = assert(audit_mod.open({ state.state_dir() .. "/audit.jsonl" }, "script:" .. rch.sys.uuid()))
  end
  audit_log:log(event_type, worker_id, details or {})
end

--- Closes every connection (also done when the script ends).
function M.close() transport.close_all() end

return M
