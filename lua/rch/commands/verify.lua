--- rch fleet verify: per worker, the installed binary's sha256 against the
-- manifest written at install (the file is hashed for real), the current/bin
-- links, leftover partial uploads, the root ownership rule, the agent's health;
-- then version consistency across the fleet (stragglers). Exit 1 on any finding.
local rch = require "rch"
local ui = require "rch.ui"
local workers_mod = require "rch.workers"
local fleet = require "rch.fleet"

local M = {}

local function unreachable(worker, err, reachable)
  return { worker_id = worker.id, reachable = reachable, findings = { reachable and err or "unreachable: " .. err } }
end

local function check(worker, conn, root_spec, settings)
  local entry = { worker_id = worker.id, reachable = true, findings = {} }
  local function finding(text) entry.findings[#entry.findings + 1] = text end
  local facts, err = conn:inspect(root_spec, settings.defaults.command_timeout)
  if not facts then
    finding(err)
    return entry
  end
  local root = facts.root
  if facts.partials then
    finding(("leftover partial upload(s): %s (the next deploy removes them)"):format(facts.partials))
  end
  if facts.root_unsafe then finding("unsafe worker root (rch-wkr not run): " .. facts.root_unsafe) end
  if facts.current_link == "" then
    finding("no agent installed (no " .. root .. "/current)")
    return entry
  end
  local version = facts.current_link:match("^versions/v(.+)$")
  if not version then
    finding(("current -> %s is not a version directory"):format(facts.current_link))
    return entry
  end
  entry.version = version
  if not facts.binary_sha256 then
    finding(("current -> %s is dangling: no rch-wkr there"):format(facts.current_link))
  end
  if facts.bin_link ~= "../current/rch-wkr" then
    finding(("bin/rch-wkr -> '%s', expected ../current/rch-wkr"):format(facts.bin_link))
  end
  local manifest = facts.manifest
  if not manifest then
    finding(("no manifest.json in versions/v%s: not installed by rch"):format(version))
  elseif facts.binary_sha256 and manifest.sha256 ~= facts.binary_sha256 then
    local size = manifest.size and manifest.size ~= facts.binary_size
      and (" (%d bytes, manifest says %d)"):format(facts.binary_size, manifest.size) or ""
    finding(("versions/v%s/rch-wkr was modified: sha256 %s, manifest says %s%s"):format(version,
      facts.binary_sha256, tostring(manifest.sha256), size))
  elseif manifest.version ~= version then
    finding(("manifest of versions/v%s names version %s"):format(version, tostring(manifest.version)))
  end
  local health = facts.health
  if facts.root_unsafe then
    return entry
  elseif not health then
    finding("rch-wkr health did not answer")
  else
    entry.health = health
    if health.ok ~= true then finding("unhealthy: " .. tostring(health.error or "ok=false")) end
    if health.version ~= version then
      finding(("agent reports %s, current is %s"):format(tostring(health.version), version))
    end
  end
  return entry
end

-- The version most workers run (ties: the newest); everyone else is a straggler.
local function fleet_version(entries)
  local count = {}
  for _, e in ipairs(entries) do
    if e.version then count[e.version] = (count[e.version] or 0) + 1 end
  end
  local best
  for v, n in pairs(count) do
    if not best or n > count[best] or (n == count[best] and rch.version.compare(v, best) > 0) then best = v end
  end
  return best
end

function M.run(opts)
  local settings, workers = workers_mod.load(opts.worker, opts.exclude)
  if not settings then
    ui.error(workers)
    return 2
  end
  local _, results = fleet.each(workers, function(w, conn, root) return check(w, conn, root, settings) end,
    { settings = settings, probe = true, failed = unreachable })
  local reference = fleet_version(results)
  local ok = true
  for i = 1, #workers do
    local e = results[i]
    if reference and e.version and e.version ~= reference then
      e.findings[#e.findings + 1] = ("straggler: runs %s, the fleet runs %s"):format(e.version, reference)
    end
    e.ok = #e.findings == 0
    ok = ok and e.ok
  end
  if opts.json then
    local list = rch.json.array()
    for i = 1, #workers do
      local e = results[i]
      list[i] = { worker_id = e.worker_id, reachable = e.reachable, version = e.version or rch.json.null, ok = e.ok,
        findings = rch.json.array(e.findings) }
    end
    io.stdout:write(ui.json({ ok = ok, fleet_version = reference or rch.json.null, workers = list }), "\n")
  else
    local rows, good, bad = {}, {}, {}
    for i = 1, #workers do
      local e = results[i]
      rows[#rows + 1] = { e.worker_id, e.version or "-", e.ok and ui.paint("green", "ok") or ui.paint("red", "FAIL"),
        table.concat(e.findings, "; ") }
      table.insert(e.ok and good or bad, e.worker_id)
      if ui.quiet and not e.ok then
        io.stderr:write("rch: ", e.worker_id, ": ", ui.one_line(table.concat(e.findings, "; ")), "\n")
      end
    end
    if not ui.quiet then ui.table({ "WORKER", "VERSION", "VERIFY", "FINDINGS" }, rows) end
    io.stdout:write(ok and "fleet verified: every worker matches its manifest and runs " .. tostring(reference) .. "\n"
      or "verification found problems\n")
    io.stdout:write(ui.outcomes({ { label = "ok", ids = good }, { label = "problems", ids = bad } },
      #bad > 0 and { what = "the check of the workers with problems", command = "rch fleet verify " .. ui.worker_flag(bad) }
      or nil))
  end
  return ok and 0 or 1
end

return M
