-- rch run scripts/bench/json_encode.lua [N [CASE]]: time rch.json.encode/decode
-- of a deployment journal line and an audit entry (the hot path of every
-- step). With CASE (e.g. "encode journal line"), only that one, once: for
-- `perf stat -e instructions:u`, steadier than time on a shared machine.
local rch = require "rch"

local args = { ... }
local n = tonumber(args[1]) or 200000
local only = args[2]
local journal = { worker = "w0123", step = "install", event = "completed", status = "Running",
  ts = "2026-12-01T11:32:33.123Z", previous_link = "versions/v0.1.0", version = "0.2.0" }
local audit = { timestamp = "2026-12-01T11:32:33.123Z", deployment_id = "8fad7a1b-2fe5-419e-9479-6c5aa40fab1e",
  event_type = "WorkerInstallCompleted", worker_id = "w0123", user = "root", machine = "vm",
  details = { version = "0.2.0", duration_secs = 0.4213, steps = { "preflight", "transfer", "install" } } }

-- CPU time (os.clock), best of 5: the machine is shared, wall time is noise.
local function time(label, fn)
  if only then
    if label == only then for _ = 1, n do fn() end end
    return
  end
  local best = math.huge
  for _ = 1, 5 do
    local started = os.clock()
    for _ = 1, n do fn() end
    best = math.min(best, os.clock() - started)
  end
  print(("%-22s %8.0f ns/op  (best of 5 x %d ops)"):format(label, best / n * 1e9, n))
end

local jline, aline = rch.json.encode(journal), rch.json.encode(audit)
time("encode journal line", function() return rch.json.encode(journal) end)
time("encode audit entry", function() return rch.json.encode(audit) end)
time("decode journal line", function() return rch.json.decode(jline) end)
time("decode audit entry", function() return rch.json.decode(aline) end)
