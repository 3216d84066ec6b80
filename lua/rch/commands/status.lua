--- rch fleet status: per worker, reachable or the error, and the installed
-- rch-wkr version. Probes run in parallel, one session per worker.
local rch = require "rch"
local transport = require "rch.transport"
local ui = require "rch.ui"
local workers_mod = require "rch.workers"

local M = {}

local function probe(worker, settings)
  local entry = {
    id = worker.id,
    host = worker.host,
    port = worker.port,
    user = worker.user,
    reachable = false,
  }
  local conn, err = transport.get(worker, settings)
  if not conn then
    entry.error = err
    return entry
  end
  entry.reachable = true
  local root
  root, err = conn:root()
  if not root then
    entry.error = err
    return entry
  end
  entry.root = root
  local version
  version, err = conn:installed_version(root, settings.defaults.command_timeout)
  if version == nil then
    entry.error = err
  elseif version then
    entry.version = version
  end
  return entry
end

--- @param opts {worker = list of ids, json = bool}
-- @return exit code
function M.run(opts)
  local settings, err = rch.config.settings()
  if not settings then
    ui.error(err)
    return 2
  end
  local workers
  workers, err = workers_mod.select(opts.worker)
  if not workers then
    ui.error(err)
    return 2
  end
  -- Probing is light: allow more sessions at once than a deploy would.
  local results, errors = rch.parallel(workers, math.max(settings.defaults.parallel, 16), function(w)
    return probe(w, settings)
  end)
  for i, e in pairs(errors or {}) do
    results[i] = { id = workers[i].id, host = workers[i].host, reachable = false, error = e }
  end
  transport.close_all()

  if opts.json then
    local null = rch.json.null
    local list = rch.json.array()
    for i = 1, #workers do
      local r = results[i]
      list[i] = {
        id = r.id,
        host = r.host,
        port = r.port,
        user = r.user,
        reachable = r.reachable,
        root = r.root or null,
        version = r.version or null,
        error = r.error or null,
      }
    end
    io.stdout:write(rch.json.encode({ workers = list }, { pretty = true }), "\n")
    return 0
  end
  local rows = {}
  for i = 1, #workers do
    local r = results[i]
    local address = (r.user ~= "" and r.user .. "@" or "") .. r.host .. ":" .. tostring(r.port)
    local reach = r.reachable and ui.paint("green", "yes") or ui.paint("red", "no")
    local version = r.version or (r.reachable and not r.error and ui.paint("dim", "none") or "-")
    rows[#rows + 1] = { r.id, address, reach, version, r.error and ui.paint("red", r.error) or "" }
  end
  ui.table({ "WORKER", "ADDRESS", "REACHABLE", "VERSION", "ERROR" }, rows)
  return 0
end

return M
