--- The transport a fleet command talks to workers through: real SSH, or the
-- simulated fleet when RCH_MOCK_SSH=1 (the spec's E2E script, stress mode).
-- Both offer the same operations per worker handle:
--   root(), preflight(root, target, timeout, trust_manifest, with_health) (facts; with_health
--   also the agent's health), inspect(root, timeout): these two take the root as configured
--   ("~/…" resolved on the worker, reported as facts.root) or resolved,
--   transfer(root, version, artifact, timeout, progress, enc) -> verified {sha256, size, mtime}
--   (enc: a compressed or patch upload, where encoded_uploads is true),
--   install(root, version, verified, deployment_id, now, timeout, prune) -> true, {removed, error} (prune:
--   nil or {keep, previous}: old version dirs go in the same round trip), rollback(root, previous_link, timeout),
--   pull_probe(params, timeout), pull(root, version, params, timeout) -> verified (pull mode; SSH only),
--   drain(root, timeout_s), undrain(root, timeout), toolchain(name, update, timeout) -> what it did,
--   probe_agent(root, with_health, timeout), installed_version(root, timeout) (false: none),
--   inspect(root, timeout) (links, binary sha256, manifest, health: for fleet verify),
--   put(local_path, remote_path, sha256, timeout, {mode, mkdirs}) (any file: fleet copy, rch run scripts),
--   compare(remote_path, sha256, mode, timeout) -> "same" | "chmod" (mode fixed) | "copy",
--   lease(root, owner, wait, timeout, read) -> id[, facts] | false, holder | nil, why (the
--   controller lease, held until release_lease() or close; with read = {target, trust_manifest}
--   the real transport also returns the preflight facts read under it), has_lease(), release_lease(),
--   exec(argv, opts), exec_stream(argv, opts) (output read while it runs: stream:read()),
--   alive(), close()
-- One handle (one SSH session) per worker, reused for every step.
local M = {}

local impl

--- The transport module in use ("rch.transport.ssh" or "rch.transport.sim").
function M.impl()
  if not impl then
    local mock = os.getenv("RCH_MOCK_SSH")
    impl = require((mock and mock ~= "" and mock ~= "0") and "rch.transport.sim" or "rch.transport.ssh")
  end
  return impl
end

--- Uses the simulated fleet with options (stress mode: nothing persists).
function M.use_sim(options)
  impl = require "rch.transport.sim"
  impl.configure(options)
end

local handles = {} -- worker id -> open handle
local open_count = 0
-- Handles nobody uses now (park), oldest first: closed to make room when the
-- cap on open sessions is reached. idle[id] = its position in idle_queue.
local idle, idle_queue, idle_first = {}, {}, 1
local cap

local function drop(id)
  local h = handles[id]
  if not h then return end
  handles[id], idle[id] = nil, nil
  open_count = open_count - 1
  h:close()
end

local function make_room()
  while cap and open_count >= cap and idle_first <= #idle_queue do
    local id = idle_queue[idle_first]
    idle_queue[idle_first] = false
    idle_first = idle_first + 1
    if id and idle[id] == idle_first - 1 then drop(id) end
  end
end

--- Caps the sessions open at once (nil: no cap): a new connection first
-- closes the longest-parked handles. The caller keeps its own parallelism
-- within the cap, so the handles in use never exceed it.
function M.cap_open(n) cap = n end

--- The handle of `worker`, connecting on first use. Yields.
-- @return handle, or nil, err (the error names the worker's address)
function M.get(worker, settings)
  local h = handles[worker.id]
  if h and h:alive() then
    idle[worker.id] = nil
    return h
  end
  if h then drop(worker.id) end
  make_room()
  open_count = open_count + 1 -- counted while it connects: other tasks make room meanwhile
  local err
  h, err = M.impl().open(worker, settings)
  if not h then
    open_count = open_count - 1
    return nil, err
  end
  handles[worker.id] = h
  return h
end

--- Marks a worker's handle unused for now: it stays open for a later get (a
-- canary re-probe, a rollback) unless the cap needs its place.
function M.park(worker)
  if not handles[worker.id] or idle[worker.id] then return end
  idle_queue[#idle_queue + 1] = worker.id
  idle[worker.id] = #idle_queue
end

--- Drops a worker's handle (after a transport error) so the next get reconnects.
function M.forget(worker) drop(worker.id) end

--- Sessions open now (the cap's subject; tests and stress read it).
function M.open_count() return open_count end

function M.close_all()
  for id in pairs(handles) do drop(id) end
  idle_queue, idle_first = {}, 1
end

return M
