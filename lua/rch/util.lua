--- Small shared helpers for the engine.
local sched = require "rch.sched"

local M = {}

-- os.date is the costliest part of a journal line at 10k workers: format
-- each second once, and each millisecond's stamp once (a deployment of 10k
-- workers asks for ~60 in the same millisecond).
local cached_second, cached_text, cached_ms, cached_stamp

--- ISO 8601 UTC with milliseconds, e.g. 2026-11-22T10:00:00.123Z.
function M.iso_now()
  local ms = math.floor(sched.now() * 1000)
  if ms ~= cached_ms then
    local secs = math.floor(ms / 1000)
    if secs ~= cached_second then
      cached_second, cached_text = secs, os.date("!%Y-%m-%dT%H:%M:%S", secs)
    end
    cached_ms, cached_stamp = ms, cached_text .. (".%03dZ"):format(ms - secs * 1000)
  end
  return cached_stamp
end

--- Trims trailing whitespace.
function M.chomp(s)
  return (tostring(s or ""):gsub("%s+$", ""))
end

--- Text from a worker, cut to a readable length for a message: at most `max`
-- bytes (default 512, never splitting a UTF-8 sequence) and a note of how much
-- was left out.
function M.clip(s, max)
  s = tostring(s or "")
  max = max or 512
  if #s <= max then return s end
  local cut = max
  while cut > 0 and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do cut = cut - 1 end
  return ("%s… (%d more bytes)"):format(s:sub(1, cut), #s - cut)
end

--- A byte count the way a person writes it: "1 MiB", "64 KiB", "1500 bytes".
function M.bytes_text(n)
  if n >= 1048576 and n % 1048576 == 0 then return ("%d MiB"):format(n / 1048576) end
  if n >= 1024 and n % 1024 == 0 then return ("%d KiB"):format(n / 1024) end
  return ("%d bytes"):format(n)
end


--- A rotated log's files, oldest first: PATH.N … PATH.1, PATH.
function M.rotated_files(path)
  local fs = require("rch").fs
  local n = 1
  while fs.exists(path .. "." .. n) do n = n + 1 end
  local files = {}
  for i = n - 1, 1, -1 do files[#files + 1] = path .. "." .. i end
  files[#files + 1] = path
  return files
end

--- Runs make() once per key of `jobs` (a table the caller keeps): the first
-- caller starts it as a task, every caller (concurrent or later) waits for
-- it and gets its results; an error in make() is raised in each of them.
function M.once(jobs, key, make)
  if not jobs[key] then jobs[key] = sched.spawn(make) end
  local res = (function(...) return { n = select("#", ...), ... } end)(sched.join(jobs[key]))
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n) -- (nil, why) too
end

return M
