-- Scheduler tests in the real engine: the parallel cap, completion order,
-- error propagation and misuse messages. Run twice by ctest: once plain and
-- once with RCH_SHUFFLE_COMPLETIONS so pool completions arrive shuffled.
local rch = require "rch"

local function eq(actual, expected, what)
  if actual ~= expected then
    error(("%s: expected %s, got %s"):format(what, tostring(expected), tostring(actual)), 2)
  end
end

-- 1. rch.parallel never runs more than n at once, and does reach n.
do
  local items = {}
  for i = 1, 60 do items[i] = i end
  local in_flight, peak = 0, 0
  local results, errors = rch.parallel(items, 7, function(item)
    in_flight = in_flight + 1
    if in_flight > peak then peak = in_flight end
    rch.sleep((item * 7 % 5) / 1000)
    in_flight = in_flight - 1
    return item * 2
  end)
  eq(errors, nil, "errors")
  eq(peak, 7, "peak in flight")
  eq(in_flight, 0, "in flight at the end")
  for i = 1, 60 do eq(results[i], i * 2, "result " .. i) end
end

-- 2. Completions of blocking pool jobs (sha256 of files of different sizes)
-- arrive in any order and each resumes the coroutine that asked.
do
  local dir = os.tmpname()
  os.remove(dir)
  assert(rch.fs.mkdirs(dir))
  local files = {}
  for i = 1, 24 do
    local content = ("x"):rep((25 - i) * 40000) .. tostring(i)
    local path = dir .. "/f" .. i
    assert(rch.fs.write_atomic(path, content))
    files[i] = { path = path, expected = rch.crypto.sha256(content) }
  end
  local order = {}
  local results = rch.parallel(files, 24, function(f, i)
    local hex = assert(rch.crypto.sha256_file(f.path))
    order[#order + 1] = i
    return hex
  end)
  for i, f in ipairs(files) do
    eq(results[i], f.expected, "hash of file " .. i)
    os.remove(f.path)
  end
  os.remove(dir)
  eq(#order, 24, "completions")
end

-- 3. A raising call is reported with file:line and does not stop the others.
do
  local results, errors = rch.parallel({ 1, 2, 3, 4 }, 2, function(item)
    rch.sleep(0.001)
    if item == 3 then error("boom on three") end
    return item
  end)
  assert(errors and errors[3], "error of item 3 missing")
  assert(errors[3]:find("sched_test.lua:%d+: boom on three"), "error lacks file:line: " .. errors[3])
  eq(results[1], 1, "item 1")
  eq(results[4], 4, "item 4")
  eq(errors[1], nil, "item 1 error")
end

-- 4. spawn/join hand back results; a failed task's error comes back from join.
do
  local a = rch.spawn(function(x, y) rch.sleep(0.002) return x + y, "ok" end, 2, 3)
  local b = rch.spawn(function() error("task b failed") end)
  local ok, sum, word = rch.join(a)
  eq(ok, true, "join a ok")
  eq(sum, 5, "join a value")
  eq(word, "ok", "join a second value")
  local okb, err = rch.join(b)
  eq(okb, false, "join b ok")
  assert(err:find("task b failed"), err)
end

-- 5. Yielding APIs outside an rch task fail with a clear message.
do
  local co = coroutine.wrap(function()
    return pcall(rch.sleep, 0)
  end)
  local ok, err = co()
  eq(ok, false, "sleep inside coroutine.wrap")
  assert(tostring(err):find("must be called from an rch task"), err)
end

-- 6. A bare coroutine.yield in a task is an error, not a hang.
do
  local t = rch.spawn(function() coroutine.yield() end)
  local ok, err = rch.join(t)
  eq(ok, false, "stray yield")
  assert(err:find("yielded outside an rch API"), err)
end

-- 7. rch.parallel rejects a bad cap.
do
  local ok, err = pcall(rch.parallel, { 1 }, 0, function() end)
  eq(ok, false, "n = 0")
  assert(err:find("n must be >= 1"), err)
end

-- 8. Sleeping tasks finish in order of their deadlines, not of their start.
do
  local finished = {}
  rch.parallel({ 30, 10, 20 }, 3, function(ms)
    rch.sleep(ms / 1000)
    finished[#finished + 1] = ms
  end)
  eq(table.concat(finished, ","), "10,20,30", "finish order")
end

-- 9. rch.semaphore: at most n holders inside rch.parallel's wider cap, every
-- waiter gets its turn in arrival order, and a bad count is refused.
do
  local items = {}
  for i = 1, 40 do items[i] = i end
  local slots = rch.semaphore(3)
  local inside, peak, order = 0, 0, {}
  local _, errors = rch.parallel(items, 12, function(item)
    rch.sleep((item % 4) / 1000)
    slots:acquire()
    inside = inside + 1
    if inside > peak then peak = inside end
    order[#order + 1] = item
    rch.sleep(0.002)
    inside = inside - 1
    slots:release()
  end)
  eq(errors, nil, "errors")
  eq(peak, 3, "peak holders")
  eq(#order, 40, "every item got a slot")
  eq(slots.free, 3, "slots free at the end")
  local ok, err = pcall(rch.semaphore, 0)
  eq(ok, false, "semaphore(0) refused")
  assert(tostring(err):find("n must be >= 1", 1, true), err)
end
