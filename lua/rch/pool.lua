--- SSH sessions per worker: one authenticated session per worker, reused for
-- every step of a command (keyed like OpenResty's setkeepalive pools).
local ssh = require "rch.ssh"
local config = require "rch.config"

local M = {}

local sessions = {}

--- The ssh target for a worker: its own fields plus the [defaults] of config.toml.
-- @param worker worker table from rch.config.workers()
-- @param settings table from rch.config.settings()
function M.target(worker, settings)
  local d = settings.defaults
  return {
    host = worker.host,
    port = worker.port,
    user = worker.user,
    identity_file = worker.identity_file,
    known_hosts = d.known_hosts,
    ssh_config = d.ssh_config,
    host_key_policy = d.host_key_policy,
    connect_timeout = d.connect_timeout,
  }
end

--- The session of `worker`, connecting on first use. Yields.
-- @return session, or nil, err (the error names the worker)
function M.get(worker, settings)
  local s = sessions[worker.id]
  if s and s:alive() then return s end
  local session, err = ssh.connect(M.target(worker, settings or config.settings()))
  if not session then return nil, err end
  sessions[worker.id] = session
  return session
end

--- Drops a worker's session (after a transport error) so the next get reconnects.
function M.forget(worker)
  local s = sessions[worker.id]
  if s then s:close() end
  sessions[worker.id] = nil
end

--- Closes every session.
function M.close_all()
  for id, s in pairs(sessions) do
    s:close()
    sessions[id] = nil
  end
end

return M
