--- Selecting workers from workers.toml: --worker/--exclude patterns and tags.
local config = require "rch.config"
local targets = require "rch.targets"

local M = {}

-- @failed: the workers that did not end Completed or Skipped in the newest
-- deployment (rollbacks are not deployments here).
local function failed_ids()
  local state = require "rch.deploy.state"
  local newest, err = state.newest(function(plan) return plan.kind ~= "rollback" end)
  if not newest then return nil, err or ("@failed: no deployment recorded in " .. state.deployments_dir()) end
  local deployment
  deployment, err = state.load(newest.id)
  if not deployment then return nil, err end
  local set = {}
  for _, id in ipairs(deployment:unfinished_workers()) do set[id] = true end
  return set
end

--- The configured workers that a --worker list names, minus an --exclude
-- list (rch.targets: ids, globs, nodesets, @tag, @failed).
-- @param selection nil/empty (every worker), a string or a list of strings
-- @param exclude the same, removed from the selection
-- @return list of worker tables in workers.toml order, or nil, err naming the pattern
function M.select(selection, exclude)
  local all, err = config.workers()
  if not all then return nil, err end
  return targets.select(all, selection, exclude, { failed = failed_ids })
end

--- What every fleet command starts with: config.toml and the selected workers.
-- @param selection, exclude as for select()
-- @return settings, workers; or nil, err (a configuration error: exit 2)
function M.load(selection, exclude)
  local settings, err = config.settings()
  if not settings then return nil, err end
  local workers
  workers, err = M.select(selection, exclude)
  if not workers then return nil, err end
  return settings, workers
end

--- Workers that carry `tag`.
function M.with_tag(workers, tag)
  local out = {}
  for _, w in ipairs(workers) do
    for _, t in ipairs(w.tags or {}) do
      if t == tag then
        out[#out + 1] = w
        break
      end
    end
  end
  return out
end

return M
