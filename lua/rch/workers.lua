--- Selecting workers from workers.toml: --worker lists and tags.
local config = require "rch.config"

local M = {}

--- Splits "a,b , c" into {"a","b","c"}.
local function split_list(value)
  local out = {}
  for part in tostring(value):gmatch("[^,]+") do
    part = part:match("^%s*(.-)%s*$")
    if part ~= "" then out[#out + 1] = part end
  end
  return out
end
M.split_list = split_list

--- The configured workers, optionally restricted to ids.
-- @param selection nil, a comma-separated string, or a list of ids
-- @return list of worker tables, or nil, err naming an unknown id
function M.select(selection)
  local all, err = config.workers()
  if not all then return nil, err end
  if selection == nil or (type(selection) == "table" and #selection == 0) or selection == "" then
    return all
  end
  local wanted = type(selection) == "table" and selection or split_list(selection)
  local by_id = {}
  for _, w in ipairs(all) do by_id[w.id] = w end
  local out, seen = {}, {}
  for _, id in ipairs(wanted) do
    local list = type(id) == "string" and split_list(id) or { id }
    for _, one in ipairs(list) do
      if not by_id[one] then
        local known = {}
        for _, w in ipairs(all) do known[#known + 1] = w.id end
        return nil, ("unknown worker '%s' (--worker); configured: %s"):format(one, table.concat(known, ", "))
      end
      -- Named twice (--worker w1,w1): once, or two pipelines would race on one worker.
      if not seen[one] then
        seen[one] = true
        out[#out + 1] = by_id[one]
      end
    end
  end
  return out
end

--- What every fleet command starts with: config.toml and the selected workers.
-- @param selection as for select()
-- @return settings, workers; or nil, err (a configuration error: exit 2)
function M.load(selection)
  local settings, err = config.settings()
  if not settings then return nil, err end
  local workers
  workers, err = M.select(selection)
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
