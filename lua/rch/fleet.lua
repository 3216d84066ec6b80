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
local remote = require "rch.remote"
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

--- How many workers work that changes nothing probes at once: [defaults]
-- probe_parallel, never fewer than `parallel` (the command's --parallel).
function M.probe_width(s, parallel)
  return math.max(parallel or s.defaults.parallel, s.defaults.probe_parallel)
end

--- The one loop over workers (also under fleet status, verify, drain and
-- rollback): connects, resolves the worker root, runs fn(worker, conn, root),
-- at most opts.parallel at once ([defaults] parallel); with opts.login_home
-- the root is not resolved (fn(worker, conn): fleet exec and copy work in the
-- login home). A worker that cannot be reached, whose root cannot be resolved,
-- or whose fn raised gets opts.failed(worker, err, reachable) (default: {error = err}).
-- With opts.probe (read-only work: status, verify, dry run) it runs at
-- M.probe_width, fn gets the root as configured (remote.root_spec: the
-- remote script resolves "~", saving a round trip), and each worker's
-- session is parked when its fn returns: open sessions stay within the width
-- at any fleet size (transport.cap_open).
-- @return table worker id -> value, and the same values as a list in `workers` order
function M.each(workers, fn, opts)
  opts = opts or {}
  local failed = opts.failed or function(_, err) return { error = err } end
  local s = opts.settings or settings()
  local width = opts.probe and M.probe_width(s, opts.parallel) or opts.parallel or s.defaults.parallel
  local function visit(w)
    local conn, err = transport.get(w, s)
    if not conn then return failed(w, err, false) end
    if opts.login_home then return fn(w, conn) end
    local root
    if opts.probe then
      root, err = remote.root_spec(w)
    else
      root, err = conn:root()
    end
    if not root then return failed(w, err, true) end
    return fn(w, conn, root)
  end
  if opts.probe then transport.cap_open(width) end
  local results, errors = rch.parallel(workers, width, function(w)
    if not opts.probe then return visit(w) end
    local ok, value = rch.pcall(visit, w)
    transport.park(w)
    if not ok then error(value, 0) end
    return value
  end)
  local by_id, list = {}, {}
  for i, w in ipairs(workers) do
    list[i] = (errors and errors[i]) and failed(w, errors[i], true) or results[i] -- fn raised: it was reached
    by_id[w.id] = list[i]
  end
  return by_id, list
end

--- Runs argv (a list, quoted word by word on the worker) everywhere.
-- @return worker id -> {code, out, err} or {error = …}
function M.exec(workers, argv, opts)
  return M.each(workers, function(_, conn)
    local r, err = conn:exec(argv, { timeout = (opts and opts.timeout) or settings().defaults.command_timeout })
    return r or { error = err }
  end, opts)
end

-- Sets the drain marker, then polls rch-wkr's health until no build runs or
-- `timeout` passes (the marker stays: the worker is left draining).
local function drain_one(worker, conn, root, timeout, on_busy)
  local r = { worker_id = worker.id, drained = false, active_builds = 0 }
  local ok, err = conn:drain(root, 0) -- fails at once ("drain timed out") while builds run
  if ok or not tostring(err):find("drain timed out", 1, true) then
    r.drained, r.error = ok and true or false, not ok and err or nil
    return r
  end
  local deadline, last = rch.monotonic() + timeout, nil
  while true do
    local probe
    probe, err = conn:probe_agent(root, true, settings().defaults.command_timeout)
    if not probe or not probe.health then
      r.error = err or "rch-wkr health did not answer"
      return r
    end
    r.active_builds = probe.health.active_builds or 0
    r.drained = r.active_builds == 0
    if r.drained then return r end
    if r.active_builds ~= last and on_busy then on_busy(worker, r.active_builds) end
    last = r.active_builds
    if rch.monotonic() >= deadline then return r end
    rch.sleep(math.min(1, math.max(0.05, deadline - rch.monotonic())))
  end
end

--- Marks workers draining and waits up to opts.timeout (120) s for their
-- builds; opts.on_busy(worker, active_builds) hears each change while it waits.
-- @return worker id -> {worker_id, drained = bool, active_builds = n[, error]}, and the list
function M.drain(workers, opts)
  opts = opts or {}
  return M.each(workers, function(w, conn, root)
    return drain_one(w, conn, root, opts.timeout or 120, opts.on_busy)
  end, { parallel = opts.parallel, failed = function(w, err)
    return { worker_id = w.id, drained = false, active_builds = 0, error = err }
  end })
end

--- Lets workers take builds again.
-- @return worker id -> {worker_id, undrained = bool[, error]}, and the list
function M.undrain(workers, opts)
  opts = opts or {}
  return M.each(workers, function(w, conn, root)
    local ok, err = conn:undrain(root, settings().defaults.command_timeout)
    return { worker_id = w.id, undrained = ok and true or false, error = not ok and err or nil }
  end, { parallel = opts.parallel, failed = function(w, err)
    return { worker_id = w.id, undrained = false, error = err }
  end })
end

--- Copies a local file to `remote_path` on each worker (temp name + rename,
-- sha256 checked on the worker; missing directories are created). Relative
-- paths and ~/… are under the login home, as for fleet.exec and rch fleet
-- copy; fleet.root(worker) gives the worker root.
-- @return worker id -> {path, sha256} or {error = …}
function M.upload(workers, local_path, remote_path, opts)
  local sha = assert(rch.crypto.sha256_file(local_path))
  local dest = assert(remote.login_path(remote_path))
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
