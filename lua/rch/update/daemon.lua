--- rchd coordination for rch update: drain the running daemon, wait for its
-- builds (up to --drain-timeout), stop it through its socket (never by
-- process name), and start the installed one again afterwards: through
-- systemctl when systemd ran it (rch.update.systemd), else `rchd run`. The
-- daemon is found at its default socket, $RCH_HOME/rchd.sock.
local rch = require "rch"
local daemon = require "rch.daemon"
local install_mod = require "rch.update.install"
local systemd = require "rch.update.systemd"

local M = {}

local POLL = 0.2
local SHUTDOWN_WAIT = 15

function M.socket(home) return daemon.socket_path(home) end

--- The daemon's status: {running, pid, version, draining, active_builds}, or nil, err.
function M.status(home) return daemon.status(M.socket(home)) end

--- Drains and stops a running rchd.
-- @param opts {drain_timeout (s), say = function(text), warn = function(text)}
-- @return report {was_running, pid, version, active_builds, remaining_builds, waited, unit}, or nil, err
--   (unit: the systemd unit that ran it, see rch.update.systemd.unit_of)
--   (on error a drained daemon is undrained again)
function M.stop(home, opts)
  local sock = M.socket(home)
  local st, err = daemon.status(sock)
  if not st then return nil, ("rchd at %s: %s"):format(sock, err) end
  local report = { was_running = st.running, pid = st.pid, version = st.version, active_builds = st.active_builds,
    remaining_builds = 0, waited = 0 }
  if not st.running then return report end
  report.unit = systemd.unit_of(st.pid)

  local ok
  ok, err = daemon.drain(sock)
  if not ok then return nil, ("cannot drain rchd (pid %d): %s"):format(st.pid, err) end
  local started = rch.monotonic()
  local active = st.active_builds
  if active > 0 then
    opts.say(("draining rchd (pid %d): %d build%s running, waiting up to %ds"):format(st.pid, active,
      active == 1 and "" or "s", opts.drain_timeout))
  end
  while true do
    local now, serr = daemon.status(sock)
    if not now then
      daemon.undrain(sock)
      return nil, ("rchd (pid %d) while draining: %s"):format(st.pid, serr)
    end
    if not now.running then
      active = 0
      break
    end
    active = now.active_builds
    if active == 0 or rch.monotonic() - started >= opts.drain_timeout then break end
    rch.sleep(POLL)
  end
  report.waited = rch.monotonic() - started
  report.remaining_builds = active
  if active > 0 then
    opts.warn(("%d build%s still running in rchd (pid %d) after the %ds drain timeout; stopping rchd anyway (the"
      .. " builds keep running under their leases)"):format(active, active == 1 and "" or "s", st.pid, opts.drain_timeout))
  end
  ok, err = daemon.shutdown(sock, active > 0, SHUTDOWN_WAIT)
  if not ok then
    daemon.undrain(sock)
    return nil, ("cannot stop rchd (pid %d): %s"):format(st.pid, err)
  end
  opts.say(("stopped rchd %s (pid %d)%s"):format(st.version, st.pid,
    report.unit and (" of systemd unit %s (%s)"):format(report.unit.unit, report.unit.scope) or ""))
  return report
end

--- Starts rchd again, $RCH_HOME/bin/rchd (the installed current version) or,
-- when systemd ran the daemon that was stopped, its unit, and checks that it
-- answers with the expected version.
-- @param unit the stopped daemon's systemd unit (the report of M.stop), or nil
-- @return status, or nil, err
function M.start(home, expect_version, unit)
  local exe = home .. "/bin/rchd"
  local err
  local started_by = exe .. " run"
  if unit then
    local ok, serr = systemd.start(unit)
    if not ok then return nil, serr end
    started_by = table.concat(systemd.argv(unit, "start"), " ")
  else
    local run, rerr = rch.sys.run({ exe, "run", "--root", home }, 30)
    if not run then return nil, ("cannot start %s: %s"):format(exe, rerr) end
    if run.code ~= 0 then
      return nil, ("%s run exited %d: %s"):format(exe, run.code, (run.err .. run.out):gsub("%s+$", ""))
    end
  end
  local st
  st, err = daemon.status(M.socket(home))
  if not st then return nil, ("rchd started but %s: %s"):format(M.socket(home), err) end
  if not st.running then return nil, ("%s returned but nothing answers on %s"):format(started_by, M.socket(home)) end
  if expect_version and st.version ~= expect_version then
    return nil, ("the restarted rchd (pid %d) reports version %s, expected %s%s"):format(st.pid, st.version,
      expect_version, unit and (" (the unit %s runs another rchd than %s: point its ExecStart there)"):format(
        unit.unit, home .. "/bin/rchd") or "")
  end
  if st.draining then daemon.undrain(M.socket(home)) end
  return st
end

--- Whether an earlier update was interrupted after it stopped rchd and before
-- it started it again (so this run should start it at the end).
function M.stopped_by_interrupted_update(home)
  return install_mod.read_state(home).rchd_stopped == true
end

return M
