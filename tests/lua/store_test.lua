-- Journals group-commit and are durable when append returns; the audit hash
-- chain detects an edited, a deleted and a swapped line.
local rch = require "rch"
local audit = require "rch.audit"

local dir = os.tmpname()
os.remove(dir)
assert(rch.fs.mkdirs(dir))

-- 1. 200 tasks appending at once: every line lands, in fewer flushes than lines,
-- and each line is readable from disk as soon as its append returned.
do
  local path = dir .. "/journal.jsonl"
  local journal = assert(rch.store.open_journal(path))
  local items = {}
  for i = 1, 200 do items[i] = i end
  local _, errors = rch.parallel(items, 200, function(i)
    assert(journal:append(rch.json.encode({ n = i })))
    local lines = assert(rch.store.read_lines(path))
    local seen = false
    for _, line in ipairs(lines) do
      if rch.json.decode(line).n == i then seen = true end
    end
    assert(seen, "line " .. i .. " not on disk when append returned")
  end)
  assert(errors == nil, errors and select(2, next(errors)))
  local stats = journal:stats()
  assert(stats.lines == 200, "lines written: " .. stats.lines)
  assert(stats.flushes < 20, "expected group commits, got " .. stats.flushes .. " flushes for 200 lines")
  local ok, err = pcall(journal.append, journal, "a\nb")
  assert(not ok and err:find("cannot contain a newline"), err)
end

-- 2. The audit chain: intact, then edited, deleted and swapped lines are named.
do
  local path = dir .. "/audit.jsonl"
  local log = assert(audit.open({ path }, "dep-1"))
  for i = 1, 5 do log:log("WorkerPreflight", "w" .. i, { i = i }) end
  local ok, count = audit.verify_file(path)
  assert(ok and count == 5, tostring(count))
  local lines = assert(rch.store.read_lines(path))
  local function check_broken(mutated, want_line)
    local copy = dir .. "/mutated.jsonl"
    assert(rch.fs.write_atomic(copy, table.concat(mutated, "\n") .. "\n"))
    local vok, msg = audit.verify_file(copy)
    assert(not vok, "tampering not detected")
    assert(msg:find(":" .. want_line .. ": hash chain broken", 1, true), msg)
  end
  local edited = { lines[1], lines[2], (lines[3]:gsub('"w3"', '"w9"')), lines[4], lines[5] }
  check_broken(edited, 4)
  check_broken({ lines[1], lines[2], lines[4], lines[5] }, 3)
  check_broken({ lines[1], lines[3], lines[2], lines[4], lines[5] }, 2)
  -- Reopening continues the chain from the last line on disk.
  local again = assert(audit.open({ path }, "dep-2"))
  again:log("DeploymentStarted", nil, {})
  local ok2, count2 = audit.verify_file(path)
  assert(ok2 and count2 == 6, tostring(count2))
end

os.execute("rm -rf '" .. dir .. "'")
