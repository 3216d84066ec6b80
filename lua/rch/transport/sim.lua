--- The simulated transport (RCH_MOCK_SSH=1): the same operations against the
-- in-memory fleet of rch.sim, which sleeps each task for as long as the real
-- operation would take. State persists in $RCH_STATE_DIR/sim-fleet.json
-- (and its .journal of changes) between commands, except in stress mode.
local sim = require "rch.sim"

local M = {}
local Handle = {}
Handle.__index = Handle

local fleet
local options = { persist = true }

function M.configure(opts)
  options = opts
  fleet = nil
end

local function the_fleet()
  if not fleet then
    local err
    fleet, err = sim.open(options)
    if not fleet then error(err, 0) end
  end
  return fleet
end

function M.open(worker)
  local f = the_fleet()
  local ok, err = f:connect(worker.id)
  if not ok then return nil, err end
  return setmetatable({ worker = worker, fleet = f, open = true }, Handle)
end

local function root_of(worker)
  local root = worker.root or "~/.rch"
  if root:sub(1, 1) == "~" then root = "/home/" .. (worker.user ~= "" and worker.user or "sim") .. root:sub(2) end
  return root
end

function Handle:root() return root_of(self.worker) end

-- As the real one: the root resolved, and with_health the agent's health.
function Handle:preflight(_, target, _, _, with_health)
  local facts, err = self.fleet:preflight(self.worker.id, target)
  if not facts then return nil, err end
  facts.root = root_of(self.worker)
  if with_health and facts.current_version then
    local probe = self.fleet:probe_agent(self.worker.id, true)
    facts.health = probe and probe.health or nil
  end
  self.facts = facts
  return facts
end

function Handle:transfer(_, version, artifact)
  local ok, err = self.fleet:transfer(self.worker.id, version, artifact.sha256, artifact.size)
  if not ok then return nil, err end
  return { sha256 = artifact.sha256, size = artifact.size }
end

-- Not modelled: pruning. A simulated worker keeps every version it was sent, where a real one keeps
-- [deploy] keep_versions (at least 2, so the two versions of tests/e2e/sim_conformance_test.sh
-- never tell them apart).
function Handle:install(_, version, verified, deployment_id)
  local ok, err = self.fleet:install(self.worker.id, version, verified.sha256, deployment_id)
  if not ok then return nil, err end
  return true, { removed = {} }
end

function Handle:rollback(_, previous_link)
  return self.fleet:rollback(self.worker.id, previous_link or "")
end

function Handle:drain(_, timeout_s) return self.fleet:drain(self.worker.id, timeout_s) end
function Handle:undrain() return self.fleet:undrain(self.worker.id) end
function Handle:toolchain(name)
  local ok, err = self.fleet:toolchain(self.worker.id, name)
  if not ok then return nil, err end
  return "already installed"
end
function Handle:probe_agent(_, with_health) return self.fleet:probe_agent(self.worker.id, with_health) end

--- The installed version, false when no agent is installed, or nil, err.
function Handle:installed_version()
  local probe, err = self.fleet:probe_agent(self.worker.id, false)
  if probe then return probe.version end
  if tostring(err):find("(exit 127)", 1, true) then return false end -- as rch.remote: no agent to run
  return nil, err
end

function Handle:inspect()
  local facts, err = self.fleet:inspect(self.worker.id)
  if facts then facts.root = root_of(self.worker) end
  return facts, err
end

function Handle:put(_, dest)
  return nil, ("simulated worker %s cannot store files (%s)"):format(self.worker.id, dest)
end

--- Answered by the RCH_SIM_EXEC rules (worker and command globs: exit code,
-- stdout, stderr, delay); a command no rule matches is an error naming it.
function Handle:exec(argv, opts)
  if type(argv) ~= "table" then
    return nil, ("simulated worker %s runs only argument lists, not shell lines"):format(self.worker.id)
  end
  return self.fleet:exec(self.worker.id, argv, opts and opts.timeout or 300)
end

function Handle:exec_stream(argv)
  return nil, ("simulated worker %s cannot stream commands (%s)"):format(self.worker.id, tostring(argv[1]))
end
Handle.compare = Handle.put

-- One process simulates the whole fleet: no other controller to exclude.
-- Asked to read under the lease (as the real one does in the same round
-- trip), it gives the facts this handle's preflight just read: nothing else
-- changes a simulated worker in between.
-- Held until released, as the real one: a pipeline asking again gets true from
-- lease.take without a new lease (and without facts).
function Handle:lease(_, _, _, _, read)
  local facts = read and self.facts or nil
  self.facts, self.leased = nil, true
  return 1, facts
end
function Handle:has_lease() return self.leased == true end
function Handle:release_lease() self.leased = nil end
function Handle:alive() return self.open end
function Handle:close() self.open = false end

--- The fault the simulation gave a worker ("none", "connect", "fail_at=verify", …).
function M.fault(worker_id) return the_fleet():fault(worker_id) end

--- What a simulated worker really has (current_link, bin_link, …), without a
-- connection and without its injected faults: ground truth for tests.
function M.inspect(worker_id) return the_fleet():inspect(worker_id) end

--- Where a simulated worker's current link really points ("" = none), without a
-- connection, its injected faults or a simulated delay: ground truth for rch fleet stress.
function M.current_link(worker_id) return the_fleet():current_link(worker_id) end

return M
