--- rch fleet status: per worker, reachable or the error, the installed
-- rch-wkr version and the versions kept, draining, active builds, free disk,
-- and the outcome of its last deployment. Probes run in parallel, one
-- session per worker; --watch redraws every second until Ctrl-C.
local rch = require "rch"
local transport = require "rch.transport"
local ui = require "rch.ui"
local workers_mod = require "rch.workers"
local state = require "rch.deploy.state"
local ssh_transport = require "rch.transport.ssh"
local fleet = require "rch.fleet"

local M = {}

-- worker id -> {id, status, target_version, completed_at} of its newest deployment.
local function last_deployments()
  local out = {}
  for _, h in ipairs(state.read_history() or {}) do
    if type(h.workers) == "table" then
      for id, status in pairs(h.workers) do
        out[id] = { id = h.id, status = status, target_version = h.target_version, completed_at = h.completed_at }
      end
    end
  end
  return out
end

-- Where a worker really is: its host as configured, and the hostname, port,
-- user and jump hosts after the ssh config (what OpenSSH's client would use),
-- and the address the hostname resolves to.
local function endpoint(worker, settings, resolve)
  local e = { worker_id = worker.id, host = worker.host, hostname = worker.host, port = worker.port,
    user = worker.user, reachable = false }
  if not resolve or transport.impl() ~= ssh_transport then return e end
  local r = rch.ssh.resolve(ssh_transport.target(worker, settings))
  if r then
    e.hostname, e.port, e.user, e.jump, e.address = r.hostname, r.port, r.user, r.jump, r.address
  end
  return e
end

-- One command per worker: the preflight facts with the agent's health.
local function probe(worker, conn, root_spec, settings)
  local entry = endpoint(worker, settings, true)
  entry.reachable = true
  local facts, err = conn:preflight(root_spec, "", settings.defaults.command_timeout, true, true)
  if not facts then
    entry.error = err
    return entry
  end
  entry.root = facts.root
  entry.version = facts.current_version
  entry.versions = {}
  for v in tostring(facts.versions or ""):gmatch("v(%S+)") do entry.versions[#entry.versions + 1] = v end
  entry.draining = facts.draining
  entry.disk_free_mb = facts.disk_free_mb
  if facts.root_unsafe then
    -- Its rch-wkr is not run: someone else could have replaced it.
    entry.error = "unsafe worker root: " .. facts.root_unsafe
    return entry
  end
  if facts.agent_present and not facts.current_version then entry.error = "rch-wkr is installed but does not run" end
  if facts.current_version then
    if type(facts.health) == "table" then
      entry.active_builds = facts.health.active_builds
    else
      entry.error = facts.health_error or "rch-wkr health did not answer"
    end
  end
  return entry
end

local function collect(workers, settings)
  local _, results = fleet.each(workers, function(w, conn, root) return probe(w, conn, root, settings) end, {
    settings = settings, probe = true,
    failed = function(w, err, reachable)
      local entry = endpoint(w, settings, true)
      entry.error, entry.reachable = err, reachable
      return entry
    end,
  })
  local last = last_deployments()
  for i = 1, #workers do results[i].last_deployment = last[workers[i].id] end
  return results
end

local function render_json(results, compact)
  local null = rch.json.null
  local list = rch.json.array()
  for i, r in ipairs(results) do
    list[i] = {
      worker_id = r.worker_id, host = r.host, hostname = r.hostname, address = r.address or null, port = r.port,
      user = r.user, jump = r.jump or null, reachable = r.reachable, root = r.root or null,
      version = r.version or null, versions = rch.json.array(r.versions or {}),
      draining = r.draining == nil and null or r.draining, active_builds = r.active_builds or null,
      disk_free_mb = r.disk_free_mb or null, last_deployment = r.last_deployment or null, error = r.error or null,
    }
  end
  return ui.json({ workers = list }, compact) .. "\n"
end

local function render_table(results)
  local rows = {}
  for _, r in ipairs(results) do
    local address = ((r.user or "") ~= "" and r.user .. "@" or "") .. r.hostname .. ":" .. tostring(r.port)
    if r.address and r.address ~= r.hostname then address = address .. " (" .. r.address .. ")" end
    if r.hostname ~= r.host then address = r.host .. " = " .. address end
    if r.jump then address = address .. " via " .. r.jump end
    local reach = r.reachable and ui.paint("green", "yes") or ui.paint("red", "no")
    local version = r.version or (r.reachable and not r.error and ui.paint("dim", "none") or "-")
    local state_text = r.draining and ui.paint("yellow", "draining") or (r.version and "ready" or "-")
    local last = r.last_deployment and (r.last_deployment.status .. " " .. r.last_deployment.target_version) or "-"
    rows[#rows + 1] = { r.worker_id, address, reach, version, state_text,
      r.active_builds and tostring(r.active_builds) or "-", r.disk_free_mb and tostring(r.disk_free_mb) or "-", last,
      r.error and ui.paint("red", r.error) or "" }
  end
  ui.table({ "WORKER", "ADDRESS", "REACHABLE", "VERSION", "STATE", "BUILDS", "DISK_MB", "LAST DEPLOY", "ERROR" }, rows)
end

-- The closing summary: reachable and unreachable workers, folded; with
-- --quiet it replaces the table, and each worker's error goes to stderr.
local function render_people(results)
  local up, down = {}, {}
  for _, r in ipairs(results) do
    table.insert(r.reachable and up or down, r.worker_id)
    if ui.quiet and r.error then io.stderr:write("rch: ", r.worker_id, ": ", ui.one_line(r.error), "\n") end
  end
  if not ui.quiet then render_table(results) end
  io.stdout:write(ui.outcomes({ { label = "reachable", ids = up }, { label = "unreachable", ids = down } },
    #down > 0 and { what = "the unreachable workers", command = "rch fleet status " .. ui.worker_flag(down) } or nil))
end

--- @param opts {worker = list of ids, json = bool, watch = bool}
-- @return exit code
function M.run(opts)
  local settings, workers = workers_mod.load(opts.worker, opts.exclude)
  if not settings then
    ui.error(workers)
    return 2
  end
  if not opts.watch then
    local results = collect(workers, settings)
    if opts.json then io.stdout:write(render_json(results)) else render_people(results) end
    return 0
  end
  -- --watch: Ctrl-C is the normal way out, so it exits 0.
  rch.sys.exit_on_interrupt(0)
  while true do
    local started = rch.monotonic()
    local results = collect(workers, settings)
    if opts.json then
      -- One JSON document per line: a stream a program can read.
      io.stdout:write(render_json(results, true))
    else
      if ui.stdout_tty then ui.control("\27[H\27[J") end
      io.stdout:write(("rch fleet status — %s (every 1s, Ctrl-C to stop)\n"):format(os.date("%H:%M:%S")))
      render_people(results)
      if not ui.stdout_tty then io.stdout:write("\n") end
    end
    io.stdout:flush()
    rch.sleep(math.max(0, 1 - (rch.monotonic() - started)))
  end
end

return M
