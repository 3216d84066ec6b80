--- rch config check [--json]: parses config.toml and workers.toml, loads every
-- Lua override the search path finds (--script-dir, the config dir) and checks
-- it keeps its contract (a hook returns a function, a strategy a table with
-- run), then prints the effective settings and where each came from. Exit 2
-- on the first problem, naming file:line.
local rch = require "rch"
local ui = require "rch.ui"
local scripts = require "rch.scripts"

local M = {}

-- Environment variables that override a setting or a path.
local PATH_VARS = { config_dir = "RCH_CONFIG_DIR", state_dir = "RCH_STATE_DIR", home = "RCH_HOME",
  cache_dir = "RCH_CACHE_DIR", data_dir = "RCH_DATA_DIR" }

-- Every user override along the search path, loaded and checked.
-- @return list of {name, origin}, or nil, err naming the file
local function check_scripts()
  local checked = {}
  for _, item in ipairs(require("rch.resolver").list()) do
    if item.origin ~= "builtin" then
      local kind, name = item.name:match("^(%a+)/([%w_%-]+)%.lua$")
      local ok, err
      if kind == "hooks" or kind == "strategies" then
        ok, err = scripts.load(kind, name)
      else
        local chunk, lerr = require("rch.resolver").load(item.name)
        ok, err = chunk ~= nil, lerr
      end
      if not ok then return nil, tostring(err) end
      checked[#checked + 1] = { name = item.name, origin = item.origin }
    end
  end
  return checked
end

function M.run(opts)
  local paths = rch.config.paths()
  local settings, err = rch.config.settings()
  if not settings then
    ui.error(err)
    return 2
  end
  local workers
  workers, err = rch.config.workers()
  if not workers then
    ui.error(err)
    return 2
  end
  local checked
  checked, err = check_scripts()
  if not checked then
    ui.error(err)
    return 2
  end

  local effective = {}
  for section, values in pairs(settings) do
    if section ~= "origins" then
      for key, value in pairs(values) do
        local origin = settings.origins[section .. "." .. key] or "default"
        if section == "update" and key == "url" and (os.getenv("RCH_RELEASE_URL") or "") ~= "" then
          value, origin = os.getenv("RCH_RELEASE_URL"), "env RCH_RELEASE_URL"
        end
        effective[#effective + 1] = { key = section .. "." .. key, value = value, origin = origin }
      end
    end
  end
  table.sort(effective, function(a, b) return a.key < b.key end)
  local dirs = {}
  for key, var in pairs(PATH_VARS) do
    dirs[#dirs + 1] = { key = key, value = paths[key], origin = (os.getenv(var) or "") ~= "" and ("env " .. var)
      or "default" }
  end
  table.sort(dirs, function(a, b) return a.key < b.key end)

  if opts.json then
    io.stdout:write(ui.json({ ok = true, config_file = paths.config_dir .. "/config.toml",
      workers_file = paths.config_dir .. "/workers.toml", workers = #workers,
      settings = rch.json.array(effective), paths = rch.json.array(dirs), scripts = rch.json.array(checked) }), "\n")
    return 0
  end
  io.stdout:write(("config.toml and workers.toml in %s are valid (%d worker%s)\n"):format(paths.config_dir,
    #workers, #workers == 1 and "" or "s"))
  local rows = {}
  for _, e in ipairs(effective) do
    -- [policy] values may be tables (arrays, sub-tables): shown as JSON.
    rows[#rows + 1] = { e.key, type(e.value) == "table" and rch.json.encode(e.value) or tostring(e.value), e.origin }
  end
  for _, d in ipairs(dirs) do rows[#rows + 1] = { "paths." .. d.key, d.value, d.origin } end
  ui.table({ "SETTING", "VALUE", "FROM" }, rows)
  for _, s in ipairs(checked) do io.stdout:write(("script %s: %s (loads, keeps its contract)\n"):format(s.name,
    s.origin)) end
  return 0
end

return M
