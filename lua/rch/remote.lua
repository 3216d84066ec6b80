--- Worker-side paths and the agent commands, built from quoted arguments only.
local util = require "rch.util"
local steps = require "rch.deploy.remote_steps"

local M = {}

--- The worker's install root with "~" resolved on the worker itself.
-- @param session an rch.ssh session
-- @param worker worker table (root defaults to "~/.rch")
-- @return absolute root, or nil, err
function M.root(session, worker)
  local root, err = M.root_spec(worker)
  if not root then return nil, err end
  if root == "~" or root:sub(1, 2) == "~/" then
    local home
    home, err = session:home()
    if not home then return nil, err end
    root = home .. root:sub(2)
  end
  return root
end

--- The worker's root as configured (default ~/.rch), "~" unresolved: what
-- the read-only remote steps take, resolving it on the worker themselves.
-- @return root, or nil, err for a root that is neither absolute nor under ~/
function M.root_spec(worker)
  local root = worker.root or "~/.rch"
  if root == "~" or root:sub(1, 2) == "~/" or root:sub(1, 1) == "/" then return root end
  return nil, ("worker '%s': root '%s' must be absolute or start with ~/"):format(worker.id, root)
end

--- A path as the worker's shell sees it from the login home, where every
-- command starts (fleet copy's DEST, fleet.upload): "~/x" -> "x", "~" -> ".". nil, err for ~user and empty.
function M.login_path(dest)
  if dest == "~" then return "." end
  if dest:sub(1, 2) == "~/" then dest = dest:sub(3) end
  if dest == "" or dest:sub(1, 1) == "~" then
    return nil, ("'%s': use an absolute path, ~/PATH or a path relative to the login home"):format(dest)
  end
  return dest
end

--- `<root>/bin/rch-wkr --version` on the worker (refused from a root that
-- breaks the ownership rule, see rch.deploy.remote_steps).
-- @return version string, or false when no agent is installed, or nil, err
function M.installed_version(session, root, timeout)
  local r, err = session:exec(require("rch.deploy.remote_steps").agent_argv(root, "--version"),
    { timeout = timeout or 30 })
  if not r then return nil, err end
  if r.code == 127 or r.code == 126 then return false end
  if r.code ~= 0 or r.timed_out then return nil, steps.failure("rch-wkr --version", r, timeout or 30) end
  local version = not r.out_truncated and require("rch.version").extract(r.out)
  if not version then return nil, "rch-wkr --version printed no version: " .. util.clip(r.out) .. steps.truncation(r) end
  return version
end

return M
