--- The transport a fleet command talks to workers through: real SSH, or the
-- simulated fleet when RCH_MOCK_SSH=1 (the spec's E2E script, stress mode).
-- Both offer the same operations per worker handle:
--   root(), preflight(root, target, timeout, trust_manifest),
--   transfer(root, version, artifact, timeout, progress, enc) -> verified {sha256, size, mtime}
--   (enc: a compressed or patch upload, where encoded_uploads is true),
--   install(root, version, verified, deployment_id, now, timeout), rollback(root, previous_link, timeout),
--   pull_probe(params, timeout), pull(root, version, params, timeout) -> verified (pull mode; SSH only),
--   drain(root, timeout_s), undrain(root, timeout), toolchain(name, update, timeout) -> what it did,
--   prune(root, keep, current_dir, previous_dir, timeout) -> removed version dirs,
--   probe_agent(root, with_health, timeout), installed_version(root, timeout) (false: none),
--   inspect(root, timeout) (links, binary sha256, manifest, health: for fleet verify),
--   put(local_path, remote_path, sha256, timeout, {mode, mkdirs}) (any file: fleet copy, rch run scripts),
--   compare(remote_path, sha256, mode, timeout) -> "same" | "chmod" (mode fixed) | "copy",
--   lease(root, owner, wait, timeout) -> id | false, holder | nil, why (the controller
--   lease, held until release_lease() or close), has_lease(), release_lease(),
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

local handles = {}

--- The handle of `worker`, connecting on first use. Yields.
-- @return handle, or nil, err (the error names the worker's address)
function M.get(worker, settings)
  local h = handles[worker.id]
  if h and h:alive() then return h end
  local err
  h, err = M.impl().open(worker, settings)
  if not h then return nil, err end
  handles[worker.id] = h
  return h
end

--- Drops a worker's handle (after a transport error) so the next get reconnects.
function M.forget(worker)
  local h = handles[worker.id]
  if h then h:close() end
  handles[worker.id] = nil
end

function M.close_all()
  for id, h in pairs(handles) do
    h:close()
    handles[id] = nil
  end
end

return M
