--- The SSH transport: one libssh session per worker; every operation is a
-- constant sh script from rch.deploy.remote_steps run with quoted arguments.
local ssh = require "rch.ssh"
local config = require "rch.config"
local remote = require "rch.remote"
local steps = require "rch.deploy.remote_steps"
local log = require "rch.log"
local sched = require "rch.sched"

local M = {}
local Handle = {}
Handle.__index = Handle

--- The ssh target for a worker: its own fields plus the [defaults] of config.toml.
function M.target(worker, settings)
  local d = settings.defaults
  return {
    host = worker.host, port = worker.port, user = worker.user, identity_file = worker.identity_file,
    certificate_file = worker.certificate_file,
    known_hosts = d.known_hosts, ssh_config = d.ssh_config, host_key_policy = d.host_key_policy,
    connect_timeout = d.connect_timeout, max_output = d.max_output_bytes, stall_timeout = d.stall_timeout,
  }
end

--- Connects to a worker. A transient failure (refused, reset, timed out, no
-- route: a host rebooting) is retried `[defaults] connect_retries` times,
-- after `connect_retry_delay` seconds, doubling; each retry is logged at warn.
-- Authentication and host key failures are never retried. Yields.
-- @return handle, or nil, err (naming the attempts when it retried)
function M.open(worker, settings)
  settings = settings or config.settings()
  local d = settings.defaults
  local retries, delay = d.connect_retries or 2, d.connect_retry_delay or 1
  local target = M.target(worker, settings)
  local attempt = 1
  while true do
    local session, err, kind = ssh.connect(target)
    if session then return setmetatable({ worker = worker, session = session }, Handle) end
    if kind ~= "transient" or attempt > retries then
      if attempt > 1 then err = ("%s (attempt %d of %d)"):format(err, attempt, retries + 1) end
      return nil, err
    end
    log.warn(("%s: %s; retry %d of %d in %g s"):format(worker.id, err, attempt, retries, delay))
    sched.sleep(delay)
    attempt, delay = attempt + 1, delay * 2
  end
end

-- transfer() takes an encoded upload (rch.deploy.transfer); the simulated fleet does not.
Handle.encoded_uploads = true
function Handle:root() return remote.root(self.session, self.worker) end
function Handle:preflight(...) return steps.preflight(self.session, ...) end
function Handle:transfer(...) return steps.transfer(self.session, ...) end
function Handle:install(...) return steps.install(self.session, ...) end
function Handle:pull_probe(...) return steps.pull_probe(self.session, ...) end
function Handle:pull(...) return steps.pull(self.session, ...) end
function Handle:rollback(...) return steps.rollback(self.session, ...) end
function Handle:drain(...) return steps.drain(self.session, ...) end
function Handle:undrain(...) return steps.undrain(self.session, ...) end
function Handle:toolchain(...) return steps.toolchain(self.session, ...) end
function Handle:probe_agent(...) return steps.probe_agent(self.session, ...) end
function Handle:installed_version(...) return remote.installed_version(self.session, ...) end
function Handle:inspect(...) return steps.inspect(self.session, ...) end
function Handle:put(...) return steps.put(self.session, ...) end
function Handle:compare(...) return steps.compare(self.session, ...) end
function Handle:exec(argv, opts) return self.session:exec(argv, opts) end
function Handle:exec_stream(argv, opts) return self.session:exec_stream(argv, opts) end

--- Takes the controller lease for this session's lifetime (remote_steps.lease).
function Handle:lease(root, owner, wait, timeout, read)
  local id, second = steps.lease(self.session, root, owner, wait, timeout, read)
  if id then self.lease_id = id end
  return id, second
end
function Handle:has_lease() return self.lease_id ~= nil and self.session:holding(self.lease_id) end
function Handle:release_lease()
  if self.lease_id then self.session:release(self.lease_id) end
  self.lease_id = nil
end
function Handle:alive() return self.session:alive() end
function Handle:close() self.session:close() end

return M
