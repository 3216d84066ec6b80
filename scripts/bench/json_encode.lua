-- rch run scripts/bench/json_encode.lua [N]: time rch.json.encode/decode of a
-- deployment journal line and an audit entry (the hot path of every step).
local rch = require "rch"

local n = tonumber((...)) or 200000
local journal = { worker = "w0123", step = "install", event = "completed", status = "Running",
  ts = "2026-12-01T11:32:33.123Z", previous_link = "versions/v0.1.0", version = "0.2.0" }
local audit = { timestamp = "2026-12-01T11:32:33.123Z", deployment_id = "8fad7a1b-2fe5-419e-9479-6c5aa40fab1e",
  event_type = "WorkerInstallCompleted", worker_id = "w0123", user = "root", machine = "vm",
  details = { version = "0.2.0", duration_secs = 0.4213, steps = { "preflight", "transfer", "install" } } }

local function time(label, fn)
  local started = rch.monotonic()
  for _ = 1, n do fn() end
  local secs = rch.monotonic() - started
  print(("%-22s %8.0f ns/op  (%d ops in %.2fs)"):format(label, secs / n * 1e9, n, secs))
end

local jline, aline = rch.json.encode(journal), rch.json.encode(audit)
time("encode journal line", function() return rch.json.encode(journal) end)
time("encode audit entry", function() return rch.json.encode(audit) end)
time("decode journal line", function() return rch.json.decode(jline) end)
time("decode audit entry", function() return rch.json.decode(aline) end)
