--- The SSH transport: one libssh session per worker; every operation is a
-- constant sh script from rch.deploy.remote_steps run with quoted arguments.
local ssh = require "rch.ssh"
local config = require "rch.config"
local remote = require "rch.remote"
local steps = require "rch.deploy.remote_steps"

local M = {}
local Handle = {}
Handle.__index = Handle

--- The ssh target for a worker: its own fields plus the [defaults] of config.toml.
function M.target(worker, settings)
  local d = settings.defaults
  return {
    host = worker.host, port = worker.port, user = worker.user, identity_file = worker.identity_file,
    known_hosts = d.known_hosts, ssh_config = d.ssh_config, host_key_policy = d.host_key_policy,
    connect_timeout = d.connect_timeout, max_output = d.max_output_bytes, stall_timeout = d.stall_timeout,
  }
end

function M.open(worker, settings)
  local session, err = ssh.connect(M.target(worker, settings or config.settings()))
  if not session then return nil, err end
  return setmetatable({ worker = worker, session = session }, Handle)
end

function Handle:root() return remote.root(self.session, self.worker) end
function Handle:preflight(...) return steps.preflight(self.session, ...) end
function Handle:transfer(...) return steps.transfer(self.session, ...) end
function Handle:install(...) return steps.install(self.session, ...) end
function Handle:rollback(...) return steps.rollback(self.session, ...) end
function Handle:drain(...) return steps.drain(self.session, ...) end
function Handle:undrain(...) return steps.undrain(self.session, ...) end
function Handle:toolchain(...) return steps.toolchain(self.session, ...) end
function Handle:prune(...) return steps.prune(self.session, ...) end
function Handle:probe_agent(...) return steps.probe_agent(self.session, ...) end
function Handle:installed_version(...) return remote.installed_version(self.session, ...) end
function Handle:inspect(...) return steps.inspect(self.session, ...) end
function Handle:put(...) return steps.put(self.session, ...) end
function Handle:compare(...) return steps.compare(self.session, ...) end
function Handle:exec(argv, opts) return self.session:exec(argv, opts) end
function Handle:exec_stream(argv, opts) return self.session:exec_stream(argv, opts) end
function Handle:alive() return self.session:alive() end
function Handle:close() self.session:close() end

return M
